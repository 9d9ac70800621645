"""Services bound to a client: registry resources, SIA v1, SIA v2 and TAP (sync and
async UWS jobs).

A service talks to its client only through :class:`ServiceClient`, the few
verbs it needs (:class:`~voharvest.VOClient` is one): VOTables fetched and
parsed, names resolved, HTTP requests for UWS jobs (:class:`Requester`), and
clean-up that outlives a cancelled caller. This module imports no client.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import math
from collections.abc import Awaitable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, Protocol, SupportsIndex, overload
from urllib.parse import urljoin

from ._exceptions import (
    FormatError,
    HTTPStatusError,
    JobError,
    ParameterError,
    RequestTimeoutError,
    VOHarvestError,
)
from .protocol import sia1, sia2, tap
from .protocol.regtap import RESOURCE_COLUMNS, Resource, resolve_servicetype

if TYPE_CHECKING:
    from astropy.coordinates import SkyCoord
    from astropy.table import MaskedColumn, Table

    from ._clock import Clock
    from .protocol.records import SIAResults, TableResults
    from .protocol.votable import Decoded
    from .transport import Answer

__all__ = [
    "REGISTRY_COLUMNS",
    "RegistryResource",
    "RegistryResources",
    "Requester",
    "SIA2Service",
    "SIAService",
    "ServiceClient",
    "TAPService",
]

logger = logging.getLogger("voharvest.services")


class Requester(Protocol):
    """HTTP with the client's politeness, retries and error translation (its transport)."""

    @property
    def clock(self) -> Clock: ...

    async def request(
        self,
        method: str,
        url: str,
        *,
        data: Any = None,
        idempotent: bool = True,
        allow_redirects: bool = True,
        ok: tuple[int, ...] = (),
    ) -> Answer: ...


class ServiceClient(Protocol):
    """What a service needs of the client it is bound to (:class:`~voharvest.VOClient`)."""

    @property
    def transport(self) -> Requester: ...

    async def fetch_votable(
        self, method: str, url: str, data: Any = None, *, attempts: int | None = None
    ) -> Decoded: ...

    async def fetch_table(self, method: str, url: str, data: Any = None) -> TableResults: ...

    async def resolve(self, name: str) -> SkyCoord: ...

    async def resolve_position(self, pos: Any) -> Any: ...

    def run_in_background(self, work: Awaitable[Any]) -> None: ...


def _sia_results(decoded: Any) -> SIAResults:
    from .protocol import votable  # (the VOTable reader loads with the first answer)

    return votable.sia_results(decoded)


@dataclasses.dataclass(frozen=True)
class RegistryResource(Resource):
    """A registry resource whose services talk through the client that found it."""

    client: Any = dataclasses.field(default=None, compare=False, repr=False)

    @classmethod
    def bind(cls, resource: Resource, client: ServiceClient) -> RegistryResource:
        values = {f.name: getattr(resource, f.name) for f in dataclasses.fields(Resource)}
        return cls(**values, client=client)

    def service(self, kind: str) -> SIAService | SIA2Service | TAPService:
        """The resource's ``sia``, ``sia2`` or ``tap`` service (NoServiceError if it has none)."""
        wanted = resolve_servicetype(kind)
        if wanted not in ("sia", "sia2", "tap"):
            raise ParameterError(f"service objects exist for sia, sia2 and tap, not {kind!r}")
        url = self.access_url(wanted)
        if wanted == "sia":
            return SIAService(self.client, url)
        if wanted == "sia2":
            return SIA2Service(self.client, url)
        return TAPService(self.client, url)


#: The columns of pyvo's registry results (``RegistryResource.expected_columns`` of
#: ``pyvo.registry.regtap``), in its order: :meth:`RegistryResources.to_table`'s.
REGISTRY_COLUMNS = (
    *RESOURCE_COLUMNS,
    "access_urls",
    "standard_ids",
    "intf_types",
    "intf_roles",
    "cap_descriptions",
)
# The per-interface columns, from each resource's interfaces (a tuple per row).
_INTERFACE_COLUMNS = {
    "access_urls": "access_url",
    "standard_ids": "standard_id",
    "intf_types": "type",
    "intf_roles": "role",
    "cap_descriptions": "description",
}


