"""FarmVO: sites answer within their footprints, the registry publishes consistent coverage,
relationships and ObsCore tables, uploads and multi-POS work or are refused as configured."""

from __future__ import annotations

import asyncio
import io
import warnings

import aiohttp
import numpy as np
import pytest
from astropy.io.votable import parse_single_table
from astropy.table import Table

from voharvest import ParameterError
from voharvest.testing import (
    COVERAGE_MARGIN,
    Cone,
    FarmService,
    FarmVO,
    Footprint,
    HostConfig,
    Site,
    VOFarm,
    Zone,
    discovery_vo,
    search_tiles,
)
from voharvest.testing._footprints import moc_of_circle, parse_moc

RADIUS = 0.05
# Inside: the Stripe's ObsCore and its SIA 2.0 (site 1), nothing else.
STRIPE = (10.0, 0.0)
# Inside the Equatorial stripe (site 5: SIA 2.0 and the SIA 1.0 it serves).
EQUATORIAL = (90.0, -3.5)
# Inside no footprint.
NOWHERE = (180.0, -70.0)


@pytest.fixture(scope="module")
def vo() -> FarmVO:
    return discovery_vo(0)


@pytest.fixture
async def farm(vo: FarmVO):
    async with VOFarm(hosts=vo.hosts, vo=vo, config=HostConfig(formats=("image/fits",))) as f:
        yield f


def _table(body: bytes) -> Table:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return parse_single_table(io.BytesIO(body)).to_table()


async def _get(url: str, params: list[tuple[str, str]] | dict[str, str]) -> tuple[int, bytes]:
    async with aiohttp.ClientSession() as session, session.get(url, params=params) as response:
        return response.status, await response.read()


async def _tap(url: str, query: str, uploads: dict[str, bytes] | None = None) -> tuple[int, bytes]:
    form = aiohttp.FormData()
    form.add_field("REQUEST", "doQuery")
    form.add_field("LANG", "ADQL")
    form.add_field("QUERY", query)
    if uploads:
        form.add_field("UPLOAD", ";".join(f"{name},param:{name}" for name in uploads))
        for name, body in uploads.items():
            form.add_field(
                name, body, filename=f"{name}.xml", content_type="application/x-votable+xml"
            )
    async with (
        aiohttp.ClientSession() as session,
        session.post(url + "/sync", data=form) as response,
    ):
        return response.status, await response.read()


def _votable(table: Table) -> bytes:
    out = io.BytesIO()
    table.write(out, format="votable")
    return out.getvalue()


# --- the lineup and its footprints -----------------------------------------------------------


def test_the_discovery_lineup(vo: FarmVO) -> None:
    kinds = [kind for service in vo.services for kind in service.kinds]
    assert len(vo.services) == 20 and vo.hosts == 18
    assert kinds.count("obscore") == 4 and kinds.count("sia2") == 8 and kinds.count("sia1") == 9
    assert [h for h, s in vo.sites.items() if not s.uploads] == [3]
    assert [h for h, s in vo.sites.items() if not s.multi_pos] == [7]
    assert len(vo.relationships()) == 3
    for ivoid, related in vo.relationships():
        served = next(s for s in vo.services if s.ivoid == ivoid)
        serving = next(s for s in vo.services if s.ivoid == related)
        assert served.host == serving.host  # the same site, the same collection
    # Mostly disjoint: no two sites share a tile centre along a dense sample.
    ras, decs = np.meshgrid(np.arange(0, 360, 0.5), np.arange(-60, 60, 0.5))
    inside = np.array([s.footprint.contains(ras, decs) for s in vo.sites.values()])
    assert inside.any(axis=0).sum() > 0
    assert (inside.sum(axis=0) > 1).sum() < 0.02 * inside.any(axis=0).sum()
    assert discovery_vo(0).services == vo.services  # seeded: the same lineup every time


