"""Registry searches on a real RegTAP service: voharvest and pyvo must agree.

DaCHS runs the ADQL both clients write against the rr tables of
tests/integration/dachs/rr. For each set of constraints, the two clients must
return the same resources with the same interfaces (standard id and access
URL); where the answer is obvious from the records, it is pinned too, so the
two can't agree on being wrong (both finding nothing, say).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from astropy import units as u
from astropy.coordinates import SkyCoord
from astropy.time import Time
from pyvo import registry as pyvo_registry
from pyvo.dal import TAPService as PyvoTAP
from pyvo.registry import regtap as pyvo_regtap
from pyvo.registry import rtcons

from tests.integration.conftest import DACHS_FEATURES, Dachs
from tests.integration.dachs.make_fits import TARGETS
from voharvest import RegistryFeatures, UnsupportedConstraintError
from voharvest.client import VOClient
from voharvest.protocol.regtap import WAVEBANDS, Spatial

SDSS = "ivo://voharvest.test/sdss/q/i"
MIRROR = "ivo://voharvest.test/sdss/mirror"
UVOT = "ivo://voharvest.test/uvot/q/i"
UVOT_DATA = "ivo://voharvest.test/uvot/data"
SIAP2 = "ivo://voharvest.test/__system__/siap2/sitewide"
TAP = "ivo://voharvest.test/tap"
ORG = "ivo://voharvest.test/org"
SPECTRA = "ivo://voharvest.test/decoy/sdss-spectra"
CONE = "ivo://voharvest.test/decoy/sdss-cone"
XRT = "ivo://voharvest.test/decoy/xrt"
PLATES = "ivo://voharvest.test/decoy/plates"
GALEX = "ivo://voharvest.test/decoy/galex"

M51 = TARGETS["M51"]
M31 = TARGETS["M31"]


@dataclasses.dataclass(frozen=True)
class Case:
    """One search: our constraints, pyvo's, and (where obvious) the answer."""

    ours: dict[str, Any]
    # pyvo's constraints, made when needed (pyvo's Waveband wants a vocabulary
    # that the pyvo_on_dachs fixture provides); None: pyvo gets ``ours``.
    theirs: Callable[[], tuple[Any, ...]] | None = None
    expected: frozenset[str] | None = None
    coverage: bool = False  # needs the RegTAP 1.2 coverage tables (and MOC)

    def pyvo_args(self) -> tuple[tuple[Any, ...], dict[str, Any]]:
        if self.theirs is not None:
            return self.theirs(), {}
        return (), dict(self.ours)


def ids(*ivoids: str) -> frozenset[str]:
    return frozenset(ivoids)


