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
import json
import logging
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from ._checks import angle, is_skycoord, position_degrees
from ._datalinks import raise_dali_error
from ._discovery_journal import DiscoveryJournal, question_key
from ._exceptions import (
    HTTPStatusError,
    ParameterError,
    QueryError,
    ServiceError,
    TransportError,
    VOHarvestError,
)
from ._names import import_in_thread
from .protocol import discovery as plan_
from .protocol import sia1, sia2, tap, votable
from .protocol.discovery import Candidate, DatasetIndex, Origin, Plan, Target
from .protocol.records import SIAResults

if TYPE_CHECKING:
    from .client import VOClient
    from .protocol.discovery import Dataset

__all__ = ["DiscoveryOptions", "DiscoveryResult", "ServiceReport", "discover", "download"]

logger = logging.getLogger("voharvest.discovery")


@dataclasses.dataclass(frozen=True, kw_only=True)
class DiscoveryOptions:
    """How a discovery plans and batches.

    ``order``/``intersect``/``cone``: the coverage test
    (:func:`voharvest.protocol.discovery.plan`); ``batch_upload``: targets per
    ObsCore upload query; ``batch_pos``: circles per SIA 2.0 request;
    ``concurrency``: requests in flight at once per host and per service (each
    host's own limits apply too); ``chunk``: ivoids per coverage or
    relationship query.
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
    Counts are in targets; ``requests`` is what was sent to it (``replayed``:
    answers read from the journal instead), ``records`` the rows it answered,
    ``new`` the datasets first found there.
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
    replayed: int = 0
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
    #: Answers read from the journal instead of asked for (registry and searches).
    replayed: int = 0

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

    def report(self) -> dict[str, Any]:
        """The provenance as plain data (JSON-ready): a record per service, totals."""
        return {
            "targets": len(self.targets),
            "datasets": len(self.datasets),
            "requests": self.requests,
            "registry_requests": self.registry_requests,
            "replayed": self.replayed,
            "services": [
                {**dataclasses.asdict(s), "elided_by": list(s.elided_by), "errors": list(s.errors)}
                for s in self.services
            ],
        }


@dataclasses.dataclass
class _Tally:
    """A service's report as it is being made."""

    candidate: Candidate
    requests: int = 0
    replayed: int = 0
    records: int = 0
    new: int = 0
    overflows: int = 0
    answered: set[int] = dataclasses.field(default_factory=set)
    failed: set[int] = dataclasses.field(default_factory=set)
    errors: list[str] = dataclasses.field(default_factory=list)
    mode: str = ""


# --- inputs ------------------------------------------------------------------------------


async def _targets(client: VOClient, targets: Any, radius: float) -> list[Target]:
    """Targets from positions (SkyCoord, (ra, dec), (ra, dec, label)), names, or a
    SkyCoord array."""
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
    for index, given in enumerate(items):
        item: Any = given
        label = item if isinstance(item, str) else ""
        if isinstance(item, tuple | list) and len(item) == 3 and isinstance(item[2], str):
            item, label = tuple(item[:2]), str(item[2])  # (ra, dec, label)
        position = await client.resolve_position(item)
        ra, dec = position_degrees(position, f"target {index}")
        found.append(Target(index, ra % 360.0, dec, radius, label))
    return found


# --- registry ------------------------------------------------------------------------------