def test_bad_lineups_are_refused() -> None:
    site = Site(Footprint([Cone(10.0, 10.0, 1.0)]))
    with pytest.raises(ParameterError):
        FarmVO({1: site}, (FarmService("a", ("sia2",), 2, "no such site"),))
    with pytest.raises(ParameterError):
        FarmVO(
            {1: site}, (FarmService("a", ("sia2",), 1, "a"), FarmService("b", ("sia2",), 1, "b"))
        )
    with pytest.raises(ParameterError):
        FarmVO({1: site}, (FarmService("a", ("sia2",), 1, "a", served_by="zz"),))
    with pytest.raises(ParameterError):
        Zone(10.0, 20.0, 5.0, 5.0)
    with pytest.raises(ParameterError):
        Footprint([])
    with pytest.raises(ParameterError, match="needs 18 hosts"):
        VOFarm(hosts=5, vo=discovery_vo(0))


def test_footprints_and_their_mocs_agree(vo: FarmVO) -> None:
    rng = np.random.default_rng(1)
    for index, site in vo.sites.items():
        moc = parse_moc(site.footprint.moc_text)
        # Every tile a search inside or near the footprint finds is in the coverage...
        for shape in site.footprint.shapes:
            if isinstance(shape, Cone):
                ra, dec = shape.ra, shape.dec
            else:
                ra = (shape.ra_min + ((shape.ra_max - shape.ra_min) % 360.0) / 2) % 360.0
                dec = (shape.dec_min + shape.dec_max) / 2
            tiles = site.footprint.tiles(ra, dec, RADIUS, 4)
            assert tiles, (index, shape)
            for tile in tiles:
                assert moc.contains_lonlat(tile.ra * _deg(), tile.dec * _deg())[0], (index, tile)
        # ... and so is every position whose search finds anything; the others find nothing.
        # (near the footprint: a random shape's neighbourhood, and anywhere)
        ras = np.concatenate([rng.uniform(0, 360, 150), _near(site.footprint, rng, 250)[0]])
        decs = np.concatenate(
            [np.degrees(np.arcsin(rng.uniform(-1, 1, 150))), _near(site.footprint, rng, 250)[1]]
        )
        covered = moc.contains_lonlat(ras * _deg(), decs * _deg())
        for ra, dec, inside in zip(ras, decs, covered, strict=True):
            found = site.footprint.tiles(float(ra), float(dec), RADIUS, 4)
            assert inside or not found, (index, ra, dec)
        # The coverage is the footprint grown by at most a few cells, not the sky.
        assert moc.sky_fraction * 41253 < 3 * site.footprint.area() + 2000


