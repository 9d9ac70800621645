"""The discovery planner without I/O: queries, coverage, elision, batching, datasets."""

from __future__ import annotations

import email
import io
import math
import re
from types import SimpleNamespace
from typing import Any

import pytest
from astropy.io.votable import parse_single_table

from voharvest import ParameterError
from voharvest.protocol import coverage
from voharvest.protocol import discovery as d
from voharvest.protocol.regtap import Interface, Resource

M51 = (202.469575, 47.195258)
#: pgsphere's (DaCHS 2.7) answer to MOC(6, CIRCLE(M51, 0.05)): recorded.
PGSPHERE_M51_CELLS = {11026, 11027, 11032}
#: Order-6 coverage holding those cells (and the exact circle's 11026-11027).
AROUND_M51 = "6/11026-11027 11032"
ELSEWHERE = "6/100-110"


def target(i: int, ra: float, dec: float, radius: float = 0.05) -> d.Target:
    return d.Target(i, ra, dec, radius)


def candidate(ivoid: str, kind: str, url: str = "", res_type: str = "vs:catalogservice") -> Any:
    return d.Candidate(ivoid, kind, url or f"http://x/{ivoid[-1]}/{kind}", ivoid, res_type)


# --- registry queries ------------------------------------------------------------------


def test_the_candidate_query_asks_for_the_three_kinds_at_once() -> None:
    query = d.candidates_query()
    assert "standard_id IN ('ivo://ivoa.net/std/sia')" in query
    assert "standard_id LIKE 'ivo://ivoa.net/std/sia#query-2.%'" in query
    assert "standard_id IN ('ivo://ivoa.net/std/tap', 'ivo://ivoa.net/std/tap#aux')" in query
    assert "table_utype LIKE 'ivo://ivoa.net/std/obscore#table-1.%'" in query
    assert "detail_xpath = '/capability/dataModel/@ivo-id'" in query
    assert "stc_spatial" not in query  # the spatial test is local
    assert query.rstrip().endswith("ORDER BY ivoid")


def test_spectral_and_temporal_constraints_go_to_the_registry() -> None:
    from astropy import units as u

    query = d.candidates_query(spectral=500 * u.nm, temporal=(53000.0, 54000.0))
    assert "rr.stc_spectral WHERE" in query and "rr.stc_temporal WHERE" in query
    inclusive = d.candidates_query(spectral=500 * u.nm, inclusive=True)
    assert "OR ivoid NOT IN (SELECT ivoid FROM rr.stc_spectral))" in inclusive


def test_coverage_and_relationship_queries_are_chunked() -> None:
    ivoids = [f"ivo://x/{i:03d}" for i in range(5)]
    queries = d.coverage_queries(ivoids + ivoids[:2], chunk=2)
    assert len(queries) == 3
    assert queries[0] == (
        "SELECT ivoid, coverage FROM rr.stc_spatial WHERE ivoid IN ('ivo://x/000', 'ivo://x/001')"
    )
    (relations,) = d.served_by_queries(ivoids[:1])
    assert relations == (
        "SELECT ivoid, related_id FROM rr.relationship WHERE relationship_type = 'isservedby' "
        "AND ivoid IN ('ivo://x/000')"
    )


def test_candidates_from_resources_one_per_kind() -> None:
    resource = Resource(
        ivoid="IVO://X/Site",
        title="Site",
        res_type="vs:catalogresource",
        interfaces=(
            Interface("ivo://ivoa.net/std/tap#aux", "http://x/tap", role="std"),
            Interface("ivo://ivoa.net/std/sia#query-2.0", "http://x/sia2", role="std"),
            Interface("ivo://ivoa.net/std/sia", "http://x/sia?", role="std"),
            Interface("ivo://ivoa.net/std/vosi#capabilities", "http://x/cap"),
        ),
    )
    found = d.candidates_from_resources([resource])
    assert [(c.ivoid, c.kind, c.access_url) for c in found] == [
        ("ivo://x/site", "obscore", "http://x/tap"),
        ("ivo://x/site", "sia2", "http://x/sia2"),
        ("ivo://x/site", "sia", "http://x/sia?"),
    ]
    aux_only = Resource(
        ivoid="ivo://x/aux",
        interfaces=(Interface("ivo://ivoa.net/std/sia#aux", "http://x/a", role="std"),),
    )
    assert d.candidates_from_resources([aux_only]) == []


def test_registry_rows_are_read() -> None:
    rows = [
        {"ivoid": "IVO://A", "coverage": "6/1-3"},
        {"ivoid": "ivo://a", "coverage": "6/9"},
        {"ivoid": "ivo://b", "coverage": None},
    ]
    assert d.parse_coverages(rows) == {"ivo://a": "6/1-3 6/9"}
    assert d.parse_served_by([{"IVOID": "ivo://a", "related_id": "IVO://B"}]) == {
        "ivo://a": frozenset({"ivo://b"})
    }


# --- coverage ------------------------------------------------------------------------------