class RegistryResources(list[RegistryResource]):
    """What :meth:`VOClient.regsearch` found: a list of :class:`RegistryResource`,
    with pyvo's conveniences.

    - a list as before: ``len()``, iteration, ``[0]``, slices, ``+``;
    - ``[key]`` with a string: the resource of that ivoid (``"ivo://..."``,
      compared case-insensitively as IVOA identifiers are) or short name
      (``services["SDSSDR7"]``); KeyError if none has it, or if several share
      the short name (its message lists their ivoids);
    - :meth:`to_table`: an astropy Table with pyvo's columns;
    - ``overflow``: the registry said it truncated the answer (QUERY_STATUS=OVERFLOW);
      ``url``: the registry endpoint that answered.
    """

    def __init__(
        self,
        resources: Iterable[RegistryResource] = (),
        *,
        table: Any = None,
        overflow: bool = False,
        url: str | None = None,
    ) -> None:
        super().__init__(resources)
        self.overflow = overflow
        self.url = url
        # The registry's rows (a Table, or results whose to_table() gives one, on
        # demand): their columns for to_table().
        self._answer = table

    @overload
    def __getitem__(self, key: SupportsIndex) -> RegistryResource: ...
    @overload
    def __getitem__(self, key: slice) -> list[RegistryResource]: ...
    @overload
    def __getitem__(self, key: str) -> RegistryResource: ...
    def __getitem__(
        self, key: SupportsIndex | slice | str
    ) -> RegistryResource | list[RegistryResource]:
        if isinstance(key, str):
            return self._lookup(key)
        return super().__getitem__(key)

    def _lookup(self, key: str) -> RegistryResource:
        by_ivoid = key.strip().lower().startswith("ivo://")
        if by_ivoid:
            found = [r for r in self if r.ivoid.lower() == key.strip().lower()]
        else:
            found = [r for r in self if r.short_name == key]
        if len(found) == 1:
            return found[0]
        what = "ivoid" if by_ivoid else "short name"
        if not found:
            raise KeyError(f"none of the {len(self)} resources has the {what} {key!r}")
        ivoids = ", ".join(r.ivoid for r in found)
        raise KeyError(f"{len(found)} resources have the {what} {key!r} ({ivoids}): use an ivoid")

    def to_table(self) -> Table:
        """The resources as an astropy Table with pyvo's registry columns.

        The resource columns are as the registry sent them (masked where it
        sent nothing); ``access_urls``, ``standard_ids``, ``intf_types``,
        ``intf_roles`` and ``cap_descriptions`` hold a tuple per resource, one
        item per interface, in the same order in each.
        """
        import numpy as np
        from astropy.table import Column, Table

        answer = self._answer
        if answer is not None and not isinstance(answer, Table):
            answer = self._answer = answer.to_table()
        ivoids = _source(answer, "ivoid")
        rows = {} if ivoids is None else {str(v).strip().lower(): i for i, v in enumerate(ivoids)}
        where = [rows.get(r.ivoid.lower()) for r in self]
        columns: list[Any] = []
        for name in REGISTRY_COLUMNS:
            if name in _INTERFACE_COLUMNS:
                cells = np.empty(len(self), dtype=object)
                for i, resource in enumerate(self):
                    cells[i] = tuple(
                        getattr(f, _INTERFACE_COLUMNS[name]) for f in resource.interfaces
                    )
                columns.append(Column(cells, name=name))
            elif name == "ivoid":
                columns.append(Column([r.ivoid for r in self], name=name, dtype=str))
            else:
                columns.append(_answer_column(answer, name, where))
        return Table(columns)


def _source(answer: Table | None, name: str) -> Any:
    """Column ``name`` (any case) of the registry's answer, or None."""
    if answer is None:
        return None
    return next((answer[c] for c in answer.colnames if c.lower() == name), None)