def _near(footprint: Footprint, rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` positions within a degree of the footprint's shapes' centres or edges."""
    ras, decs = [], []
    for i in range(n):
        shape = footprint.shapes[i % len(footprint.shapes)]
        if isinstance(shape, Cone):
            ra, dec = shape.ra, shape.dec
        else:
            ra, dec = shape.ra_min, shape.dec_max
        ras.append((ra + rng.uniform(-1.5, 1.5)) % 360.0)
        decs.append(float(np.clip(dec + rng.uniform(-1.5, 1.5), -90, 90)))
    return np.array(ras), np.array(decs)


def _deg():
    import astropy.units as u

    return u.deg


# --- the registry ------------------------------------------------------------------------------


async def test_pyvo_discover_runs_against_the_vo(farm: VOFarm) -> None:
    from pyvo import registry

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pyvo.discover is a prototype, and says so
        from pyvo.discover import images_globally

    registry.choose_RegTAP_service(farm.registry_url)

    def run(ra: float, dec: float) -> tuple[set[str], list[str]]:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            found, log = images_globally(space=(ra, dec, RADIUS))
        return {f.access_url for f in found}, log

    try:
        urls, log = await asyncio.to_thread(run, *STRIPE)
    finally:
        registry.choose_RegTAP_service("http://reg.g-vo.org/tap")
    site = farm.vo.sites[1]
    expected = {farm.hosts[1].image_url(t) for t in site.footprint.tiles(*STRIPE, RADIUS, 4)}
    assert urls == expected and len(urls) == 4
    assert any("stripe82/sia2 because it is served by" in line for line in log)
    assert any(line.startswith("Obscore VOFarm Stripe ObsCore: 4") for line in log)
    data = {i: c.searches for i, c in farm.counters.items() if i and c.searches}
    assert data == {1: 1}  # one ObsCore query; the SIA 2.0 of the same site was elided


async def test_registry_coverage_relationships_and_tables(farm: VOFarm) -> None:
    url = farm.registry_url
    moc_filter = (
        "ivoid IN (SELECT DISTINCT ivoid FROM rr.stc_spatial WHERE "
        "1 = CONTAINS(MOC(6, CIRCLE({}, {}, {})), coverage))"
    )
    pyvo_columns = (
        "SELECT ivoid, res_title, ivo_string_agg(COALESCE(access_url, ''), ':::py VO sep:::') "
        "AS access_urls, ivo_string_agg(COALESCE(standard_id, ''), ':::py VO sep:::') "
        "AS standard_ids FROM rr.resource NATURAL LEFT OUTER JOIN rr.capability "
        "NATURAL LEFT OUTER JOIN rr.interface WHERE "
    )
    status, body = await _tap(
        url,
        pyvo_columns
        + "(standard_id like 'ivo://ivoa.net/std/sia#query-2.%') AND "
        + moc_filter.format(*EQUATORIAL, RADIUS),
    )
    rows = _table(body)
    assert status == 200 and list(rows["ivoid"]) == ["ivo://vofarm.test/equatorial/sia2"]
    assert list(rows["access_urls"]) == [farm.hosts[5].sia2_url]
    status, body = await _tap(
        url,
        pyvo_columns
        + "(standard_id IN ('ivo://ivoa.net/std/sia')) AND "
        + moc_filter.format(*NOWHERE, RADIUS),
    )
    assert status == 200 and len(_table(body)) == 0
    # ObsCore tables, one row per interface, as a planner asks for them.
    status, body = await _tap(
        url,
        "SELECT ivoid, access_url, standard_id, table_name FROM rr.resource "
        "NATURAL JOIN rr.res_table NATURAL JOIN rr.capability NATURAL JOIN rr.interface "
        "WHERE rr.res_table.table_utype LIKE 'ivo://ivoa.net/std/obscore#table-1.%' "
        "AND standard_id LIKE 'ivo://ivoa.net/std/tap%'",
    )
    rows = _table(body)
    assert sorted(rows["ivoid"]) == sorted(
        s.ivoid for s in farm.vo.services if "obscore" in s.kinds
    )
    assert set(rows["table_name"]) == {"ivoa.obscore"}
    assert {str(u) for u in rows["access_url"]} == {farm.hosts[h].tap_url for h in (1, 2, 3, 4)}
    # Old-style data-model declarations: none (pyvo's fallback for them is broken).
    status, body = await _tap(
        url,
        pyvo_columns + "(ivoid IN (SELECT DISTINCT ivoid FROM rr.res_detail WHERE "
        "detail_xpath = '/capability/dataModel/@ivo-id'))",
    )
    assert status == 200 and len(_table(body)) == 0
    # Coverage, once per candidate: ASCII MOCs equal to the footprints' own.
    wanted = ["ivo://vofarm.test/stripe82/obscore", "ivo://vofarm.test/pointed1/sia1"]
    status, body = await _tap(
        url,
        "SELECT ivoid, coverage FROM rr.stc_spatial WHERE ivoid IN ("
        + ", ".join(f"'{i}'" for i in wanted)
        + ")",
    )
    assert status == 200 and b'xtype="moc"' in body
    rows = _table(body)
    assert list(rows["ivoid"]) == wanted
    for ivoid, coverage in zip(rows["ivoid"], rows["coverage"], strict=True):
        site = farm.vo.sites[next(s.host for s in farm.vo.services if s.ivoid == ivoid)]
        assert parse_moc(str(coverage)) == site.footprint.moc()
    # Relationships: by literal list, and by pyvo's upload join.
    status, body = await _tap(
        url,
        "SELECT ivoid, related_id FROM rr.relationship WHERE relationship_type='isservedby' "
        "AND ivoid IN ('ivo://vofarm.test/stripe82/sia2', 'ivo://vofarm.test/clusters/sia2')",
    )
    rows = _table(body)
    assert [tuple(map(str, r)) for r in rows] == [
        ("ivo://vofarm.test/stripe82/sia2", "ivo://vofarm.test/stripe82/obscore")
    ]
    ids = Table({"id": ["ivo://vofarm.test/deepfields/sia2", "ivo://vofarm.test/deepfields/obscore",
                        "ivo://vofarm.test/equatorial/sia1"]})  # fmt: skip
    status, body = await _tap(
        url,
        "SELECT ivoid, related_id FROM rr.relationship "
        "JOIN tap_upload.ids AS leftids ON (ivoid=leftids.id) "
        "JOIN tap_upload.ids AS rightids ON (related_id=rightids.id) "
        "WHERE relationship_type='isservedby'",
        {"ids": _votable(ids)},
    )
    rows = _table(body)
    assert status == 200
    # equatorial/sia1 is served by equatorial/sia2, which was not uploaded: not listed
    assert [tuple(map(str, r)) for r in rows] == [
        ("ivo://vofarm.test/deepfields/sia2", "ivo://vofarm.test/deepfields/obscore")
    ]


async def test_one_candidate_query_or_ing_sia_and_obscore_tables(farm: VOFarm) -> None:
    """A planner's single query: SIA 1.0, SIA 2.0, or TAP to an ObsCore table, in one."""
    status, body = await _tap(
        farm.registry_url,
        "SELECT ivoid, res_type, res_title, short_name, ivo_string_agg(standard_id || '|vh|' "
        "|| access_url, '|vh-intf|') AS interfaces FROM rr.resource NATURAL JOIN rr.capability "
        "NATURAL JOIN rr.interface WHERE (standard_id IN ('ivo://ivoa.net/std/sia') "
        "OR standard_id LIKE 'ivo://ivoa.net/std/sia#query-2.%' "
        "OR (standard_id IN ('ivo://ivoa.net/std/tap', 'ivo://ivoa.net/std/tap#aux') AND "
        "(ivoid IN (SELECT ivoid FROM rr.res_table WHERE table_utype LIKE "
        "'ivo://ivoa.net/std/obscore#table-1.%') OR ivoid IN (SELECT ivoid FROM rr.res_detail "
        "WHERE detail_xpath = '/capability/dataModel/@ivo-id')))) "
        "GROUP BY ivoid, res_type, res_title, short_name ORDER BY ivoid",
    )
    assert status == 200
    rows = _table(body)
    assert sorted(rows["ivoid"]) == sorted(s.ivoid for s in farm.vo.services)
    legacy = next(str(r["interfaces"]) for r in rows if r["ivoid"].endswith("legacy/sia"))
    assert farm.hosts[10].sia1_url in legacy and farm.hosts[10].sia2_url in legacy
    stripe = next(str(r["interfaces"]) for r in rows if r["ivoid"].endswith("stripe82/obscore"))
    assert "ivo://ivoa.net/std/tap#aux" in stripe and farm.hosts[1].tap_url in stripe


def test_moc_constraints_are_evaluated(vo: FarmVO) -> None:
    from voharvest.testing._vo_registry import _coverage_tests

    stripe = vo.sites[1].footprint.moc()
    inside = "1 = CONTAINS(MOC(6, CIRCLE(10.0, 0.0, 0.05)), coverage)"
    edge = "1 = CONTAINS(MOC(6, CIRCLE(10.0, 1.4, 0.05)), coverage)"
    touching = "1 = INTERSECTS(coverage, MOC(6, CIRCLE(10.0, 1.4, 0.05)))"
    assert all(test(stripe) for test in _coverage_tests(inside))
    # pyvo's "covers": the whole order-6 cell must be in the coverage, not only the circle.
    assert not any(test(stripe) for test in _coverage_tests(edge))
    assert all(test(stripe) for test in _coverage_tests(touching))
    assert moc_of_circle(10.0, 0.0, 0.05, 6).sky_fraction < stripe.sky_fraction


def test_moc_of_a_circle_as_pgsphere_makes_it() -> None:
    """The farm's MOC(order, CIRCLE) (cells whose centre is within the radius plus the
    largest cell radius) agrees with the client's own, made apart from it."""
    import math
    from types import SimpleNamespace

    from voharvest.protocol.coverage import Cones, max_cell_radius
    from voharvest.testing._footprints import _max_cell_radius, moc_of_disc

    for order in (5, 6, 7):
        assert _max_cell_radius(order) == pytest.approx(math.degrees(max_cell_radius(order)))
    rng = np.random.default_rng(3)
    targets = [
        SimpleNamespace(ra=float(ra), dec=float(dec), radius=float(r))
        for ra, dec, r in zip(
            rng.uniform(0, 360, 40),
            np.degrees(np.arcsin(rng.uniform(-1, 1, 40))),
            rng.uniform(0.001, 0.5, 40),
            strict=True,
        )
    ]
    cones = Cones(targets, 6, "inclusive")
    for index, target in enumerate(targets):
        ours = moc_of_disc(target.ra, target.dec, target.radius, 6)
        assert ours == cones.moc(index), target
        assert moc_of_circle(target.ra, target.dec, target.radius, 6).sky_fraction <= (
            ours.sky_fraction
        )


# --- ObsCore over TAP --------------------------------------------------------------------


def _expected(farm: VOFarm, host: int, ra: float, dec: float) -> list[str]:
    tiles = farm.vo.sites[host].footprint.tiles(ra, dec, RADIUS, 4)
    return [farm.hosts[host].image_url(t) for t in tiles]


async def test_obscore_single_position_and_upload_join(farm: VOFarm) -> None:
    tap = farm.hosts[1].tap_url
    ra, dec = STRIPE
    status, body = await _tap(
        tap,
        "select * from ivoa.obscore WHERE dataproduct_type='image' AND "
        f"(1=contains(point('ICRS', s_ra, s_dec), circle('ICRS', {ra}, {dec}, {RADIUS})) "
        f"or 1=intersects(circle({ra}, {dec}, {RADIUS}), s_region))",
    )
    assert status == 200
    assert list(_table(body)["access_url"]) == _expected(farm, 1, ra, dec)
    targets = Table(
        {"id": [7, 8, 9], "ra": [10.0, 30.0, NOWHERE[0]], "dec": [0.0, 1.0, NOWHERE[1]],
         "radius": [RADIUS] * 3}
    )  # fmt: skip
    query = (
        "SELECT t.id, o.* FROM ivoa.obscore AS o JOIN TAP_UPLOAD.targets AS t ON "
        "1=CONTAINS(POINT('ICRS', o.s_ra, o.s_dec), CIRCLE('ICRS', t.ra, t.dec, t.radius)) "
        "OR 1=INTERSECTS(CIRCLE('ICRS', t.ra, t.dec, t.radius), o.s_region)"
    )
    status, body = await _tap(tap, query, {"targets": _votable(targets)})
    assert status == 200
    rows = _table(body)
    assert rows.colnames[0] == "id" and "access_url" in rows.colnames
    for target, ra, dec in ((7, 10.0, 0.0), (8, 30.0, 1.0), (9, *NOWHERE)):
        mine = [str(u) for u, i in zip(rows["access_url"], rows["id"], strict=True) if i == target]
        assert mine == _expected(farm, 1, ra, dec), target
    assert len(rows) == 8  # four tiles each for the two targets inside, none outside
    # The upload's column under the name the SELECT gives it.
    status, body = await _tap(
        tap,
        query.replace("SELECT t.id, o.*", "SELECT t.id AS vh_target, o.*"),
        {"targets": _votable(targets)},
    )
    assert status == 200 and _table(body).colnames[0] == "vh_target"
    assert sorted(set(_table(body)["vh_target"])) == [7, 8]
    # A site that refuses uploads says so, and still answers one position at a time.
    status, body = await _tap(farm.hosts[3].tap_url, query, {"targets": _votable(targets)})
    assert status == 400 and b"QUERY_STATUS" in body and b"upload" in body
    status, body = await _tap(
        farm.hosts[3].tap_url,
        "select * from ivoa.obscore WHERE 1=contains(point('ICRS', s_ra, s_dec), "
        "circle('ICRS', 270.0, -25.0, 0.05))",
    )
    assert status == 200 and len(_table(body)) == 4
    # A host with no ObsCore table.
    status, _ = await _tap(
        farm.hosts[6].tap_url,
        "select * from ivoa.obscore WHERE 1=contains(point('ICRS', s_ra, s_dec), "
        "circle('ICRS', 1, 1, 0.1))",
    )
    assert status == 404


# --- SIA ---------------------------------------------------------------------------------


async def test_sia2_multi_pos_and_its_refusal(farm: VOFarm) -> None:
    positions = [(90.0, -3.5), (100.0, -4.0), NOWHERE]
    params = [("POS", f"CIRCLE {ra} {dec} {RADIUS}") for ra, dec in positions]
    status, body = await _get(farm.hosts[5].sia2_url, params)
    assert status == 200
    urls = list(_table(body)["access_url"])
    expected = [u for ra, dec in positions for u in _expected(farm, 5, ra, dec)]
    assert urls == list(dict.fromkeys(expected)) and len(urls) > 4
    # One POS at a time gives the same records, and nothing outside the footprint.
    status, body = await _get(farm.hosts[5].sia2_url, params[:1])
    assert list(_table(body)["access_url"]) == _expected(farm, 5, *positions[0])
    status, body = await _get(farm.hosts[5].sia2_url, params[2:])
    assert status == 200 and len(_table(body)) == 0
    # Site 7 refuses several POS in one request, with an error document.
    params7 = [("POS", f"CIRCLE {ra} 12.0 {RADIUS}") for ra in (100.0, 110.0)]
    status, body = await _get(farm.hosts[7].sia2_url, params7)
    assert status == 400 and b'value="ERROR"' in body
    status, body = await _get(farm.hosts[7].sia2_url, params7[:1])
    assert status == 200
    assert list(_table(body)["access_url"]) == _expected(farm, 7, 100.0, 12.0)


async def test_sia1_within_the_footprint(farm: VOFarm) -> None:
    site = farm.vo.sites[11]
    status, body = await _get(farm.hosts[11].sia1_url, {"POS": "207.5,52.5", "SIZE": "0.1"})
    assert status == 200
    expected = [farm.hosts[11].image_url(t) for t in site.footprint.tiles(207.5, 52.5, 0.05, 4)]
    assert list(_table(body)["access_url"]) == expected and expected
    status, body = await _get(farm.hosts[11].sia1_url, {"POS": "10,0", "SIZE": "0.1"})
    assert status == 200 and len(_table(body)) == 0
    # Host 1 offers no SIA 1.0 in this VO.
    status, _ = await _get(farm.hosts[1].sia1_url, {"POS": "10,0", "SIZE": "0.1"})
    assert status == 404


def test_tiles_are_the_skys_less_those_outside() -> None:
    footprint = Footprint([Zone(300.0, 60.0, -1.25, 1.25)])
    for ra, dec in ((10.0, 0.0), (10.0, 1.3), (359.9, -1.2), (100.0, 0.0)):
        sky = search_tiles(ra, dec, RADIUS, 4)
        assert footprint.tiles(ra, dec, RADIUS, 4) == [
            t for t in sky if footprint.contains([t.ra], [t.dec])[0]
        ]
    assert COVERAGE_MARGIN > 0.28
