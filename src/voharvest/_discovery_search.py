"""The searches of a global discovery: each service asked about its targets, in batches.

:class:`SearchRunner` sends the searches a plan asks for, through the client
(so every request obeys its host's limits), with a bound of requests in flight
per host, and gathers the datasets and a report per service.

Batching: an ObsCore service gets the targets as a TAP upload, ``batch_upload``
per query; an SIA 2.0 service gets ``batch_pos`` circles per request (``POS``
repeated, ORed by the service). A service that refuses its first batch is
asked again one target per request, and from then on only so: found out once
per service. SIA 1.0 takes one position per request. A truncated answer
(OVERFLOW) to a batch is asked again in halves.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from ._datalinks import raise_dali_error
from ._discovery_journal import DiscoveryJournal, question_key
from ._discovery_options import DiscoveryOptions, ServiceReport
from ._exceptions import HTTPStatusError, QueryError, ServiceError, VOHarvestError
from .protocol import discovery as plan_
from .protocol import sia1, sia2, tap, votable
from .protocol.discovery import Candidate, DatasetIndex, Origin, Plan, Target
from .protocol.records import SIAResults

if TYPE_CHECKING:
    from .client import VOClient

__all__ = ["SearchRunner"]

logger = logging.getLogger("voharvest.discovery")


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


class SearchRunner:
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
