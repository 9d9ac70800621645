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
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from astropy import units as u
from astropy.time import Time
from pyvo import registry as pyvo_registry
from pyvo.registry import regtap as pyvo_regtap
from pyvo.utils.prototype import PrototypeWarning

from tests.integration.conftest import Dachs
from tests.integration.dachs.make_fits import TARGETS
from voharvest import DiscoveryOptions
from voharvest._discovery import download
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


@pytest.fixture(scope="module")
def pyvo_discovery(dachs_server: Dachs) -> Iterator[Callable[..., PyvoRun]]:
    """pyvo.discover pointed at DaCHS's registry, patched as the module text says."""
    previous = pyvo_regtap.REGISTRY_BASEURL
    watched: list[PyvoRun] = []
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(pyvo_image.ImageDiscoverer, "_discover_obscore_services", _obscore_services)
        purge = pyvo_image.ImageDiscoverer._purge_redundant_services

        def watched_purge(self: Any) -> None:
            watched[-1].before = _keys(self)
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
                    watched[-1].asked[(rec.ivoid, _kind)] = "failed"
                    raise
                watched[-1].asked[(rec.ivoid, _kind)] = "queried"

            patch.setattr(pyvo_image.ImageDiscoverer, name, watched_query)
        pyvo_registry.choose_RegTAP_service(dachs_server.tap)

        def run(
            space: tuple[float, float, float] | None, *, query: bool = True, **more: Any
        ) -> PyvoRun:
            watched.append(PyvoRun())
            discoverer = pyvo_image.ImageDiscoverer(space=space, timeout=10, **more)
            discoverer.discover_services()
            watched[-1].after = _keys(discoverer)
            if query:
                discoverer.query_services()
                watched[-1].images = list(discoverer.results)
                watched[-1].log = list(discoverer.log_messages)
            return watched[-1]

        try:
            yield run
        finally:
            pyvo_registry.choose_RegTAP_service(previous)


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
#: pyvo's candidates without a position, per constraint (asked once).
EVERY_CANDIDATE: dict[str, set[Key]] = {}
CASES = [(name, "") for name in POSITIONS] + [
    ("M51", "620nm"),
    ("M101", "250nm"),
    ("M87", "620nm"),
    ("M51", "mjd53076"),
    ("COSMOS", "620nm"),
]


@pytest.mark.parametrize(("name", "constraint"), CASES)
async def test_same_datasets_and_services_as_pyvo(
    name: str, constraint: str, client: VOClient, pyvo_discovery: Callable[..., PyvoRun]
) -> None:
    ra, dec = POSITIONS[name]
    more = CONSTRAINTS[constraint]
    if constraint not in EVERY_CANDIDATE:
        everywhere = await asyncio.to_thread(pyvo_discovery, None, query=False, **more)
        EVERY_CANDIDATE[constraint] = everywhere.before
    every_candidate = EVERY_CANDIDATE[constraint]
    theirs = await asyncio.to_thread(pyvo_discovery, (ra, dec, RADIUS), **more)
    ours = await client.discover(
        (ra, dec), size=RADIUS, band=more.get("spectrum"), time=more.get("time")
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
    result = await client.discover(TARGETS["M51"], size=RADIUS)
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
    result = await client.discover([TARGETS[n] for n in names], size=RADIUS)
    tap = result.service(TAP, "obscore")
    site = result.service(SIAP2, "sia2")
    assert (tap.mode, tap.requests, tap.queried) == ("upload", 1, 5)
    assert (site.mode, site.requests, site.queried) == ("multi-pos", 1, 5)
    for dataset in result.datasets:
        (target,) = dataset.targets
        assert names[target].lower() in dataset.access_url.lower()
    singles = [await client.discover(TARGETS[n], size=RADIUS) for n in names]
    assert {u for r in singles for d in r.datasets for u in d.access_urls} == {
        u for d in result.datasets for u in d.access_urls
    }


async def test_unit_target_values_are_checked() -> None:
    with pytest.raises(ValueError, match="radius"):
        Target(0, 10.0, 10.0, 0.0)


async def test_downloads_what_it_found_once(client: VOClient, tmp_path: Path) -> None:
    """Every dataset at M51 into M51's folder: the DataLink documents resolved to
    their FITS files; run again, no file is fetched."""
    result = await client.discover(
        [(*TARGETS["M51"], "M51")], size=RADIUS, options=DiscoveryOptions(concurrency=4)
    )
    fetched = await download(client, result, tmp_path)
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
    before = sum(s.requests for s in client.stats.values())
    again = await download(client, result, tmp_path)
    assert [p for _, p in again] == paths
    # Run again: no file is fetched; only the two DataLink documents are read
    # again (they name the file).
    links = [d for d, _ in fetched if "datalink" in (d.format or "")]
    assert len(links) == 2
    assert sum(s.requests for s in client.stats.values()) - before == len(links)