async def _registry_rows(
    client: VOClient, queries: Sequence[str], journal: DiscoveryJournal | None = None
) -> tuple[list[Any], int]:
    """Run ADQL on the first registry endpoint that answers: the decoded answers,
    and how many requests that took (answers kept in the journal are not asked for)."""
    failures: list[VOHarvestError] = []
    kept: dict[int, Any] = {}
    if journal is not None:
        for i, query in enumerate(queries):
            found = await journal.answer(question_key("registry", query))
            if found is not None:
                kept[i] = await asyncio.to_thread(votable.decode, found[1], url=found[0])
    wanted = [i for i in range(len(queries)) if i not in kept]
    if not wanted:
        return [kept[i] for i in range(len(queries))], 0
    for endpoint in client.config.registries:
        url = endpoint.url.rstrip("/") + "/sync"
        try:
            answers = await asyncio.gather(
                *(client.fetch_votable("POST", url, tap.sync_fields(queries[i])) for i in wanted)
            )
        except (TransportError, ServiceError) as exc:
            logger.warning("registry %s failed: %s", endpoint.url, exc)
            failures.append(exc)
            continue
        for i, decoded in zip(wanted, answers, strict=True):
            kept[i] = decoded
            if journal is not None and decoded.source is not None:
                key = question_key("registry", queries[i])
                await journal.keep(key, decoded.url or url, decoded.source)
        return [kept[i] for i in range(len(queries))], len(wanted)
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
        inclusive: bool = False,
        journal: DiscoveryJournal | None = None,
    ) -> None:
        self.client = client
        self.inclusive = inclusive
        self.journal = journal
        self.plan = plan
        self.targets = targets
        self.options = options
        self.band = band
        self.time = time
        self.metres = plan_.wavelength_metres(band) if band is not None else math.nan
        self.mjds = plan_.time_interval(time) if time is not None else (math.nan, math.nan)
        self.index = DatasetIndex()
        self.tallies = {key: _Tally(c) for key, c in plan.candidates.items()}
        # Requests in flight, per host (a slow or paused host holds only its own).
        self.gates: dict[str, asyncio.Semaphore] = {}

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
        note = question_key("refuses-batches", candidate.ivoid, candidate.kind)
        refused = None
        if self.journal is not None and await self.journal.note(note):
            refused = "noted in the journal"
        else:
            # An upload of one target, or several POS: the service may say no.
            refused = await self._batch(tally, first, probing=tally.mode != "single")
        if refused:
            # The service can't take a batch: one target per request, from now on.
            logger.info("%s refused a batch (%s): one target per request", candidate.label, refused)
            if self.journal is not None:
                await self.journal.set_note(note, refused)
            tally.mode = "single"
            await self._each(tally, [[t] for t in targets])
            return
        await self._each(tally, rest)

    async def _each(self, tally: _Tally, batches: Sequence[list[Target]]) -> None:
        """Ask the batches, a few at a time: a fixed set of workers per service
        takes them in turn (no task per target, however many there are)."""
        pending = iter(batches)

        async def worker() -> None:
            for batch in pending:
                await self._batch(tally, batch, probing=False)

        async with asyncio.TaskGroup() as group:
            for _ in range(min(self.options.concurrency, len(batches))):
                group.create_task(worker())

    async def _batch(self, tally: _Tally, batch: list[Target], *, probing: bool) -> str | None:
        """Ask one batch; on a refusal while ``probing``, return its reason (nothing counted)."""
        candidate = tally.candidate
        key = self._question(candidate, batch, tally.mode)
        found = None if self.journal is None else await self.journal.answer(key)
        if found is not None:
            decoded = await asyncio.to_thread(votable.decode, found[1], url=found[0])
            tally.replayed += 1
        else:
            async with self._gate(candidate):
                tally.requests += 1
                try:
                    decoded = await self._ask(candidate, batch, tally.mode)
                except (QueryError, HTTPStatusError) as exc:
                    if probing and _refusal(exc):
                        return str(exc)
                    self._failed(tally, batch, exc)
                    return None
                except VOHarvestError as exc:
                    self._failed(tally, batch, exc)
                    return None
        try:
            results, owners = self._read(candidate, batch, decoded, tally.mode)
        except VOHarvestError as exc:
            self._failed(tally, batch, exc)
            return None
        if found is None and self.journal is not None and decoded.source is not None:
            await self.journal.keep(key, decoded.url or candidate.access_url, decoded.source)
        if results.overflow and len(batch) > 1:
            # Truncated: ask again in halves (the answer's rows stay uncounted).
            half = len(batch) // 2
            logger.info("%s truncated a batch of %d: asking in halves", candidate.label, len(batch))
            await self._each(tally, [batch[:half], batch[half:]])
            return None
        tally.answered.update(t.id for t in batch)
        tally.records += len(results)
        if results.overflow:
            tally.overflows += 1
            logger.warning("%s truncated its answer (OVERFLOW)", candidate.label)
        keep = self._sia1_filter if candidate.kind == "sia" and not self.inclusive else None
        for record, target_ids in zip(results, owners, strict=True):
            if keep is not None and not keep(record):
                continue
            for target_id in target_ids:
                origin = Origin(candidate.ivoid, candidate.kind, target_id)
                if self.index.add(record, origin):
                    tally.new += 1
        return None

    def _gate(self, candidate: Candidate) -> asyncio.Semaphore:
        host = urlsplit(candidate.access_url).netloc.lower()
        gate = self.gates.get(host)
        if gate is None:
            gate = self.gates[host] = asyncio.Semaphore(self.options.concurrency)
        return gate

    def _failed(self, tally: _Tally, batch: list[Target], exc: VOHarvestError) -> None:
        logger.warning("%s failed: %s", tally.candidate.label, exc)
        tally.failed.update(t.id for t in batch)
        if len(tally.errors) < 5:
            tally.errors.append(f"{type(exc).__name__}: {exc}")

    def _question(self, candidate: Candidate, batch: list[Target], mode: str) -> str:
        """The journal's key of a search: service, kind of request, targets, constraints."""
        circles = ";".join(f"{t.id},{t.ra!r},{t.dec!r},{t.radius!r}" for t in batch)
        how = "upload" if candidate.kind == "obscore" and mode == "upload" else "get"
        constraints = (
            repr(plan_.wavelength_metres(self.band)) if self.band is not None else "",
            repr(self.mjds) if self.time is not None else "",
        )
        return question_key(
            "search", candidate.ivoid, candidate.kind, candidate.access_url, how, circles,
            *constraints,
        )  # fmt: skip

    async def _ask(self, candidate: Candidate, batch: list[Target], mode: str) -> Any:
        """Send one search; its answer, decoded (with the document kept)."""
        if candidate.kind == "obscore":
            url = candidate.access_url.rstrip("/?") + "/sync"
            if mode == "upload":
                query = plan_.obscore_upload_query(band=self.band, time=self.time)
                fields = [*tap.sync_fields(query), ("UPLOAD", "targets,param:targets")]
                content_type, body = plan_.multipart_body(
                    fields, {"targets": plan_.targets_votable(batch)}
                )
                return await self._post(url, body, content_type)
            (target,) = batch
            query = plan_.obscore_target_query(target, band=self.band, time=self.time)
            return await self.client.fetch_votable("POST", url, tap.sync_fields(query))
        if candidate.kind == "sia2":
            params: dict[str, Any] = {"pos": plan_.sia2_pos(batch)}
            if self.band is not None:
                params["band"] = plan_.wavelength_metres(self.band)
            if self.time is not None:
                params["time"] = self.mjds
            return await self.client.fetch_votable(
                "GET", sia2.build_url(candidate.access_url, **params)
            )
        target = batch[0]
        url = sia1.build_url(
            candidate.access_url,
            pos=(target.ra, target.dec),
            size=2 * target.radius,
            intersect="OVERLAPS",
        )
        return await self.client.fetch_votable("GET", url)

    def _read(
        self, candidate: Candidate, batch: list[Target], decoded: Any, mode: str
    ) -> tuple[SIAResults, list[list[int]]]:
        """An answer's image records, and the targets each belongs to."""
        results = _sia(decoded)
        if candidate.kind == "obscore" and mode == "upload":
            return results, [[int(v)] for v in results.column(plan_.TARGET_COLUMN)]
        if candidate.kind == "sia2":
            return results, [plan_.assign_targets(r.ra, r.dec, _fov(r), batch) for r in results]
        return results, [[batch[0].id]] * len(results)

    async def _post(self, url: str, body: bytes, content_type: str) -> Any:
        transport = self.client.transport
        try:
            answer = await transport.request(
                "POST", url, data=body, headers={"Content-Type": content_type}
            )
        except HTTPStatusError as exc:
            raise_dali_error(exc, url)
            raise
        return await self.client.decode(answer)

    def _sia1_filter(self, record: Any) -> bool:
        """SIA 1.0 has no band or time parameter: as pyvo.discover, drop a record
        whose bandpass misses the band, or whose observation date is more than
        0.1 day outside the time (records without them are kept); not with
        ``inclusive``."""
        if self.band is not None:
            span = _bandpass_metres(record)
            if span is not None and not span[0] <= self.metres <= span[1]:
                return False
        if self.time is not None:
            mjd = record._role("dateobs")
            if mjd is not None:
                lo, hi = self.mjds
                if not lo - 0.1 < float(mjd) < hi + 0.1:
                    return False
        return True

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
                    replayed=tally.replayed,
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


