"""Global image discovery on a client: ask the registry, plan, search, collect.

:func:`discover` is what :meth:`VOClient.discover` runs. The planning is pure
(:mod:`voharvest.protocol.discovery`); this module reads the targets, sends
the registry queries (candidates, coverages, relationships), has the plan made
in a thread, and runs it: the searches and their batching are
:class:`~voharvest._discovery_search.SearchRunner`'s. The values it returns
are in :mod:`voharvest._discovery_options`, the downloads of what it found in
:mod:`voharvest._discovery_downloads`; this module re-exports both, so that
``voharvest._discovery`` stays the one place to import a discovery from.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ._checks import angle, is_skycoord, position_degrees
from ._discovery_downloads import download, target_folder
from ._discovery_journal import DiscoveryJournal, question_key
from ._discovery_options import DiscoveryOptions, DiscoveryResult, ServiceReport
from ._discovery_search import SearchRunner
from ._exceptions import ParameterError, ServiceError, TransportError, VOHarvestError
from ._names import import_in_thread
from .protocol import discovery as plan_
from .protocol import tap, votable
from .protocol.discovery import Target

if TYPE_CHECKING:
    from .client import VOClient

__all__ = [
    "DiscoveryOptions",
    "DiscoveryResult",
    "ServiceReport",
    "discover",
    "download",
    "target_folder",
]

logger = logging.getLogger("voharvest.discovery")


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
    runner = SearchRunner(
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