def _answer_column(answer: Table | None, name: str, where: list[int | None]) -> MaskedColumn:
    """Column ``name`` of the registry's answer for the rows ``where`` (masked: none)."""
    source = _source(answer, name)
    import numpy as np
    from astropy.table import MaskedColumn

    if source is None:
        return MaskedColumn([""] * len(where), name=name, mask=[True] * len(where), dtype=str)
    mask = np.ma.getmaskarray(source)
    data = np.ma.getdata(source)
    values = [data[i] if i is not None else data[:1].dtype.type() for i in where]
    hidden = [i is None or bool(mask[i]) for i in where]
    column = MaskedColumn(values, name=name, mask=hidden, dtype=source.dtype)
    column.unit, column.description = source.unit, source.description
    return column


class SIAService:
    """A Simple Image Access 1.0 service.

    ``cuts``: the service is of the SIA 1.0 *Cutout* (or *Mosaic*) type — its
    images are cut to the region searched — so a harvest asking for cutouts
    gets them by searching the cutout's size (the registry's
    ``imageServiceType``; say so when you know it).
    """

    def __init__(self, client: ServiceClient, access_url: str, *, cuts: bool = False) -> None:
        self.client = client
        self.access_url = access_url
        self.cuts = cuts

    def __repr__(self) -> str:
        extra = ", cuts=True" if self.cuts else ""
        return f"SIAService({self.access_url!r}{extra})"

    def search_url(self, pos: Any, size: Any, **params: Any) -> str:
        """The query URL of a search (``pos`` must already be a position)."""
        return sia1.build_url(self.access_url, pos=pos, size=size, **params)

    async def search(
        self,
        pos: Any,
        size: Any,
        *,
        format: Any = None,
        intersect: str | None = None,
        verbosity: int | None = None,
        extra: Mapping[str, Any] | None = None,
        **params: Any,
    ) -> SIAResults:
        """Images around ``pos`` (SkyCoord, (ra, dec) degrees, or a name to resolve).

        ``size``: one or two angles (degrees, Quantity, ``"2arcmin"``). Further
        parameters as :func:`voharvest.protocol.sia1.build_url` takes them: a
        service's own in upper case (``NAXIS="300,300"``) or in ``extra``.
        """
        position = await self.client.resolve_position(pos)
        url = self.search_url(
            position,
            size,
            format=format,
            intersect=intersect,
            verbosity=verbosity,
            extra=extra,
            **params,
        )
        return _sia_results(await self.client.fetch_votable("GET", url))


class SIA2Service:
    """A Simple Image Access 2.0 service."""

    def __init__(self, client: ServiceClient, access_url: str) -> None:
        self.client = client
        self.access_url = access_url

    def __repr__(self) -> str:
        return f"SIA2Service({self.access_url!r})"

    async def search(
        self, pos: Any = None, *, extra: Mapping[str, Any] | None = None, **params: Any
    ) -> SIAResults:
        """Images matching SIA 2.0 parameters (see :func:`voharvest.protocol.sia2.build_url`):
        this library's names, the standard's or pyvo's (``calib_level=2`` sends
        ``CALIB=2``); a service's own parameters in upper case or in ``extra``.

        ``pos`` may name its centre: ``("M51", radius)`` is resolved first.
        """
        if isinstance(pos, tuple | list) and len(pos) == 2 and isinstance(pos[0], str):
            pos = (await self.client.resolve(pos[0]), pos[1])
        url = sia2.build_url(self.access_url, pos=pos, extra=extra, **params)
        return _sia_results(await self.client.fetch_votable("GET", url))