CASES = {
    # The NAVO notebook's two searches.
    "notebook-uv-swift": Case(
        {"servicetype": "sia", "waveband": "uv", "keywords": ["swift"]}, expected=ids(UVOT)
    ),
    # The mirror matches "sloan" through a subject only.
    "notebook-optical-sloan": Case(
        {"servicetype": "sia", "waveband": "optical", "keywords": ["sloan"]},
        expected=ids(SDSS, MIRROR),
    ),
    "sia2-swift": Case({"servicetype": "sia2", "keywords": ["swift"]}, expected=ids(SIAP2)),
    "two-servicetypes": Case(
        {"servicetype": ["sia", "sia2"], "keywords": ["swift"]},
        theirs=lambda: (rtcons.Servicetype("sia", "sia2"), rtcons.Freetext("swift")),
        expected=ids(UVOT, XRT, SIAP2),
    ),
    "includeaux": Case(
        {"servicetype": "sia", "keywords": ["swift"], "includeaux": True},
        expected=ids(UVOT, UVOT_DATA, XRT),
    ),
    "servicetype-tap": Case({"servicetype": "tap"}, expected=ids(TAP)),
    "two-keywords": Case({"keywords": ["sloan", "spectra"]}, expected=ids(SPECTRA)),
    "keyword-with-quote": Case({"keywords": ["o'brien"]}, expected=ids()),
    "waveband": Case({"waveband": "x-ray"}, expected=ids(XRT)),
    "two-wavebands": Case(
        {"waveband": ["x-ray", "UV"]},
        theirs=lambda: (rtcons.Waveband("x-ray", "uv"),),
        expected=ids(UVOT, UVOT_DATA, SIAP2, TAP, XRT, GALEX),
    ),
    "author-with-quote": Case({"author": "O'Brien%"}, expected=ids(XRT, PLATES)),
    "author-non-ascii": Case({"author": "Müller%"}, expected=ids(UVOT, GALEX)),
    "ivoid-without-capabilities": Case({"ivoid": ORG}, expected=ids(ORG)),
    "two-ivoids": Case(
        {"ivoid": [SDSS, TAP.upper()]},
        theirs=lambda: (rtcons.Ivoid(SDSS, TAP.upper()),),
        expected=ids(SDSS, TAP),
    ),
    "datamodel-obscore": Case({"datamodel": "obscore"}, expected=ids(TAP)),
    "datamodel-regtap": Case({"datamodel": "regtap"}, expected=ids(TAP)),
    "tap-with-obscore": Case({"servicetype": "tap", "datamodel": "obscore"}, expected=ids(TAP)),
    "ucd": Case({"ucd": "phot.mag%"}, expected=ids(CONE)),
    "two-ucds": Case(
        {"ucd": ["pos.eq.ra%", "meta.id;src"]},
        theirs=lambda: (rtcons.UCD("pos.eq.ra%", "meta.id;src"),),
        expected=ids(TAP, UVOT_DATA, CONE),
    ),
    "spatial-point": Case(
        {"spatial": M51},
        theirs=lambda: (rtcons.Spatial(M51),),
        expected=ids(SDSS, MIRROR, UVOT, SIAP2, TAP, PLATES, SPECTRA, GALEX),
        coverage=True,
    ),
    "spatial-skycoord-circle": Case(
        {"spatial": (SkyCoord(*M31, unit="deg"), 0.3 * u.deg)},
        theirs=lambda: (rtcons.Spatial((SkyCoord(*M31, unit="deg"), 0.3 * u.deg)),),
        coverage=True,
    ),
    "spatial-moc-overlaps": Case(
        {"spatial": Spatial("6/11026-11027", intersect="overlaps")},
        theirs=lambda: (rtcons.Spatial("6/11026-11027", intersect="overlaps"),),
        coverage=True,
    ),
    "spatial-enclosed": Case(
        {"spatial": Spatial((200.0, 35.0, 40.0), intersect="enclosed")},
        theirs=lambda: (rtcons.Spatial((200.0, 35.0, 40.0), intersect="enclosed"),),
        expected=ids(SDSS, MIRROR, SPECTRA),
        coverage=True,
    ),
    "spectral-point": Case(
        {"spectral": 500 * u.nm},
        theirs=lambda: (rtcons.Spectral(500 * u.nm),),
        expected=ids(SDSS, SIAP2, SPECTRA, PLATES),
        coverage=True,
    ),
    # pyvo takes the interval's ends as given and finds nothing when the first
    # is the higher energy: it is given the energies in ascending order.
    "spectral-interval": Case(
        {"spectral": (200 * u.nm, 250 * u.nm)},
        theirs=lambda: (rtcons.Spectral((250 * u.nm, 200 * u.nm)),),
        expected=ids(UVOT, SIAP2, GALEX),
        coverage=True,
    ),
    "temporal-mjd": Case(
        {"temporal": 53076.0},
        theirs=lambda: (rtcons.Temporal(53076.0),),
        expected=ids(SDSS, UVOT, SIAP2, GALEX),
        coverage=True,
    ),
    "temporal-interval": Case(
        {"temporal": (Time("2009-01-01", scale="utc"), Time("2010-01-01", scale="utc"))},
        theirs=lambda: (
            rtcons.Temporal((Time("2009-01-01", scale="utc"), Time("2010-01-01", scale="utc"))),
        ),
        expected=ids(XRT, GALEX),
        coverage=True,
    ),
    "everything-at-once": Case(
        {
            "servicetype": "sia",
            "waveband": "optical",
            "keywords": ["sloan"],
            "author": "Harvester%",
            "spatial": M51,
            "spectral": 600 * u.nm,
            "temporal": 53075.5,
        },
        theirs=lambda: (
            rtcons.Servicetype("sia"),
            rtcons.Waveband("optical"),
            rtcons.Freetext("sloan"),
            rtcons.Author("Harvester%"),
            rtcons.Spatial(M51),
            rtcons.Spectral(600 * u.nm),
            rtcons.Temporal(53075.5),
        ),
        expected=ids(SDSS),
        coverage=True,
    ),
}

BASIC = [name for name, case in CASES.items() if not case.coverage]


@pytest.fixture(scope="module")
def pyvo_on_dachs(dachs_server: Dachs) -> Iterator[None]:
    """pyvo's registry functions pointed at DaCHS (for the module: pyvo caches
    the service and its capabilities).

    pyvo checks wavebands against the IVOA messenger vocabulary, which it
    downloads from www.ivoa.net; offline, it gets our copy of the terms.
    """
    previous = pyvo_regtap.REGISTRY_BASEURL
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(rtcons.Waveband, "_legal_terms", set(WAVEBANDS))
        pyvo_registry.choose_RegTAP_service(dachs_server.tap)
        try:
            yield
        finally:
            pyvo_registry.choose_RegTAP_service(previous)


def our_view(resources: list[Any]) -> dict[str, list[tuple[str, str]]]:
    """ivoid -> sorted (standard id, access URL) of every interface with a URL."""
    return {
        r.ivoid: sorted(
            (pyvo_regtap.regularize_SIA2_id(i.standard_id), i.access_url)
            for i in r.interfaces
            if i.access_url
        )
        for r in resources
    }


def pyvo_view(results: Any) -> dict[str, list[tuple[str, str]]]:
    return {
        r.ivoid: sorted(
            (std, url) for std, url in zip(r["standard_ids"], r["access_urls"], strict=True) if url
        )
        for r in results
    }


def pyvo_search(case: Case) -> Any:
    args, keywords = case.pyvo_args()
    return pyvo_registry.search(*args, **keywords)


