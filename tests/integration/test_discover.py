"""Global discovery on DaCHS's registry: VOClient.discover against pyvo.discover.

For single positions inside and outside the local footprints, both clients
search the same registry (tests/integration/dachs/rr) and the same services;
they must find the same datasets (access URLs), and query, skip (by coverage)
and elide the same services.

pyvo 1.10's ObsCore discovery is patched here to what it means to do: its
fallback for TAP services that declare the ObsCore data model (the older
pattern, ``rr.res_detail``) calls ``list_services``, which does not exist,
on the wrong variable, so against any registry where such a service covers
the position (this one's TAP service) it raises before querying anything.
The patch keeps its rule: table-based ObsCore resources, plus data-model ones
whose TAP access URLs none of those has.
"""

from __future__ import annotations

import asyncio
import math
import warnings
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from astropy import units as u
from astropy.io.votable import parse_single_table
from astropy.time import Time
from pyvo import registry as pyvo_registry
from pyvo.dal.exceptions import DALQueryError
from pyvo.registry import regtap as pyvo_regtap
from pyvo.utils.prototype import PrototypeWarning

from tests.integration.conftest import Dachs
from tests.integration.dachs.make_fits import TARGETS
from voharvest import DiscoveryOptions, DiscoveryResult, HostPolicy
from voharvest._discovery import download
from voharvest._discovery_downloads import write_manifest
from voharvest._discovery_journal import DiscoveryJournal
from voharvest.client import VOClient
from voharvest.protocol.discovery import Target

with warnings.catch_warnings():
    # "pyvo.discover's API is still under design": said on import, once.
    warnings.simplefilter("ignore", PrototypeWarning)
    from pyvo.discover import image as pyvo_image

SDSS = "ivo://voharvest.test/sdss/q/i"
MIRROR = "ivo://voharvest.test/sdss/mirror"
UVOT = "ivo://voharvest.test/uvot/q/i"
SIAP2 = "ivo://voharvest.test/__system__/siap2/sitewide"
TAP = "ivo://voharvest.test/tap"
PLATES = "ivo://voharvest.test/decoy/plates"
GALEX = "ivo://voharvest.test/decoy/galex"
XRT = "ivo://voharvest.test/decoy/xrt"

RADIUS = 0.05
#: Outside every local footprint (only the all-sky plates, at a closed port, cover it).
NOWHERE_NEAR = {"COSMOS": (150.1191, 2.2058), "south": (300.0, -60.0)}
POSITIONS = {**TARGETS, **NOWHERE_NEAR}

Key = tuple[str, str]  # (ivoid, kind: sia / sia2 / obscore)


def _obscore_services(self: Any, *constraints: Any) -> list[Any]:
    """pyvo's ImageDiscoverer._discover_obscore_services as it means to work."""
    tables = pyvo_registry.search(pyvo_registry.Datamodel("obscore_new"), *constraints)
    models = pyvo_registry.search(pyvo_registry.Datamodel("obscore"), *constraints)
    table_urls = {i.access_url for r in tables for i in r.list_interfaces("tap")}
    found = [pyvo_image.Queriable(r) for r in tables]
    for resource in models:
        if table_urls.isdisjoint(i.access_url for i in resource.list_interfaces("tap")):
            found.append(pyvo_image.Queriable(resource))
    return found


class PyvoRun:
    """One pyvo discovery, watched: its candidates before and after the
    elision, the services it asked and how each fared."""

    def __init__(self) -> None:
        self.before: set[Key] = set()
        self.after: set[Key] = set()
        self.asked: dict[Key, str] = {}
        self.images: list[Any] = []
        self.log: list[str] = []


def _keys(discoverer: Any) -> set[Key]:
    return (
        {(r.ivoid, "sia") for r in discoverer.sia1_recs}
        | {(r.ivoid, "sia2") for r in discoverer.sia2_recs}
        | {(r.ivoid, "obscore") for r in discoverer.obscore_recs}
    )


#: Where a watched discoverer records what it does: each run its own record
#: (the runs go on side by side, each with its own ImageDiscoverer).
_WATCHED = "_voharvest_watched"


def _watched(discoverer: Any) -> PyvoRun:
    run: PyvoRun = getattr(discoverer, _WATCHED)
    return run


