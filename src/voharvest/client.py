"""VOClient: one object an application keeps for its lifetime to talk to the VO.

::

    async with VOClient() as client:
        services = await client.regsearch(servicetype="sia", waveband="uv", keywords=["swift"])
        sia = services[0].service("sia")
        results = await sia.search(pos="M51", size=0.2, format="image/jpeg")
        path = await client.download(results[0], "images/")

The client owns the transport (an aiohttp session, per-host limiters, the
retry policy), a process pool that parses large answers off the event loop,
and a thread pool for file writes. An application may pass in its own
``aiohttp.ClientSession``; the client then never closes it. A closed client
can't be reopened.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import logging
import multiprocessing
import os
import warnings
from collections.abc import Awaitable, Callable
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from ._checks import http_url
from ._clock import Clock
from ._config import ClientConfig
from ._datalinks import DataLinkPlanner, raise_dali_error
from ._downloader import Downloader
from ._exceptions import ClientStateError, HTTPStatusError, ParameterError
from ._limiter import HostStats
from ._names import NameResolver
from ._registry import search_registries
from ._turns import TurnBudget
from .protocol import datalink, vosi, votable
from .protocol.vosi import AccessRule
from .services import RegistryResources, SIA2Service, SIAService, TAPService
from .transport import Answer, Transport

if TYPE_CHECKING:
    import aiohttp
    from astropy.coordinates import SkyCoord

    from ._discovery_options import DiscoveryOptions, DiscoveryResult
    from .protocol.datalink import DataLinks
    from .protocol.records import TableResults

__all__ = ["VOClient"]

logger = logging.getLogger("voharvest.client")

_UNOPENED, _OPEN, _CLOSED = "unopened", "open", "closed"
T = TypeVar("T")


def source_url(source: Any) -> str:
    """The URL of a record (``getdataurl()``) or of a plain URL string."""
    if isinstance(source, str):
        return http_url(source)
    getter = getattr(source, "getdataurl", None)
    if getter is None:
        raise ParameterError(f"expected a URL or a record with getdataurl(), got {source!r}")
    url = getter()
    if not url:
        raise ParameterError(f"{source!r} has no data URL")
    return http_url(url)


def _parse_pool(workers: int) -> concurrent.futures.ProcessPoolExecutor:
    """Worker processes for large answers, forked from a server that has the reader loaded.

    forkserver, not fork: forking a process that runs an event loop and threads
    can deadlock. Like every multiprocessing start method but fork, it re-imports
    the main script in the workers, so scripts need ``if __name__ == "__main__":``;
    where the pool can't start, answers are parsed in a thread instead.
    """
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["voharvest.protocol.votable"])
    return concurrent.futures.ProcessPoolExecutor(max_workers=workers, mp_context=context)


class VOClient:
    """Async client for the Virtual Observatory; see the module documentation."""

    def __init__(
        self,
        config: ClientConfig | None = None,
        *,
        session: aiohttp.ClientSession | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.config = config or ClientConfig()
        self._transport = Transport(self.config, session=session, clock=clock)
        self._state = _UNOPENED
        self._parse_pool: concurrent.futures.ProcessPoolExecutor | None = None
        self._pool_failed = False
        self._files: concurrent.futures.ThreadPoolExecutor | None = None
        self._downloader: Downloader | None = None
        self._names = NameResolver(self._transport, self.config.sesame)
        self._links = DataLinkPlanner(
            self._transport,
            check_open=self._check_open,
            downloader=self._open_downloader,
            parse=self._parse,
            resolve_position=self.resolve_position,
        )
        self._background: set[asyncio.Task[Any]] = set()
        self._turn_budget = TurnBudget(self.config.turn_budget)

    # --- lifetime -------------------------------------------------------------

    async def __aenter__(self) -> VOClient:
        if self._state != _UNOPENED:
            raise ClientStateError(f"a {self._state} VOClient can't be opened again")
        await self._transport.open()
        self._files = concurrent.futures.ThreadPoolExecutor(
            max_workers=max(1, self.config.file_workers), thread_name_prefix="voharvest-files"
        )
        self._downloader = Downloader(
            self._transport, self.config, self._files, self.run_in_background
        )
        self._state = _OPEN
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the session (if ours), the worker pools and pending clean-ups."""
        if self._state == _CLOSED:
            return
        self._state = _CLOSED
        await asyncio.shield(self._close())

    async def _close(self) -> None:
        if self._background:
            await asyncio.wait(self._background, timeout=30)
        await self._transport.close()
        if self._parse_pool is not None:
            self._parse_pool.shutdown(wait=False, cancel_futures=True)
        if self._files is not None:
            self._files.shutdown(wait=False)

    def _check_open(self) -> None:
        if self._state != _OPEN:
            raise ClientStateError(
                "the client is not open (use 'async with VOClient() as client')"
                if self._state == _UNOPENED
                else "the client is closed"
            )

    def _open_downloader(self) -> Downloader:
        self._check_open()
        assert self._downloader is not None
        return self._downloader

    @property
    def transport(self) -> Transport:
        self._check_open()
        return self._transport

    @property
    def stats(self) -> dict[str, HostStats]:
        """Per-host statistics (requests, retries, statuses, bytes, latency), by origin."""
        return self._transport.stats

    def run_in_background(self, work: Awaitable[Any]) -> None:
        """Run clean-up work that must finish even if its caller is cancelled."""
        task = asyncio.ensure_future(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # --- parsing --------------------------------------------------------------

    async def decode(self, answer: Answer) -> votable.Decoded:
        """Parse and check a VOTable answer; large ones in a worker process."""
        # A worker process hands back the columns only; the document stays here.
        decode = functools.partial(votable.decode, keep_source=False)
        decoded = await self._parse(decode, answer.body, answer.url)
        return decoded.with_source(answer.body)

    async def _parse(self, parse: Callable[..., T], body: bytes, url: str | None) -> T:
        """``parse(body, url=url)``: on the loop if small, else in a worker process."""
        if len(body) <= self.config.offload_bytes:
            # Inline, but never many in one loop turn (see _turns.TurnBudget).
            await self._turn_budget.wait()
            return parse(body, url=url)
        if self.config.parse_workers and not self._pool_failed:
            try:
                if self._parse_pool is None:
                    self._parse_pool = _parse_pool(self.config.parse_workers)
                loop = asyncio.get_running_loop()
                return await loop.run_in_executor(
                    self._parse_pool, functools.partial(parse, body, url=url)
                )
            except (BrokenProcessPool, ValueError, OSError) as exc:
                # No forkserver here, or workers that can't start (a script without
                # the main guard): parse in threads from now on, and say so once.
                logger.warning("parse worker processes unavailable (%s); using threads", exc)
                self._pool_failed = True
                if self._parse_pool is not None:
                    self._parse_pool.shutdown(wait=False, cancel_futures=True)
                    self._parse_pool = None
        return await asyncio.to_thread(parse, body, url=url)

    # --- registry ---------------------------------------------------------------

    async def regsearch(self, **constraints: Any) -> RegistryResources:
        """Registry resources matching constraints (see ``protocol.regtap.build_query``).

        A list of :class:`~voharvest.RegistryResource` that is also indexed by ivoid or
        short name, has ``to_table()`` (pyvo's columns) and ``overflow``
        (:class:`~voharvest.services.RegistryResources`).

        The RegTAP endpoints of the configuration are tried in order, each
        once, quickly: when one fails, can't run a constraint, or answers an
        error, the next one is asked. Then those that failed in a way that
        may heal (a timeout, a 503) are tried again with the retry policy's
        attempts. If all fail, the error names every endpoint and its cause.
        """
        self._check_open()
        return await search_registries(self, self.config.registries, constraints)

    # --- discovery ----------------------------------------------------------------

    async def discover(
        self,
        targets: Any,
        *,
        size: Any,
        band: Any = None,
        time: Any = None,
        inclusive: bool = False,
        options: DiscoveryOptions | None = None,
        journal: str | os.PathLike[str] | None = None,
    ) -> DiscoveryResult:
        """Every image of every target that the registry's image services hold.

        ``targets``: positions (SkyCoord, (ra, dec) degrees), names, or a list
        of them; ``size``: the search radius (degrees, Quantity or text);
        ``band``: a wavelength (Quantity or metres) the images must cover;
        ``time``: a time or (start, end) they must overlap; ``inclusive``: also
        ask services that declare no coverage. SIA 1.0, SIA 2.0 and ObsCore
        services are found in the registry, each one's coverage is fetched once
        and every target tested against it locally; services elided as pyvo's
        ``discover.images_globally`` elides them; ObsCore asked with an upload
        of the targets, SIA 2.0 with several POS per request. Returns the
        datasets (each with every service and target that found it) and a
        report per service (see docs/discover.md).
        """
        self._check_open()
        from ._discovery import discover

        return await discover(
            self,
            targets,
            size=size,
            band=band,
            time=time,
            inclusive=inclusive,
            options=options,
            journal=journal,
        )

    # --- services -----------------------------------------------------------------

    def sia_service(
        self, access_url: str, *, version: int = 1, cuts: bool = False
    ) -> SIAService | SIA2Service:
        """An SIA service from its access URL (``version`` 1 or 2; ``cuts``: an SIA 1.0
        service of the Cutout type, whose images are cut to the region searched)."""
        http_url(access_url)
        if version == 1:
            return SIAService(self, access_url, cuts=cuts)
        if version == 2:
            return SIA2Service(self, access_url)
        raise ParameterError(f"SIA version must be 1 or 2, not {version!r}")

    def tap_service(self, access_url: str) -> TAPService:
        """A TAP service from its base URL."""
        return TAPService(self, http_url(access_url))

    # --- names ----------------------------------------------------------------------

    async def resolve(self, name: str) -> SkyCoord:
        """ICRS position of an object name, through CDS Sesame.

        Answers (and "unknown name") are cached per client, and concurrent
        asks for the same name share one request.
        """
        self._check_open()
        return await self._names.resolve(name)

    async def resolve_position(self, pos: Any) -> Any:
        """``pos`` with a name resolved to a SkyCoord (:meth:`resolve`); anything else unchanged."""
        if isinstance(pos, str):
            return await self.resolve(pos)
        return pos

    async def position(self, pos: Any) -> Any:
        """Deprecated name of :meth:`resolve_position`."""
        _deprecated("position", "resolve_position")
        return await self.resolve_position(pos)

    # --- data -----------------------------------------------------------------------

    async def fetch(self, source: Any) -> bytes:
        """The bytes behind a record or URL (capped at ``max_fetch_bytes``)."""
        self._check_open()
        url = source_url(source)
        answer = await self._transport.request("GET", url, max_bytes=self.config.max_fetch_bytes)
        return answer.body

    async def capabilities(self, url: str) -> list[AccessRule]:
        """A service's VOSI capabilities at ``url``: which security methods each of
        its access URLs accepts. With credentials configured, they are learned: a
        credential then goes only where the service accepts its method (docs/auth.md).
        """
        self._check_open()
        answer = await self._transport.request("GET", http_url(url), max_bytes=4 * 1024 * 1024)
        rules = vosi.parse_capabilities(answer.body, url=answer.url)
        if self._transport.authenticator is not None:
            self._transport.authenticator.learn(rules)
        return rules

    async def fetch_votable(
        self, method: str, url: str, data: Any = None, *, attempts: int | None = None
    ) -> votable.Decoded:
        """A DAL request whose answer is a VOTable: fetched, parsed and checked.

        DALI lets a service send its error document with an HTTP error status:
        such an answer raises QueryError with the service's message (after the
        retries an HTTP 5xx gets), not a bare HTTPStatusError. ``attempts``:
        at most that many, if fewer than the retry policy's.
        """
        self._check_open()
        try:
            answer = await self._transport.request(method, url, data=data, attempts=attempts)
        except HTTPStatusError as exc:
            raise_dali_error(exc, url)
            raise
        return await self.decode(answer)

    async def fetch_table(self, method: str, url: str, data: Any = None) -> TableResults:
        """A DAL request whose answer is a VOTable, as table results."""
        return votable.table_results(await self.fetch_votable(method, url, data))

    async def query(
        self, method: str, url: str, data: Any = None, *, attempts: int | None = None
    ) -> votable.Decoded:
        """Deprecated name of :meth:`fetch_votable` (it is not a TAP query)."""
        _deprecated("query", "fetch_votable")
        return await self.fetch_votable(method, url, data, attempts=attempts)

    async def query_table(self, method: str, url: str, data: Any = None) -> TableResults:
        """Deprecated name of :meth:`fetch_table` (it is not a TAP query)."""
        _deprecated("query_table", "fetch_table")
        return await self.fetch_table(method, url, data)

    # --- DataLink -------------------------------------------------------------------

    async def datalinks(self, source: Any) -> DataLinks:
        """The DataLink document of a record (or at a URL), parsed.

        For a record, the document is at its access URL when its format says
        DataLink, else where the answer's DataLink service descriptor points;
        the parsed document is also kept on the record (``record.links``:
        ``#this``, ``#preview``, ``#progenitor`` links and service descriptors).
        A document that answers QUERY_STATUS=ERROR raises QueryError (also when
        sent with an HTTP error status); one that isn't a links table,
        FormatError.
        """
        return await self._links.datalinks(source)

    async def datasets(
        self,
        source: Any,
        *,
        format: str | None = None,
        cutout: Any = None,
        position: Any = None,
        fallback: str = "full",
    ) -> list[datalink.Dataset]:
        """The files a record's DataLink document leads to (see ``plan_datasets``).

        ``format`` picks among several ``#this`` links; ``cutout`` (a
        :class:`~voharvest.Cutout`, a radius such as ``"3arcmin"`` or a
        Quantity) asks the document's SODA service for a cutout around
        ``position`` (default: the record's position).
        """
        return await self._links.datasets(
            source, format=format, cutout=cutout, position=position, fallback=fallback
        )

    # --- downloads --------------------------------------------------------------------

    async def download(
        self,
        source: Any,
        directory: str | os.PathLike[str],
        *,
        filename: str | None = None,
        overwrite: bool = False,
        keep_partial: bool = False,
        expected_format: str | None = None,
        cutout: Any = None,
        position: Any = None,
    ) -> Path:
        """Stream a record's data (or a URL) into ``directory``; return the file's path.

        The body goes to ``<name>.part`` in large chunks and is renamed into
        place only when complete: of the length the server announced, and, if
        ``expected_format`` (a MIME type such as ``image/fits``) or the record's
        format says what it is, starting the way such a file starts. An
        existing file of that name is kept (and returned) unless ``overwrite``.

        By default a failed or cancelled download leaves no ``.part`` behind.
        With ``keep_partial`` it keeps ``.part`` (and a small ``.part.json``
        noting the URL and the server's validator), and the next download of
        the same URL resumes it with an HTTP Range request guarded by
        ``If-Range``; a server that ignores Range gets a fresh start, never an
        append.

        DataLink: a record whose format says its access URL is a DataLink
        document, or a URL that answers with one, is resolved: the dataset
        itself (the ``#this`` link, of ``expected_format`` if given) is
        downloaded, never the links document. With ``cutout`` the document's
        SODA service cuts that region around ``position`` (default: the
        record's position) and the cutout is downloaded. Where the document
        leads to several files, use :meth:`download_all`.
        """
        self._check_open()
        paths = await self._links.download(
            source, source_url(source), directory, filename, overwrite, keep_partial,
            expected_format, cutout, position, single=True,
        )  # fmt: skip
        return paths[0]

    async def download_all(
        self,
        source: Any,
        directory: str | os.PathLike[str],
        *,
        overwrite: bool = False,
        keep_partial: bool = False,
        expected_format: str | None = None,
        cutout: Any = None,
        position: Any = None,
    ) -> list[Path]:
        """Like :meth:`download`, for every file a DataLink document leads to
        (several ``#this`` links, several datasets); a plain URL gives one."""
        self._check_open()
        return await self._links.download(
            source, source_url(source), directory, None, overwrite, keep_partial,
            expected_format, cutout, position, single=False,
        )  # fmt: skip


def _deprecated(old: str, new: str) -> None:
    warnings.warn(
        f"VOClient.{old}() is deprecated; use VOClient.{new}()", DeprecationWarning, stacklevel=3
    )