def _bandpass_metres(record: Any) -> tuple[float, float] | None:
    """(low, high) wavelength of an SIA 1.0 record in metres (its
    VOX:BandPass_Unit, metres when not given), or None."""
    try:
        lo, hi = record._role("bandpass_lolimit"), record._role("bandpass_hilimit")
    except (KeyError, AttributeError):
        return None
    if lo is None or hi is None:
        return None
    unit = str(record._role("bandpass_unit") or "m").strip() or "m"
    scale = 1.0
    if unit.lower() not in ("m", "meter", "meters", "metre", "metres"):
        from astropy import units as u

        try:
            scale = float(u.Unit(unit).to(u.m, equivalencies=u.spectral()))
        except (ValueError, u.UnitsError):
            return None
    low, high = sorted((float(lo) * scale, float(hi) * scale))
    return (low, high)


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


async def _load_all(modules: Sequence[str]) -> None:
    for module in modules:
        await import_in_thread(module)


async def discover(
    client: VOClient,
    targets: Any,
    *,
    size: Any,
    band: Any = None,
    time: Any = None,
    inclusive: bool = False,
    options: DiscoveryOptions | None = None,
    journal: str | os.PathLike[str] | None = None,
) -> DiscoveryResult:
    """See :meth:`voharvest.VOClient.discover`."""
    options = options or DiscoveryOptions()
    if journal is None:
        return await _discover(client, targets, size, band, time, inclusive, options, None)
    kept = await DiscoveryJournal(journal).open()
    try:
        return await _discover(client, targets, size, band, time, inclusive, options, kept)
    finally:
        await asyncio.shield(kept.close())