#: Constraints besides the position: pyvo's (spectrum, time) and ours (band, time).
CONSTRAINTS: dict[str, dict[str, Any]] = {
    "": {},
    # r band: SDSS-like and the site-wide SIA 2.0 declare it; the TAP service
    # declares no spectral coverage, so it drops out (inclusive=False).
    "620nm": {"spectrum": 620 * u.nm},
    "250nm": {"spectrum": 250 * u.nm},
    # 2004-03-12 (MJD 53076), within the images' dates (MJD 53074-53079).
    "mjd53076": {"time": Time(53076.0, format="mjd")},
}
CASES = [(name, "") for name in POSITIONS] + [
    ("M51", "620nm"),
    ("M101", "250nm"),
    ("M87", "620nm"),
    ("M51", "mjd53076"),
    ("COSMOS", "620nm"),
]


class PyvoRuns:
    """pyvo's discoveries for every case, started together once: each case's
    run, and per constraint the candidates without a position (asked once)."""

    def __init__(
        self, cases: dict[tuple[str, str], Future[PyvoRun]], every: dict[str, Future[PyvoRun]]
    ) -> None:
        self.cases = cases
        self.every = every

    async def case(self, name: str, constraint: str) -> tuple[PyvoRun, set[Key]]:
        """The case's run and pyvo's candidates under its constraint."""
        theirs, everywhere = await asyncio.gather(
            asyncio.wrap_future(self.cases[(name, constraint)]),
            asyncio.wrap_future(self.every[constraint]),
        )
        return theirs, everywhere.before


@pytest.fixture(scope="module")
def pyvo_runs(dachs_server: Dachs, request: pytest.FixtureRequest) -> Iterator[PyvoRuns]:
    """pyvo.discover pointed at DaCHS's registry, patched as the module text
    says, run for every case in a small thread pool (DaCHS answers requests
    side by side); the tests take their runs as they come."""
    previous = pyvo_regtap.REGISTRY_BASEURL
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(pyvo_image.ImageDiscoverer, "_discover_obscore_services", _obscore_services)
        purge = pyvo_image.ImageDiscoverer._purge_redundant_services

        def watched_purge(self: Any) -> None:
            _watched(self).before = _keys(self)
            purge(self)

        patch.setattr(pyvo_image.ImageDiscoverer, "_purge_redundant_services", watched_purge)
        for kind, name in (
            ("sia", "_query_one_sia1"),
            ("sia2", "_query_one_sia2"),
            ("obscore", "_query_one_obscore"),
        ):
            original = getattr(pyvo_image.ImageDiscoverer, name)

            def watched_query(
                self: Any, rec: Any, *args: Any, _original: Any = original, _kind: str = kind
            ) -> None:
                try:
                    _original(self, rec, *args)
                except Exception:
                    _watched(self).asked[(rec.ivoid, _kind)] = "failed"
                    raise
                _watched(self).asked[(rec.ivoid, _kind)] = "queried"

            patch.setattr(pyvo_image.ImageDiscoverer, name, watched_query)
        pyvo_registry.choose_RegTAP_service(dachs_server.tap)
        # The registry's TAP service is one, shared by every run: read its
        # capabilities and tables once, before the runs go on side by side.
        registry = pyvo_regtap.get_RegTAP_service()
        registry.get_tap_capability()
        registry.tables  # noqa: B018

        def run(
            space: tuple[float, float, float] | None, query: bool, more: dict[str, Any]
        ) -> PyvoRun:
            # DaCHS's sync TAP answers a registry query with an ERROR VOTable
            # ("list index out of range", its own error, logged without a query) now
            # and then while other queries run: pyvo raises; the oracle asks again.
            for attempt in range(3):
                try:
                    return attempt_run(space, query, more)
                except DALQueryError as exc:
                    if attempt == 2 or "out of range" not in str(exc):
                        raise
            raise AssertionError("unreachable")

        def attempt_run(
            space: tuple[float, float, float] | None, query: bool, more: dict[str, Any]
        ) -> PyvoRun:
            discoverer = pyvo_image.ImageDiscoverer(space=space, timeout=10, **more)
            watched = PyvoRun()
            setattr(discoverer, _WATCHED, watched)
            discoverer.discover_services()
            watched.after = _keys(discoverer)
            if query:
                discoverer.query_services()
                watched.images = list(discoverer.results)
                watched.log = list(discoverer.log_messages)
            return watched

        # Two at a time: DaCHS parses each ADQL query in one Python process,
        # so more runs side by side only wait for each other.
        pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="pyvo-discover")
        every: dict[str, Future[PyvoRun]] = {}
        cases: dict[tuple[str, str], Future[PyvoRun]] = {}
        # The cases this session runs (all, unless some are deselected), in
        # their order: the first ones come first.
        selected = [
            (item.callspec.params["name"], item.callspec.params["constraint"])
            for item in request.session.items
            if isinstance(item, pytest.Function)
            and item.originalname == "test_same_datasets_and_services_as_pyvo"
            and item.module is request.module
        ]
        for name, constraint in selected:
            more = CONSTRAINTS[constraint]
            if constraint not in every:
                every[constraint] = pool.submit(run, None, False, more)
            ra, dec = POSITIONS[name]
            cases[(name, constraint)] = pool.submit(run, (ra, dec, RADIUS), True, more)
        try:
            yield PyvoRuns(cases, every)
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
            pyvo_registry.choose_RegTAP_service(previous)