class TAPService:
    """A Table Access Protocol service: synchronous queries and UWS jobs."""

    def __init__(self, client: ServiceClient, access_url: str) -> None:
        self.client = client
        self.access_url = access_url.rstrip("/")

    def __repr__(self) -> str:
        return f"TAPService({self.access_url!r})"

    async def run_sync(self, query: str, *, maxrec: int | None = None) -> TableResults:
        """Run ADQL on ``/sync`` and return the table."""
        fields = tap.sync_fields(query, maxrec=maxrec)
        return await self.client.fetch_table("POST", f"{self.access_url}/sync", fields)

    async def run_async(
        self,
        query: str,
        *,
        maxrec: int | None = None,
        deadline: float = 3600.0,
        wait: int = 10,
    ) -> TableResults:
        """Run ADQL as a UWS job: create and start, long-poll, fetch the result, delete.

        Polls use UWS 1.1 ``WAIT=`` and always back off (some servers ignore
        WAIT). The job is deleted at the end, whatever happens; cancellation or
        the ``deadline`` (seconds) aborts it on the server first. An ERROR
        phase raises :class:`~voharvest.JobError` with the server's summary.
        """
        if not (isinstance(deadline, int | float) and deadline > 0 and math.isfinite(deadline)):
            raise ParameterError(f"deadline: expected positive seconds, got {deadline!r}")
        # The job's requests, its clean-up too (which may run while the client closes).
        transport = self.client.transport
        fields = tap.async_fields(query, maxrec=maxrec, run=True)
        created = await transport.request(
            "POST",
            f"{self.access_url}/async",
            data=fields,
            idempotent=False,
            allow_redirects=False,
            ok=(200, 201, 301, 302, 303),
        )
        job_url = self._job_url(created)
        final = False
        try:
            async with asyncio.timeout(deadline):
                job = await self._wait_for_end(transport, job_url, wait)
            final = True
            if job.phase != "COMPLETED":
                raise JobError(
                    await self._error_message(transport, job, job_url), phase=job.phase, url=job_url
                )
            result = tap.result_url(job)
            if result is None:
                raise FormatError("the completed job lists no result", url=job_url)
            return await self.client.fetch_table("GET", urljoin(job_url, result))
        except TimeoutError as exc:
            raise RequestTimeoutError(
                f"the job did not finish within its deadline of {deadline} s", url=job_url
            ) from exc
        finally:
            cleanup = asyncio.ensure_future(self._dispose(transport, job_url, abort=not final))
            try:
                await asyncio.shield(cleanup)
            except asyncio.CancelledError:
                self.client.run_in_background(cleanup)
                raise

    def _job_url(self, created: Answer) -> str:
        location = created.headers.get("Location")
        if location:
            return urljoin(created.url, location)
        if created.body:
            job = tap.parse_job(created.body, url=created.url)
            return f"{self.access_url}/async/{job.job_id}"
        raise FormatError("the service created a job but did not say where", url=created.url)

    async def _wait_for_end(self, transport: Requester, job_url: str, wait: int) -> tap.Job:
        clock = transport.clock
        pause = 0.25
        # The first look is without WAIT: some servers (DaCHS) ignore PHASE=RUN at
        # creation and make WAIT block on a PENDING job for the whole wait.
        first = True
        while True:
            before = clock.now()
            url = job_url if first else f"{job_url}?WAIT={wait}"
            answer = await transport.request("GET", url)
            job = tap.parse_job(answer.body, url=job_url)
            if job.is_final:
                return job
            if job.phase == "PENDING" and first:
                # PHASE=RUN at creation was ignored: start it explicitly, once.
                await transport.request(
                    "POST",
                    f"{job_url}/phase",
                    data={"PHASE": "RUN"},
                    allow_redirects=False,
                    ok=(200, 204, 303),
                )
            if not first and clock.now() - before < pause:
                await clock.sleep(pause)
                pause = min(pause * 2, 5.0)
            first = False

    async def _error_message(self, transport: Requester, job: tap.Job, job_url: str) -> str:
        if job.error_summary and job.error_summary.message:
            return job.error_summary.message
        try:
            answer = await transport.request("GET", f"{job_url}/error")
        except VOHarvestError:
            return f"job ended in phase {job.phase}"
        text = " ".join(answer.body[:2000].decode("utf-8", errors="replace").split())
        return text or f"job ended in phase {job.phase}"

    async def _dispose(self, transport: Requester, job_url: str, *, abort: bool) -> None:
        try:
            if abort:
                await transport.request(
                    "POST",
                    f"{job_url}/phase",
                    data={"PHASE": "ABORT"},
                    allow_redirects=False,
                    ok=(200, 303),
                )
            try:
                await transport.request(
                    "DELETE", job_url, allow_redirects=False, ok=(200, 204, 303)
                )
            except HTTPStatusError as exc:
                if exc.status not in (405, 501):
                    raise
                await transport.request(
                    "POST",
                    job_url,
                    data={"ACTION": "DELETE"},
                    allow_redirects=False,
                    ok=(200, 303),
                )
        except VOHarvestError as exc:
            logger.warning("could not delete the UWS job %s: %s", job_url, exc)