async def _discover(
    client: VOClient,
    targets: Any,
    size: Any,
    band: Any,
    time: Any,
    inclusive: bool,
    options: DiscoveryOptions,
    journal: DiscoveryJournal | None,
) -> DiscoveryResult:
    radius = angle(size, "size")
    if not 0 < radius <= 10 or not math.isfinite(radius):
        raise ParameterError(f"size: a radius in (0, 10] degrees, not {radius}")
    if band is not None:
        plan_.wavelength_metres(band)
    if time is not None:
        plan_.time_interval(time)
    found = await _targets(client, targets, radius)
    # The MOC libraries load in a thread (mocpy takes a second or more) while
    # the registry answers.
    loading = asyncio.ensure_future(_load_all(("mocpy", "cdshealpix")))

    try:
        features = client.config.registries[0].features
        spectral = _spectral_constraint(band)
        temporal = None if time is None else plan_.time_interval(time)
        query = plan_.candidates_query(
            spectral=spectral, temporal=temporal, inclusive=inclusive, features=features
        )
        (answer,), requests = await _registry_rows(client, [query], journal)
        resources = votable.registry_results(answer)
        candidates = plan_.candidates_from_resources(resources)
        ivoids = sorted({c.ivoid for c in candidates})
        coverages: dict[str, str] = {}
        served_by: dict[str, frozenset[str]] = {}
        if ivoids and not features.stc:
            # No rr.stc_spatial: no service declares a coverage here; with
            # inclusive every one is asked about every target, without none.
            logger.warning("the registry has no coverage tables: no service declares one")
            answers, more = await _registry_rows(
                client, plan_.served_by_queries(ivoids, chunk=options.chunk), journal
            )
            requests += more
            served_by = plan_.parse_served_by([row for a in answers for row in _rows(a)])
        elif ivoids:
            queries = plan_.coverage_queries(ivoids, chunk=options.chunk)
            relations = plan_.served_by_queries(ivoids, chunk=options.chunk)
            answers, more = await _registry_rows(client, [*queries, *relations], journal)
            requests += more
            coverage_rows = [row for a in answers[: len(queries)] for row in _rows(a)]
            relation_rows = [row for a in answers[len(queries) :] for row in _rows(a)]
            coverages = plan_.parse_coverages(coverage_rows)
            served_by = plan_.parse_served_by(relation_rows)
    except BaseException:
        loading.cancel()
        raise
    # The plan, CPU work that grows with targets x candidates, is made in a
    # thread: the event loop runs on meanwhile.
    await loading
    planned = await asyncio.to_thread(
        plan_.plan,
        found,
        candidates,
        coverages,
        served_by,
        inclusive=inclusive,
        order=options.order,
        intersect=options.intersect,
        cone=options.cone,
    )
    runner = _Runner(
        client, planned, {t.id: t for t in found}, options, band, time, inclusive, journal
    )
    await runner.run()
    result = DiscoveryResult(
        targets=tuple(found),
        # Ordered by target, then URL: the same every run (answers arrive in any order).
        datasets=tuple(sorted(runner.index.datasets, key=lambda d: (d.targets, d.access_url))),
        services=runner.reports(),
        plan=planned,
        registry_requests=requests,
        replayed=0 if journal is None else journal.replayed,
    )
    if journal is not None:
        # The provenance of this run, beside its answers.
        await journal.set_note("report", json.dumps(result.report(), sort_keys=True))
    return result


