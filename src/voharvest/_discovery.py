"""Global image discovery on a client: ask the registry, plan, batch, collect.

:func:`discover` is what :meth:`VOClient.discover` runs. The planning is pure
(:mod:`voharvest.protocol.discovery`); this module sends the registry queries,
then the searches the plan asks for, through the client (so every request
obeys its host's limits), and gathers the datasets and a report per service.

Batching: an ObsCore service gets the targets as a TAP upload, ``batch_upload``
per query; an SIA 2.0 service gets ``batch_pos`` circles per request (``POS``
repeated, ORed by the service). A service that refuses its first batch is
asked again one target per request, and from then on only so: found out once
per service. SIA 1.0 takes one position per request.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ._exceptions import (
    HTTPStatusError,
    ParameterError,
    QueryError,
    ServiceError,
    TransportError,
    VOHarvestError,
)
from .protocol import discovery as plan_
from .protocol import sia1, sia2, tap, votable
from .protocol._encoding import angle, is_skycoord, position_degrees
from .protocol.discovery import Candidate, DatasetIndex, Origin, Plan, Target
from .protocol.records import SIAResults

if TYPE_CHECKING:
    from .client import VOClient
    from .protocol.discovery import Dataset

__all__ = ["DiscoveryOptions", "DiscoveryResult", "ServiceReport", "discover"]

logger = logging.getLogger("voharvest.discovery")


@dataclasses.dataclass(frozen=True, kw_only=True)
class DiscoveryOptions:
    """How a discovery plans and batches.

    ``order``/``intersect``/``cone``: the coverage test
    (:func:`voharvest.protocol.discovery.plan`); ``batch_upload``: targets per ObsCore upload query;
    ``batch_pos``: circles per SIA 2.0 request; ``concurrency``: requests in
    flight at once (each host's own limits apply on top); ``chunk``: ivoids
    per coverage or relationship query.
    """

    order: int = 6
    intersect: str = "covers"
    cone: str = "inclusive"
    batch_upload: int = 500
    batch_pos: int = 20
    concurrency: int = 8
    chunk: int = 200

    def __post_init__(self) -> None:
        for name in ("batch_upload", "batch_pos", "concurrency", "chunk"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ParameterError(f"DiscoveryOptions.{name}: expected a positive integer")
        if self.cone not in plan_.CONE_MODES:
            raise ParameterError(
                f"DiscoveryOptions.cone: one of {plan_.CONE_MODES}, not {self.cone!r}"
            )
        if self.intersect not in plan_.INTERSECT_MODES:
            raise ParameterError(
                f"DiscoveryOptions.intersect: one of {plan_.INTERSECT_MODES}, "
                f"not {self.intersect!r}"
            )


@dataclasses.dataclass(frozen=True)
class ServiceReport:
    """What a discovery did with one service (its provenance).

    ``status``: ``queried`` (asked, at least one answer), ``failed`` (asked,
    no answer), ``elided`` (never asked: another service covers it for every
    target that its coverage holds), ``skipped`` (no target in its coverage).
    Counts are in targets; ``requests`` is what was sent to it, ``records``
    the rows it answered, ``new`` the datasets first found there.
    ``elided_by`` names the reasons (text), ``errors`` the failures,
    ``mode``: ``upload``, ``multi-pos`` or ``single`` (how it was asked).
    """

    ivoid: str
    kind: str
    access_url: str
    title: str
    status: str
    queried: int = 0
    skipped: int = 0
    elided: int = 0
    failed: int = 0
    requests: int = 0
    records: int = 0
    new: int = 0
    overflows: int = 0
    mode: str = ""
    elided_by: tuple[str, ...] = ()
    errors: tuple[str, ...] = ()

    @property
    def key(self) -> tuple[str, str]:
        return (self.ivoid, self.kind)


@dataclasses.dataclass(frozen=True)
class DiscoveryResult:
    """Datasets found (each with every origin), a report per service, the plan."""

    targets: tuple[Target, ...]
    datasets: tuple[Dataset, ...]
    services: tuple[ServiceReport, ...]
    plan: Plan
    registry_requests: int

    @property
    def requests(self) -> int:
        """Every request sent: the registry's and the services'."""
        return self.registry_requests + sum(s.requests for s in self.services)

    def service(self, ivoid: str, kind: str | None = None) -> ServiceReport:
        for report in self.services:
            if report.ivoid == ivoid.lower() and (kind is None or report.kind == kind):
                return report
        raise KeyError(f"no service {ivoid} ({kind or 'any kind'}) among the candidates")

    def for_target(self, target_id: int) -> list[Dataset]:
        return [d for d in self.datasets if target_id in d.targets]

    def by_status(self, status: str) -> list[tuple[str, str]]:
        return sorted(s.key for s in self.services if s.status == status)


@dataclasses.dataclass
class _Tally:
    """A service's report as it is being made."""

    candidate: Candidate
    requests: int = 0
    records: int = 0
    new: int = 0
    overflows: int = 0
    answered: set[int] = dataclasses.field(default_factory=set)
    failed: set[int] = dataclasses.field(default_factory=set)
    errors: list[str] = dataclasses.field(default_factory=list)
    mode: str = ""


# --- inputs ------------------------------------------------------------------------------


async def _targets(client: VOClient, targets: Any, radius: float) -> list[Target]:
    """Targets from positions (SkyCoord, (ra, dec)), names, or a SkyCoord array."""
    if is_skycoord(targets) and not targets.isscalar:
        items: list[Any] = list(targets)
    elif isinstance(targets, str) or is_skycoord(targets):
        items = [targets]
    elif (
        isinstance(targets, tuple)
        and len(targets) == 2
        and all(isinstance(v, int | float) for v in targets)
    ):
        items = [targets]
    else:
        items = list(targets)
    if not items:
        raise ParameterError("discover: no target given")
    found = []
    for index, item in enumerate(items):
        label = item if isinstance(item, str) else ""
        position = await client.position(item)
        ra, dec = position_degrees(position, f"target {index}")
        found.append(Target(index, ra % 360.0, dec, radius, label))
    return found


# --- registry ------------------------------------------------------------------------------


async def _registry_rows(client: VOClient, queries: Sequence[str]) -> tuple[list[Any], int]:
    """Run ADQL on the first registry endpoint that answers; decoded answers, requests."""
    failures: list[VOHarvestError] = []
    for endpoint in client.config.registries:
        answers = []
        try:
            for query in queries:
                answers.append(
                    await client.query(
                        "POST", endpoint.url.rstrip("/") + "/sync", tap.sync_fields(query)
                    )
                )
        except (TransportError, ServiceError) as exc:
            logger.warning("registry %s failed: %s", endpoint.url, exc)
            failures.append(exc)
            continue
        return answers, len(queries)
    raise failures[-1]


def _rows(decoded: Any) -> list[dict[str, Any]]:
    names = [f.name for f in decoded.fields]
    results = votable.table_results(decoded)
    columns = [results.column(name) for name in names]
    return [dict(zip(names, values, strict=True)) for values in zip(*columns, strict=True)]


# --- searches ------------------------------------------------------------------------------


class _Runner:
    """Sends the plan's searches, within a bound of requests in flight."""

    def __init__(
        self,
        client: VOClient,
        plan: Plan,
        targets: Mapping[int, Target],
        options: DiscoveryOptions,
        band: Any,
        time: Any,
    ) -> None:
        self.client = client
        self.plan = plan
        self.targets = targets
        self.options = options
        self.band = band
        self.time = time
        self.index = DatasetIndex()
        self.tallies = {key: _Tally(c) for key, c in plan.candidates.items()}
        self.gate = asyncio.Semaphore(options.concurrency)

    async def run(self) -> None:
        async with asyncio.TaskGroup() as group:
            for key, ids in self.plan.query.items():
                if ids:
                    group.create_task(self._service(key, [self.targets[i] for i in ids]))

    async def _service(self, key: tuple[str, str], targets: list[Target]) -> None:
        candidate = self.plan.candidates[key]
        tally = self.tallies[key]
        if candidate.kind == "sia":
            tally.mode = "single"
            await self._each(tally, [[t] for t in targets])
            return
        size = self.options.batch_upload if candidate.kind == "obscore" else self.options.batch_pos
        batches = [targets[i : i + size] for i in range(0, len(targets), size)]
        first, rest = batches[0], batches[1:]
        tally.mode = "upload" if candidate.kind == "obscore" else "multi-pos"
        if len(first) == 1 and not rest:
            tally.mode = "single" if candidate.kind == "sia2" else tally.mode
        refused = await self._batch(tally, first, probing=len(first) > 1)
        if refused:
            # The service can't take a batch: one target per request, from now on.
            logger.info("%s refused a batch (%s): one target per request", candidate.label, refused)
            tally.mode = "single"
            await self._each(tally, [[t] for t in targets])
            return
        await self._each(tally, rest)

    async def _each(self, tally: _Tally, batches: Iterable[list[Target]]) -> None:
        async with asyncio.TaskGroup() as group:
            for batch in batches:
                group.create_task(self._batch(tally, batch, probing=False))

    async def _batch(self, tally: _Tally, batch: list[Target], *, probing: bool) -> str | None:
        """Ask one batch; on a refusal while ``probing``, return its reason (nothing counted)."""
        candidate = tally.candidate
        async with self.gate:
            tally.requests += 1
            try:
                results, owners = await self._ask(candidate, batch, tally.mode)
            except (QueryError, HTTPStatusError) as exc:
                if probing and _refusal(exc):
                    return str(exc)
                self._failed(tally, batch, exc)
                return None
            except VOHarvestError as exc:
                self._failed(tally, batch, exc)
                return None
        tally.answered.update(t.id for t in batch)
        tally.records += len(results)
        if results.overflow:
            tally.overflows += 1
            logger.warning("%s truncated its answer (OVERFLOW)", candidate.label)
        for record, target_ids in zip(results, owners, strict=True):
            for target_id in target_ids:
                origin = Origin(candidate.ivoid, candidate.kind, target_id)
                if self.index.add(record, origin):
                    tally.new += 1
        return None

    def _failed(self, tally: _Tally, batch: list[Target], exc: VOHarvestError) -> None:
        logger.warning("%s failed: %s", tally.candidate.label, exc)
        tally.failed.update(t.id for t in batch)
        if len(tally.errors) < 5:
            tally.errors.append(f"{type(exc).__name__}: {exc}")

    async def _ask(
        self, candidate: Candidate, batch: list[Target], mode: str
    ) -> tuple[SIAResults, list[list[int]]]:
        if candidate.kind == "obscore":
            return await self._obscore(candidate, batch, upload=mode == "upload")
        if candidate.kind == "sia2":
            return await self._sia2(candidate, batch)
        return await self._sia1(candidate, batch[0])

    async def _obscore(
        self, candidate: Candidate, batch: list[Target], *, upload: bool
    ) -> tuple[SIAResults, list[list[int]]]:
        url = candidate.access_url.rstrip("/?") + "/sync"
        if upload:
            query = plan_.obscore_upload_query(band=self.band, time=self.time)
            fields = [*tap.sync_fields(query), ("UPLOAD", "targets,param:targets")]
            content_type, body = plan_.multipart_body(
                fields, {"targets": plan_.targets_votable(batch)}
            )
            decoded = await self._post(url, body, content_type)
            results = _sia(decoded)
            owners = [[int(v)] for v in results.column(plan_.TARGET_COLUMN)]
            return results, owners
        (target,) = batch
        query = plan_.obscore_target_query(target, band=self.band, time=self.time)
        results = _sia(await self.client.query("POST", url, tap.sync_fields(query)))
        return results, [[target.id]] * len(results)

    async def _post(self, url: str, body: bytes, content_type: str) -> Any:
        transport = self.client.transport
        try:
            answer = await transport.request(
                "POST", url, data=body, headers={"Content-Type": content_type}
            )
        except HTTPStatusError as exc:
            self.client._raise_dali_error(exc, url)
            raise
        return await self.client.decode(answer)

    async def _sia2(
        self, candidate: Candidate, batch: list[Target]
    ) -> tuple[SIAResults, list[list[int]]]:
        params: dict[str, Any] = {"pos": plan_.sia2_pos(batch)}
        if self.band is not None:
            params["band"] = plan_.wavelength_metres(self.band)
        if self.time is not None:
            params["time"] = plan_.time_interval(self.time)
        url = sia2.build_url(candidate.access_url, **params)
        results = _sia(await self.client.query("GET", url))
        owners = [plan_.assign_targets(r.ra, r.dec, _fov(r), batch) for r in results]
        return results, owners

    async def _sia1(
        self, candidate: Candidate, target: Target
    ) -> tuple[SIAResults, list[list[int]]]:
        url = sia1.build_url(
            candidate.access_url,
            pos=(target.ra, target.dec),
            size=2 * target.radius,
            intersect="OVERLAPS",
        )
        results = _sia(await self.client.query("GET", url))
        return results, [[target.id]] * len(results)

    def reports(self) -> tuple[ServiceReport, ...]:
        found = []
        for key, candidate in self.plan.candidates.items():
            tally = self.tallies[key]
            skipped = len(self.plan.skipped.get(key, ()))
            elided = self.plan.elided.get(key, {})
            asked = self.plan.query.get(key, ())
            if asked:
                status = "queried" if tally.answered else "failed"
            elif elided:
                status = "elided"
            else:
                status = "skipped"
            found.append(
                ServiceReport(
                    ivoid=candidate.ivoid,
                    kind=candidate.kind,
                    access_url=candidate.access_url,
                    title=candidate.title,
                    status=status,
                    queried=len(tally.answered),
                    skipped=skipped,
                    elided=len(elided),
                    failed=len(tally.failed - tally.answered),
                    requests=tally.requests,
                    records=tally.records,
                    new=tally.new,
                    overflows=tally.overflows,
                    mode=tally.mode,
                    elided_by=tuple(sorted({str(e) for e in elided.values()})),
                    errors=tuple(tally.errors),
                )
            )
        return tuple(found)


def _sia(decoded: Any) -> SIAResults:
    """ObsCore or SIA answer as image records, without the overflow warning
    (a discovery reports overflows per service)."""
    from .protocol.records import sia_version

    version = sia_version(decoded.fields)
    if version is None:
        raise ServiceError("not an image search answer: no access URL column", url=decoded.url)
    return SIAResults(decoded, version=version, overflow=decoded.status.is_overflow)


def _fov(record: Any) -> float | None:
    try:
        value = record._role("s_fov")
    except (KeyError, AttributeError):
        return None
    try:
        return float(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def _refusal(exc: VOHarvestError) -> bool:
    """A service's "no" to a batch (an upload, several POS): a query error, or a
    client-error status. Server errors and transport failures are not."""
    if isinstance(exc, QueryError):
        return True
    return isinstance(exc, HTTPStatusError) and 400 <= exc.status < 500 and exc.status != 429


# --- the whole ---------------------------------------------------------------------------


async def discover(
    client: VOClient,
    targets: Any,
    *,
    size: Any,
    band: Any = None,
    time: Any = None,
    inclusive: bool = False,
    options: DiscoveryOptions | None = None,
) -> DiscoveryResult:
    """See :meth:`voharvest.VOClient.discover`."""
    options = options or DiscoveryOptions()
    radius = angle(size, "size")
    if not 0 < radius <= 10 or not math.isfinite(radius):
        raise ParameterError(f"size: a radius in (0, 10] degrees, not {radius}")
    if band is not None:
        plan_.wavelength_metres(band)
    if time is not None:
        plan_.time_interval(time)
    found = await _targets(client, targets, radius)

    features = client.config.registries[0].features
    spectral = _spectral_constraint(band)
    temporal = None if time is None else plan_.time_interval(time)
    query = plan_.candidates_query(
        spectral=spectral, temporal=temporal, inclusive=inclusive, features=features
    )
    (answer,), requests = await _registry_rows(client, [query])
    resources = votable.registry_results(answer)
    candidates = plan_.candidates_from_resources(resources)
    ivoids = sorted({c.ivoid for c in candidates})
    coverages: dict[str, str] = {}
    served_by: dict[str, frozenset[str]] = {}
    if ivoids:
        queries = plan_.coverage_queries(ivoids, chunk=options.chunk)
        relations = plan_.served_by_queries(ivoids, chunk=options.chunk)
        answers, more = await _registry_rows(client, [*queries, *relations])
        requests += more
        coverage_rows = [row for a in answers[: len(queries)] for row in _rows(a)]
        relation_rows = [row for a in answers[len(queries) :] for row in _rows(a)]
        coverages = plan_.parse_coverages(coverage_rows)
        served_by = plan_.parse_served_by(relation_rows)
    planned = plan_.plan(
        found,
        candidates,
        coverages,
        served_by,
        inclusive=inclusive,
        order=options.order,
        intersect=options.intersect,
        cone=options.cone,
    )
    runner = _Runner(client, planned, {t.id: t for t in found}, options, band, time)
    await runner.run()
    return DiscoveryResult(
        targets=tuple(found),
        datasets=tuple(runner.index.datasets),
        services=runner.reports(),
        plan=planned,
        registry_requests=requests,
    )


def _spectral_constraint(band: Any) -> Any:
    """The registry's spectral constraint for a band (a wavelength in metres as a
    Quantity, so that regtap converts it to energy)."""
    if band is None:
        return None
    from astropy import units as u

    return plan_.wavelength_metres(band) * u.m