def test_the_largest_cell_radius_is_healpix_s() -> None:
    # healpy.max_pixrad(64, degrees=True)
    assert math.degrees(d.max_cell_radius(6)) == pytest.approx(0.9541480607387777, rel=1e-12)


def _cells(moc: Any) -> set[int]:
    return {int(c) for c in moc.flatten()}


def test_a_circle_becomes_the_moc_pgsphere_makes_of_it() -> None:
    cones = coverage.Cones([target(0, *M51)], 6, "inclusive")
    assert _cells(cones.moc(0)) == PGSPHERE_M51_CELLS
    exact = coverage.Cones([target(0, *M51)], 6, "exact")
    assert _cells(exact.moc(0)) == {11026, 11027}


def test_plan_skips_targets_outside_the_coverage() -> None:
    services = [candidate("ivo://x/a", "sia"), candidate("ivo://x/b", "sia2")]
    targets = [target(0, *M51), target(1, 150.0, 2.0)]
    planned = d.plan(targets, services, {"ivo://x/a": AROUND_M51, "ivo://x/b": ELSEWHERE}, {})
    assert planned.query == {("ivo://x/a", "sia"): (0,), ("ivo://x/b", "sia2"): ()}
    assert planned.skipped == {("ivo://x/a", "sia"): (1,), ("ivo://x/b", "sia2"): (0, 1)}
    assert planned.pairs == 1


def test_covers_needs_the_whole_circle_overlaps_one_cell() -> None:
    services = [candidate("ivo://x/a", "sia")]
    targets = [target(0, *M51)]
    only_two = {"ivo://x/a": "6/11026-11027"}
    assert d.plan(targets, services, only_two, {}).query[("ivo://x/a", "sia")] == ()
    exact = d.plan(targets, services, only_two, {}, cone="exact")
    assert exact.query[("ivo://x/a", "sia")] == (0,)
    overlaps = d.plan(targets, services, {"ivo://x/a": "6/11032"}, {}, intersect="overlaps")
    assert overlaps.query[("ivo://x/a", "sia")] == (0,)


def test_inclusive_keeps_services_without_coverage() -> None:
    services = [candidate("ivo://x/a", "sia")]
    targets = [target(0, *M51)]
    assert d.plan(targets, services, {}, {}).query[("ivo://x/a", "sia")] == ()
    planned = d.plan(targets, services, {}, {}, inclusive=True)
    assert planned.query[("ivo://x/a", "sia")] == (0,)
    assert planned.no_coverage == frozenset({"ivo://x/a"})


def test_plan_refuses_bad_settings() -> None:
    with pytest.raises(ParameterError, match="intersect"):
        d.plan([], [], {}, {}, intersect="touches")
    with pytest.raises(ParameterError, match="cone"):
        d.plan([], [], {}, {}, cone="round")
    with pytest.raises(ParameterError, match="order"):
        d.plan([], [], {}, {}, order=30)
    with pytest.raises(ParameterError, match="Dec"):
        d.Target(0, 10.0, 91.0, 0.1)


# --- elision --------------------------------------------------------------------------------


def test_obscore_over_sia2_over_sia1_for_one_resource() -> None:
    present = [("ivo://x/a", "sia"), ("ivo://x/a", "sia2"), ("ivo://x/a", "obscore")]
    elided = d.elide(present, {})
    assert elided == {
        ("ivo://x/a", "sia"): d.Elision("preference", ("ivo://x/a", "obscore")),
        ("ivo://x/a", "sia2"): d.Elision("preference", ("ivo://x/a", "obscore")),
    }
    assert d.elide([("ivo://x/a", "sia"), ("ivo://x/a", "sia2")], {}) == {
        ("ivo://x/a", "sia"): d.Elision("preference", ("ivo://x/a", "sia2"))
    }


def test_served_by_another_candidate() -> None:
    served = {"ivo://x/a": frozenset({"ivo://x/tap"}), "ivo://x/b": frozenset({"ivo://x/gone"})}
    present = [("ivo://x/a", "sia"), ("ivo://x/b", "sia"), ("ivo://x/tap", "obscore")]
    elided = d.elide(present, served)
    assert elided == {("ivo://x/a", "sia"): d.Elision("served-by", ("ivo://x/tap", "obscore"))}
    assert str(elided[("ivo://x/a", "sia")]) == "it is served by ivo://x/tap"


def test_served_by_is_decided_at_once_as_pyvo_does() -> None:
    # a is served by b, b by c: both go, though b goes too (pyvo removes every
    # service whose server is among the candidates, in one step).
    served = {"ivo://x/a": frozenset({"ivo://x/b"}), "ivo://x/b": frozenset({"ivo://x/c"})}
    present = [("ivo://x/a", "sia"), ("ivo://x/b", "sia2"), ("ivo://x/c", "obscore")]
    assert set(d.elide(present, served)) == {("ivo://x/a", "sia"), ("ivo://x/b", "sia2")}