def _spectral_constraint(band: Any) -> Any:
    """The registry's spectral constraint for a band (a wavelength in metres as a
    Quantity, so that regtap converts it to energy)."""
    if band is None:
        return None
    from astropy import units as u

    return plan_.wavelength_metres(band) * u.m


# --- downloads ---------------------------------------------------------------------------


def target_folder(target: Target) -> str:
    """A safe, stable folder name for a target's files."""
    from ._files import safe_filename

    if target.label:
        return safe_filename(target.label, default="target")
    return f"{target.ra:09.5f}{target.dec:+09.5f}"


async def download(
    client: VOClient,
    result: DiscoveryResult,
    directory: str | os.PathLike[str],
    *,
    formats: Sequence[str] | None = None,
    workers: int = 8,
) -> list[tuple[Dataset, Path | VOHarvestError]]:
    """Download what a discovery found: each dataset once, into the folder of
    its first target (``directory/<target>/``), with ``client.download``
    (DataLink documents resolved to their dataset, ``.part`` kept on failure).

    A file already there is not fetched again, and a ``.part`` is resumed: run
    again, only what is missing is fetched. ``formats``: only datasets of these
    MIME types (the parameters after ``;`` ignored; DataLink records are kept,
    their dataset's type is not known before). Returns (dataset, path or error)
    pairs, in the result's order.
    """
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ParameterError(f"workers: expected a positive integer, not {workers!r}")
    wanted = {f.split(";")[0].strip().lower() for f in formats} if formats else None
    targets = {t.id: t for t in result.targets}
    chosen = [
        d
        for d in result.datasets
        if wanted is None
        or (d.format or "").split(";")[0].strip().lower() in wanted
        or "datalink" in (d.format or "").lower()
    ]
    outcome: dict[int, Path | VOHarvestError] = {}
    pending = iter(enumerate(chosen))

    async def worker() -> None:
        for index, dataset in pending:
            folder = Path(directory) / target_folder(targets[dataset.targets[0]])
            try:
                outcome[index] = await client.download(dataset.record, folder, keep_partial=True)
            except VOHarvestError as exc:
                logger.warning("download of %s failed: %s", dataset.access_url, exc)
                outcome[index] = exc

    async with asyncio.TaskGroup() as group:
        for _ in range(min(workers, len(chosen))):
            group.create_task(worker())
    return [(dataset, outcome[i]) for i, dataset in enumerate(chosen)]