#: Our discoveries of one position (no options), each asked once in this
#: module: the oracle cases, the pinned M51 and the batch's singles ask the
#: same ones. The results are frozen; each is what ``discover`` returned.
_ALONE: dict[tuple[str, str], DiscoveryResult] = {}


async def _alone(client: VOClient, name: str, constraint: str = "") -> DiscoveryResult:
    """Our discovery of one named position under one constraint."""
    if (name, constraint) not in _ALONE:
        more = CONSTRAINTS[constraint]
        _ALONE[(name, constraint)] = await client.discover(
            POSITIONS[name], size=RADIUS, band=more.get("spectrum"), time=more.get("time")
        )
    return _ALONE[(name, constraint)]


@pytest.mark.parametrize(("name", "constraint"), CASES)
async def test_same_datasets_and_services_as_pyvo(
    name: str, constraint: str, client: VOClient, pyvo_runs: PyvoRuns
) -> None:
    ours, (theirs, every_candidate) = await asyncio.gather(
        _alone(client, name, constraint), pyvo_runs.case(name, constraint)
    )

    # The same candidates in all: the registry's SIA 1.0, SIA 2.0 and ObsCore services.
    assert {s.key for s in ours.services} == every_candidate
    # The same services asked, succeeding or failing alike ...
    assert {key: s.status for s in ours.services if (key := s.key) in theirs.asked} == (
        theirs.asked
    )
    assert set(ours.by_status("queried")) | set(ours.by_status("failed")) == set(theirs.asked)
    # ... elided alike (covering the position, not asked) ...
    assert set(ours.by_status("elided")) == theirs.before - theirs.after
    # ... and skipped alike (outside their coverage).
    assert set(ours.by_status("skipped")) == every_candidate - theirs.before

    # The same datasets: the same access URLs, none twice.
    our_urls = [url for d in ours.datasets for url in d.access_urls]
    assert len(our_urls) == len(set(our_urls)) == len(ours.datasets)
    assert set(our_urls) == {image.access_url for image in theirs.images}
    assert len(ours.datasets) == len(theirs.images)
    for dataset in ours.datasets:
        assert dataset.targets == [0]
        assert {o.ivoid for o in dataset.origins} <= {k[0] for k in ours.by_status("queried")}


async def test_what_the_local_registry_makes_of_m51(client: VOClient) -> None:
    """Pinned: at M51 the TAP service's ObsCore table serves the SDSS-like SIA
    1.0 service (IsServedBy); the decoys at a closed port fail; the X-ray
    decoy's coverage is M31 only."""
    result = await _alone(client, "M51")
    assert result.by_status("queried") == sorted(
        [(MIRROR, "sia"), (SIAP2, "sia2"), (TAP, "obscore"), (UVOT, "sia")]
    )
    assert result.by_status("failed") == sorted([(GALEX, "sia2"), (PLATES, "sia")])
    assert result.by_status("elided") == [(SDSS, "sia")]
    assert result.service(SDSS).elided_by == (f"it is served by {TAP}",)
    assert result.by_status("skipped") == [(XRT, "sia")]
    # One request per service asked; 3 to the registry (candidates, coverage, IsServedBy).
    assert result.registry_requests == 3
    assert all(s.requests == 1 for s in result.services if s.status in ("queried", "failed"))
    # sdss g, r (FITS and JPEG), uvot uvw1 (FITS and JPEG), dlimg J and Ks (DataLink).
    assert len(result.datasets) == 8
    fits = [d for d in result.datasets if d.access_url.endswith("sdss_m51_g.fits")]
    assert [d.services for d in fits] == [
        sorted([(MIRROR, "sia"), (SIAP2, "sia2"), (TAP, "obscore")])
    ]