@pytest.fixture(scope="module")
def pyvo_answers(pyvo_on_dachs: None) -> Callable[[str], Any]:
    """pyvo's answer to a case, asked of DaCHS once for the module: both tests below
    compare with it (the same query to the same server, read only)."""
    answers: dict[str, Any] = {}

    def answer(name: str) -> Any:
        if name not in answers:
            answers[name] = pyvo_search(CASES[name])
        return answers[name]

    return answer


@pytest.mark.parametrize("name", list(CASES))
async def test_same_resources_and_interfaces_as_pyvo(
    name: str, client: VOClient, pyvo_answers: Callable[[str], Any]
) -> None:
    case = CASES[name]
    ours = await client.regsearch(**case.ours)
    theirs = pyvo_answers(name)

    assert our_view(ours) == pyvo_view(theirs)
    if case.expected is not None:
        assert set(our_view(ours)) == case.expected
    else:
        assert ours, "a case without a pinned answer must at least find something"
    # Resource metadata read the same way by both clients.
    by_ivoid = {r.ivoid: r for r in theirs}
    for resource in ours:
        other = by_ivoid[resource.ivoid]
        assert resource.title == other.res_title
        assert resource.short_name == other.short_name
        assert resource.res_type == other.res_type
        assert resource.description == other.res_description
        creators = tuple(c.strip() for c in (other["creator_seq"] or "").split(";") if c.strip())
        assert resource.creators == creators
        assert resource.wavebands == tuple(band for band in other.waveband if band)


@pytest.mark.parametrize("name", BASIC)
async def test_plain_regtap_queries_find_the_same(
    name: str, dachs: Dachs, pyvo_answers: Callable[[str], Any]
) -> None:
    """Without ADQL 2.1 (no UNION, no ILIKE: ivo_nocasematch), the same answer."""
    case = CASES[name]
    async with VOClient(dachs.config(RegistryFeatures.minimal())) as minimal:
        ours = await minimal.regsearch(**case.ours)
    assert our_view(ours) == pyvo_view(pyvo_answers(name))


async def test_dachs_runs_the_features_we_configure(dachs: Dachs) -> None:
    """What DaCHS declares in its TAPRegExt capabilities is what DACHS_FEATURES says."""
    service = PyvoTAP(dachs.tap)
    adql = service.get_tap_capability().get_adql()
    declared = RegistryFeatures(
        union=adql.get_feature("ivo://ivoa.net/std/TAPRegExt#features-adql-sets", "UNION")
        is not None,
        ilike=adql.get_feature("ivo://ivoa.net/std/TAPRegExt#features-adql-string", "ILIKE")
        is not None,
        moc=adql.get_feature("ivo://org.gavo.dc/std/exts#extra-adql-keywords", "MOC") is not None,
        stc=all(
            name in service.tables
            for name in ("rr.stc_spatial", "rr.stc_spectral", "rr.stc_temporal")
        ),
    )
    assert declared == DACHS_FEATURES
    functions = {
        feature.form.split("(")[0]
        for feature in adql.get_feature_list("ivo://ivoa.net/std/TAPRegExt#features-udf")
    }
    assert {"ivo_hasword", "ivo_hashlist_has", "ivo_nocasematch", "ivo_string_agg"} <= functions


async def test_coverage_constraints_are_refused_without_sending_anything(dachs: Dachs) -> None:
    async with VOClient(dachs.config(RegistryFeatures.minimal())) as minimal:
        for constraint in ({"spatial": M51}, {"spectral": 500 * u.nm}, {"temporal": 53076.0}):
            with pytest.raises(UnsupportedConstraintError):
                await minimal.regsearch(**constraint)
        assert sum(one.requests for one in minimal.stats.values()) == 0


async def test_maxrec_caps_the_resources(client: VOClient) -> None:
    everything = await client.regsearch(keywords=["galaxies"])
    capped = await client.regsearch(keywords=["galaxies"], maxrec=2)
    assert len(everything) > 2
    assert [r.ivoid for r in capped] == sorted(r.ivoid for r in everything)[:2]


async def test_resources_lead_to_the_services_of_this_server(
    client: VOClient, dachs: Dachs
) -> None:
    (uvot,) = await client.regsearch(servicetype="sia", waveband="uv", keywords=["swift"])
    assert uvot.title == "VOH Swift UVOT-like Ultraviolet Images"
    assert uvot.creators == ("Testbed, D.", "Müller, J.")
    assert uvot.wavebands == ("uv",)
    assert uvot.service_kinds == ("sia",)
    assert uvot.service("sia").access_url == dachs.sia1("uvot")

    (site,) = await client.regsearch(servicetype="sia2", keywords=["swift"])
    assert site.service("sia2").access_url == dachs.sia2

    (tap,) = await client.regsearch(datamodel="obscore")
    # Without a servicetype every interface comes back; the VOSI ones are never chosen.
    assert len(tap.interfaces) == 4
    assert tap.service("tap").access_url == f"{dachs.server_url}/tap"

    (org,) = await client.regsearch(ivoid=ORG)
    assert org.interfaces == () and org.service_kinds == ()