def test_elision_is_per_target() -> None:
    """Where the server does not cover a target, the served service is asked."""
    services = [candidate("ivo://x/a", "sia"), candidate("ivo://x/tap", "obscore")]
    coverages = {"ivo://x/a": f"{AROUND_M51} 6/100-110", "ivo://x/tap": AROUND_M51}
    served = {"ivo://x/a": frozenset({"ivo://x/tap"})}
    far = d.Target(1, 45.0, 5.0, 0.05)
    assert "6/" in coverages["ivo://x/a"]
    planned = d.plan([target(0, *M51), far], services, coverages, served, cone="exact")
    assert planned.elided[("ivo://x/a", "sia")] == {
        0: d.Elision("served-by", ("ivo://x/tap", "obscore"))
    }
    assert planned.query[("ivo://x/tap", "obscore")] == (0,)


def test_two_obscore_resources_on_one_tap_service_query_it_once() -> None:
    table = candidate("ivo://x/table", "obscore", "http://x/tap", "vs:catalogresource")
    service = candidate("ivo://x/service", "obscore", "http://x/tap/", "vs:catalogservice")
    coverages = {"ivo://x/table": AROUND_M51, "ivo://x/service": AROUND_M51}
    planned = d.plan([target(0, *M51)], [service, table], coverages, {})
    assert planned.query[table.key] == (0,)
    assert planned.elided[service.key] == {0: d.Elision("same-service", table.key)}


# --- requests ---------------------------------------------------------------------------------


def test_the_upload_query_and_its_table() -> None:
    query = d.obscore_upload_query()
    assert query.startswith("SELECT t.id AS vh_target, o.* FROM ivoa.obscore AS o ")
    assert "JOIN TAP_UPLOAD.targets AS t ON (1 = CONTAINS(POINT('ICRS', o.s_ra, o.s_dec)" in query
    assert "OR 1 = INTERSECTS(CIRCLE('ICRS', t.ra, t.dec, t.radius), o.s_region))" in query
    assert query.endswith("WHERE o.dataproduct_type = 'image'")
    table = parse_single_table(
        io.BytesIO(d.targets_votable([target(7, *M51), target(9, 1.5, -2.25)]))
    ).to_table()
    assert list(table["id"]) == [7, 9]
    assert list(table["dec"]) == [M51[1], -2.25]


def test_band_and_time_constrain_obscore() -> None:
    from astropy import units as u

    query = d.obscore_target_query(target(0, *M51), band=500 * u.nm, time=(53000.0, 53010.0))
    found = re.search(r"\(em_min <= (\S+) AND em_max >= (\S+)\)", query)
    assert found is not None
    assert [float(v) for v in found.groups()] == pytest.approx([5e-7, 5e-7])
    assert "t_min <= 53010" in query and "t_max >= 53000" in query


def test_multipart_body_carries_fields_and_the_upload() -> None:
    content_type, body = d.multipart_body(
        [("QUERY", "SELECT 1"), ("UPLOAD", "targets,param:targets")], {"targets": b"<VOTABLE/>"}
    )
    message = email.message_from_bytes(f"Content-Type: {content_type}\r\n\r\n".encode() + body)
    parts = {p.get_param("name", header="content-disposition"): p for p in message.walk()}
    assert parts["QUERY"].get_payload() == "SELECT 1"
    assert parts["targets"].get_payload(decode=True) == b"<VOTABLE/>"


def test_multi_pos_answers_go_back_to_their_targets() -> None:
    batch = [target(0, 10.0, 10.0), target(1, 10.3, 10.0), target(2, 50.0, -5.0)]
    assert d.assign_targets(10.0, 10.02, 0.1, batch) == [0]
    assert d.assign_targets(10.15, 10.0, 0.25, batch) == [0, 1]  # a wide image meets both
    assert d.assign_targets(50.5, -5.0, None, batch) == [2]  # none by the test: the nearest
    assert d.assign_targets(None, None, None, batch) == [0]


# --- datasets -----------------------------------------------------------------------------------


def record(url: str, did: str | None = None) -> Any:
    return SimpleNamespace(getdataurl=lambda: url, publisher_did=did, format="image/fits")


def test_datasets_are_one_per_url_or_did_with_every_origin() -> None:
    index = d.DatasetIndex()
    a = d.Origin("ivo://x/a", "sia", 0)
    b = d.Origin("ivo://x/b", "obscore", 0)
    c = d.Origin("ivo://x/b", "obscore", 1)
    assert index.add(record("http://x/1.fits"), a)
    assert not index.add(record("http://x/1.fits", "ivo://x/did1"), b)
    assert not index.add(record("http://x/other-copy.fits", "ivo://x/did1"), c)
    assert index.add(record("http://x/2.fits", "ivo://x/did2"), b)
    assert not index.add(record(""), a)
    first, second = index.datasets
    assert first.access_urls == ["http://x/1.fits", "http://x/other-copy.fits"]
    assert first.publisher_did == "ivo://x/did1"
    assert first.origins == [a, b, c]
    assert first.targets == [0, 1]
    assert first.services == [("ivo://x/a", "sia"), ("ivo://x/b", "obscore")]
    assert second.getdataurl() == "http://x/2.fits"