async def test_batches_many_targets_in_one_request_per_service(client: VOClient) -> None:
    """Five targets: the ObsCore table gets them in one upload, SIA 2.0 in one
    request with five POS; each image goes to the target it shows."""
    names = ["M51", "M101", "M87", "M31", "NGC1068"]
    # The five together and each alone, side by side.
    result, *singles = await asyncio.gather(
        client.discover([TARGETS[n] for n in names], size=RADIUS),
        *(_alone(client, n) for n in names),
    )
    tap = result.service(TAP, "obscore")
    site = result.service(SIAP2, "sia2")
    assert (tap.mode, tap.requests, tap.queried) == ("upload", 1, 5)
    assert (site.mode, site.requests, site.queried) == ("multi-pos", 1, 5)
    for dataset in result.datasets:
        (target,) = dataset.targets
        assert names[target].lower() in dataset.access_url.lower()
    assert {u for r in singles for d in r.datasets for u in d.access_urls} == {
        u for d in result.datasets for u in d.access_urls
    }


async def test_unit_target_values_are_checked() -> None:
    with pytest.raises(ValueError, match="radius"):
        Target(0, 10.0, 10.0, 0.0)


@pytest.fixture
async def unhurried(dachs: Dachs) -> AsyncIterator[VOClient]:
    """A client for DaCHS without a rate limit: downloads of local files need no
    politeness (what they fetch and ask is what is checked)."""
    async with VOClient(dachs.config(host=HostPolicy(rate=math.inf))) as opened:
        yield opened


async def test_downloads_what_it_found_once(unhurried: VOClient, tmp_path: Path) -> None:
    """Every dataset at M51 into M51's folder: the DataLink documents resolved to
    their FITS files; run again, no file is fetched."""
    result = await unhurried.discover(
        [(*TARGETS["M51"], "M51")], size=RADIUS, options=DiscoveryOptions(concurrency=4)
    )
    fetched = await download(unhurried, result, tmp_path)
    paths = [p for _, p in fetched]
    assert all(isinstance(p, Path) for p in paths), paths
    names = sorted(p.name for p in paths if isinstance(p, Path))
    assert names == sorted(
        [f"sdss_m51_{b}.{x}" for b in "gr" for x in ("fits", "jpg")]
        + ["uvot_m51_uvw1.fits", "uvot_m51_uvw1.jpg", "dlimg_m51_J.fits", "dlimg_m51_Ks.fits"]
    )
    assert {p.parent.name for p in paths if isinstance(p, Path)} == {"M51"}
    for path in paths:
        assert isinstance(path, Path)
        start = path.read_bytes()[:6]
        assert start == b"SIMPLE" if path.suffix == ".fits" else start[:2] == b"\xff\xd8"
    before = sum(s.requests for s in unhurried.stats.values())
    again = await download(unhurried, result, tmp_path)
    assert [p for _, p in again] == paths
    # Run again: no file is fetched; only the two DataLink documents are read
    # again (they name the file).
    links = [d for d, _ in fetched if "datalink" in (d.format or "")]
    assert len(links) == 2
    assert sum(s.requests for s in unhurried.stats.values()) - before == len(links)


async def test_journaled_downloads_run_again_ask_nothing(
    unhurried: VOClient, tmp_path: Path
) -> None:
    """With the discovery's journal, a second download of M51's datasets sends no
    request at all: not even the DataLink documents are read again; the
    manifest lists each dataset with its origins."""
    journal = tmp_path / "discovery.sqlite"
    result = await unhurried.discover([(*TARGETS["M51"], "M51")], size=RADIUS, journal=journal)
    files = await DiscoveryJournal(journal).open()
    try:
        fetched = await download(unhurried, result, tmp_path, journal=files)
        assert all(isinstance(p, Path) for _, p in fetched), fetched
        before = sum(s.requests for s in unhurried.stats.values())
        again = await download(unhurried, result, tmp_path, journal=files)
        assert files.files_kept == len(fetched) == 8
    finally:
        await files.close()
    assert [p for _, p in again] == [p for _, p in fetched]
    assert sum(s.requests for s in unhurried.stats.values()) == before
    manifest, _ = await asyncio.to_thread(write_manifest, result, tmp_path, again, kept=8)
    table = parse_single_table(str(manifest)).to_table()
    assert sorted(table["state"]) == ["done"] * 8
    fits = next(r for r in table if str(r["access_url"]).endswith("sdss_m51_g.fits"))
    assert fits["targets"] == "M51"
    origins = sorted([(MIRROR, "sia"), (SIAP2, "sia2"), (TAP, "obscore")])
    assert fits["services"] == " ".join(f"{ivoid}#{kind}" for ivoid, kind in origins)
