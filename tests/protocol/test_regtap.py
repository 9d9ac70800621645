"""RegTAP: the ADQL each registry constraint becomes, pinned; literals that can't be escaped."""

from __future__ import annotations

import re

import pytest
from astropy import units as u
from astropy.coordinates import SkyCoord
from astropy.time import Time
from hypothesis import example, given
from hypothesis import strategies as st

from voharvest import NoServiceError, ParameterError, UnsupportedConstraintError
from voharvest.protocol.regtap import (
    WAVEBANDS,
    Interface,
    RegistryFeatures,
    Resource,
    Spatial,
    build_query,
)

HEAD = (
    "SELECT ivoid, res_type, short_name, res_title, content_level, res_description, "
    "reference_url, creator_seq, created, updated, rights, content_type, source_format, "
    "source_value, region_of_regard, waveband,\n"
    "  ivo_string_agg((COALESCE(standard_id, '')) || '|vh|' || (COALESCE(intf_type, ''))"
    " || '|vh|' || (COALESCE(intf_role, '')) || '|vh|' || (COALESCE(std_version, ''))"
    " || '|vh|' || (COALESCE(access_url, '')) || '|vh|' || (COALESCE(cap_description, '')),"
    " '|vh-intf|')"
    " AS interfaces\n"
    "FROM rr.resource\n"
    "NATURAL LEFT OUTER JOIN rr.capability\n"
    "NATURAL LEFT OUTER JOIN rr.interface\n"
)
TAIL = (
    "\nGROUP BY ivoid, res_type, short_name, res_title, content_level, res_description, "
    "reference_url, creator_seq, created, updated, rights, content_type, source_format, "
    "source_value, region_of_regard, waveband\n"
    "ORDER BY ivoid"
)


def where(query: str) -> str:
    """The WHERE clause of a query, checking the fixed parts around it."""
    assert query.startswith(HEAD)
    assert query.endswith(TAIL)
    return query[len(HEAD) : -len(TAIL)]


def test_notebook_search_sia_uv_swift():
    query = build_query(servicetype="sia", waveband="uv", keywords=["swift"])
    assert where(query) == (
        "WHERE ivoid IN (SELECT ivoid FROM rr.resource WHERE 1=ivo_hasword(res_description, "
        "'swift') UNION SELECT ivoid FROM rr.resource WHERE 1=ivo_hasword(res_title, 'swift') "
        "UNION SELECT ivoid FROM rr.res_subject WHERE res_subject ILIKE '%swift%')\n"
        "  AND standard_id IN ('ivo://ivoa.net/std/sia')\n"
        "  AND 1=ivo_hashlist_has(waveband, 'uv')"
    )


def test_notebook_search_sia_optical_sloan():
    query = build_query(servicetype="sia", keywords=["sloan"], waveband="optical")
    assert where(query) == (
        "WHERE ivoid IN (SELECT ivoid FROM rr.resource WHERE 1=ivo_hasword(res_description, "
        "'sloan') UNION SELECT ivoid FROM rr.resource WHERE 1=ivo_hasword(res_title, 'sloan') "
        "UNION SELECT ivoid FROM rr.res_subject WHERE res_subject ILIKE '%sloan%')\n"
        "  AND standard_id IN ('ivo://ivoa.net/std/sia')\n"
        "  AND 1=ivo_hashlist_has(waveband, 'optical')"
    )


def test_no_constraint_selects_everything():
    assert where(build_query()) == ""


def test_keywords_are_anded_and_work_without_union_or_ilike():
    query = build_query(keywords=["galaxy", "cluster"], features=RegistryFeatures.minimal())
    assert where(query) == (
        "WHERE (1=ivo_hasword(res_description, 'galaxy') OR 1=ivo_hasword(res_title, 'galaxy') "
        "OR ivoid IN (SELECT ivoid FROM rr.res_subject WHERE "
        "1=ivo_nocasematch(res_subject, '%galaxy%')))\n"
        "  AND (1=ivo_hasword(res_description, 'cluster') OR 1=ivo_hasword(res_title, 'cluster') "
        "OR ivoid IN (SELECT ivoid FROM rr.res_subject WHERE "
        "1=ivo_nocasematch(res_subject, '%cluster%')))"
    )
    assert "UNION" not in query and "ILIKE" not in query


@pytest.mark.parametrize(
    ("servicetype", "includeaux", "expected"),
    [
        ("image", False, "standard_id IN ('ivo://ivoa.net/std/sia')"),
        ("sia1", False, "standard_id IN ('ivo://ivoa.net/std/sia')"),
        (
            "sia",
            True,
            "standard_id IN ('ivo://ivoa.net/std/sia', 'ivo://ivoa.net/std/sia#aux')",
        ),
        ("sia2", False, "standard_id LIKE 'ivo://ivoa.net/std/sia#query-2.%'"),
        (
            "sia2",
            True,
            "(standard_id LIKE 'ivo://ivoa.net/std/sia#query-2.%' OR "
            "standard_id LIKE 'ivo://ivoa.net/std/sia#query-aux-2.%')",
        ),
        ("spectrum", False, "standard_id IN ('ivo://ivoa.net/std/ssa')"),
        ("SSAP", False, "standard_id IN ('ivo://ivoa.net/std/ssa')"),
        ("conesearch", False, "standard_id IN ('ivo://ivoa.net/std/conesearch')"),
        ("scs", False, "standard_id IN ('ivo://ivoa.net/std/conesearch')"),
        ("line", False, "standard_id IN ('ivo://ivoa.net/std/slap')"),
        ("table", True, "standard_id IN ('ivo://ivoa.net/std/tap', 'ivo://ivoa.net/std/tap#aux')"),
        (
            "ivo://IVOA.net/std/SSA#query-2.0",
            False,
            "standard_id IN ('ivo://ivoa.net/std/ssa#query-2.0')",
        ),
        (
            ["sia", "sia2"],
            False,
            "(standard_id IN ('ivo://ivoa.net/std/sia') OR "
            "standard_id LIKE 'ivo://ivoa.net/std/sia#query-2.%')",
        ),
    ],
)
def test_servicetype(servicetype, includeaux, expected):
    assert where(build_query(servicetype=servicetype, includeaux=includeaux)) == f"WHERE {expected}"


def test_unknown_servicetype_names_the_valid_ones():
    with pytest.raises(ParameterError, match="sia2"):
        build_query(servicetype="images")


def test_wavebands_are_case_insensitive_and_ored():
    assert where(build_query(waveband=["X-Ray", "Gamma-ray"])) == (
        "WHERE (1=ivo_hashlist_has(waveband, 'x-ray') OR 1=ivo_hashlist_has(waveband, 'gamma-ray'))"
    )


def test_every_messenger_term_is_accepted():
    for band in WAVEBANDS:
        assert f"'{band}'" in build_query(waveband=band.upper())


def test_unknown_waveband_lists_the_vocabulary():
    with pytest.raises(ParameterError) as info:
        build_query(waveband="visible")
    for band in WAVEBANDS:
        assert band in str(info.value)


def test_author():
    assert where(build_query(author="Wolf%")) == (
        "WHERE ivoid IN (SELECT ivoid FROM rr.res_role WHERE base_role = 'creator' AND "
        "role_name ILIKE 'Wolf%')"
    )


@pytest.mark.parametrize(
    ("datamodel", "expected"),
    [
        (
            "obscore",
            "ivoid IN (SELECT ivoid FROM rr.res_detail WHERE detail_xpath = "
            "'/capability/dataModel/@ivo-id' AND detail_value ILIKE 'ivo://ivoa.net/std/obscore%')",
        ),
        (
            "RegTAP",
            "ivoid IN (SELECT ivoid FROM rr.res_detail WHERE detail_xpath = "
            "'/capability/dataModel/@ivo-id' AND detail_value ILIKE 'ivo://ivoa.net/std/regtap#1.%')",
        ),
        (
            "epntap",
            "ivoid IN (SELECT ivoid FROM rr.res_table WHERE table_utype ILIKE "
            "'ivo://vopdc.obspm/std/epncore#schema-2.%' OR table_utype ILIKE "
            "'ivo://ivoa.net/std/epntap#table-2.%')",
        ),
    ],
)
def test_datamodel(datamodel, expected):
    assert where(build_query(datamodel=datamodel)) == f"WHERE {expected}"


def test_unknown_datamodel():
    with pytest.raises(ParameterError, match="obscore"):
        build_query(datamodel="caom")


def test_ivoids_one_or_many_lowercased():
    assert where(build_query(ivoid="ivo://CDS.vizier/J/A+A/1")) == (
        "WHERE ivoid = 'ivo://cds.vizier/j/a+a/1'"
    )
    assert where(build_query(ivoid=["ivo://a/b", "ivo://c/d"])) == (
        "WHERE ivoid IN ('ivo://a/b', 'ivo://c/d')"
    )
    with pytest.raises(ParameterError, match="ivo://"):
        build_query(ivoid="http://not/an/ivoid")
    with pytest.raises(ParameterError):
        build_query(ivoid=[])


def test_ucd_patterns_are_ored():
    assert where(build_query(ucd=["phot.mag%", "pos.eq.ra"])) == (
        "WHERE ivoid IN (SELECT ivoid FROM rr.table_column WHERE ucd ILIKE 'phot.mag%' OR "
        "ucd ILIKE 'pos.eq.ra')"
    )


@pytest.mark.parametrize(
    ("spatial", "expected"),
    [
        ((10, 20), "1 = CONTAINS(MOC(6, POINT(10.0, 20.0)), coverage)"),
        (SkyCoord(10, 20, unit="deg"), "1 = CONTAINS(MOC(6, POINT(10.0, 20.0)), coverage)"),
        ((370, -5), "1 = CONTAINS(MOC(6, POINT(10.0, -5.0)), coverage)"),
        (
            (10, 20, 1 * u.arcmin),
            "1 = CONTAINS(MOC(6, CIRCLE(10.0, 20.0, 0.016666666666666666)), coverage)",
        ),
        (
            Spatial((SkyCoord(10, 20, unit="deg"), 0.5), intersect="overlaps", order=8),
            "1 = INTERSECTS(MOC(8, CIRCLE(10.0, 20.0, 0.5)), coverage)",
        ),
        (
            Spatial([(0, 0), (10, 0), (10, 10)], intersect="enclosed"),
            "1 = CONTAINS(coverage, MOC(6, POLYGON(0.0, 0.0, 10.0, 0.0, 10.0, 10.0)))",
        ),
        (
            [0, 0, 10, 0, 10, 10],
            "1 = CONTAINS(MOC(6, POLYGON(0.0, 0.0, 10.0, 0.0, 10.0, 10.0)), coverage)",
        ),
        ("6/1-3 7/40", "1 = CONTAINS(MOC('6/1-3 7/40'), coverage)"),
    ],
)
def test_spatial(spatial, expected):
    assert where(build_query(spatial=spatial)) == (
        f"WHERE ivoid IN (SELECT ivoid FROM rr.stc_spatial WHERE {expected})"
    )


@pytest.mark.parametrize(
    "bad",
    [
        (10, 95),
        (float("nan"), 0),
        (10, 20, 0),
        (10, 20, 200),
        [(0, 0), (1, 1)],
        "6/1-3'); DROP TABLE rr.resource; --",
        "M51",
        Spatial((10, 20), intersect="enclosed"),
    ],
)
def test_bad_spatial(bad):
    with pytest.raises(ParameterError):
        build_query(spatial=bad)


def test_spatial_intersect_and_order_are_validated():
    with pytest.raises(ParameterError):
        Spatial((1, 2), intersect="inside")
    with pytest.raises(ParameterError):
        Spatial((1, 2), order=30)


def test_spectral_in_any_unit_becomes_ordered_joules():
    point = where(build_query(spectral=500 * u.nm))
    energy = repr(float((500 * u.nm).to_value(u.J, equivalencies=u.spectral()))).upper()
    assert energy == "3.9728917142978567E-19"
    assert point == (
        "WHERE ivoid IN (SELECT ivoid FROM rr.stc_spectral WHERE "
        f"spectral_start <= {energy} AND spectral_end >= {energy})"
    )
    # A wavelength interval is an energy interval the other way round.
    interval = where(build_query(spectral=(400 * u.nm, 700 * u.nm)))
    numbers = [float(x) for x in re.findall(r"[0-9.]+E-?[0-9]+", interval)]
    hi, lo = numbers
    assert lo == pytest.approx((700 * u.nm).to_value(u.J, equivalencies=u.spectral()))
    assert hi == pytest.approx((400 * u.nm).to_value(u.J, equivalencies=u.spectral()))
    assert lo < hi
    frequency = where(build_query(spectral=[1, 2] * u.GHz))
    assert "spectral_start <= " in frequency and "spectral_end >= " in frequency


def test_spectral_needs_a_spectral_unit():
    with pytest.raises(ParameterError, match="unit"):
        build_query(spectral=5e-7)
    with pytest.raises(ParameterError, match="spectral"):
        build_query(spectral=5 * u.kg)


def test_temporal_from_time_or_mjd_with_open_ends():
    assert where(build_query(temporal=(Time("2020-01-01T00:00:00", scale="utc"), 59000.5))) == (
        "WHERE ivoid IN (SELECT ivoid FROM rr.stc_temporal WHERE "
        "time_start <= 59000.5 AND time_end >= 58849.0)"
    )
    assert where(build_query(temporal=(None, 51000))) == (
        "WHERE ivoid IN (SELECT ivoid FROM rr.stc_temporal WHERE time_start <= 51000.0)"
    )
    with pytest.raises(ParameterError):
        build_query(temporal=(None, None))


@pytest.mark.parametrize(
    "constraint",
    [{"spatial": (1, 2)}, {"spectral": 1 * u.um}, {"temporal": 50000}],
)
def test_constraints_the_registry_cant_run_fail_before_any_request(constraint):
    with pytest.raises(UnsupportedConstraintError):
        build_query(features=RegistryFeatures.minimal(), **constraint)
    # ... and the same constraint is fine where the registry supports it.
    assert "rr.stc_" in build_query(**constraint)


def test_maxrec_is_top():
    assert build_query(maxrec=25).startswith("SELECT TOP 25 ivoid")
    assert build_query(maxrec=0).startswith("SELECT TOP 0 ivoid")
    for bad in (-1, 2.5, True, "10"):
        with pytest.raises(ParameterError):
            build_query(maxrec=bad)


def test_all_constraints_combine():
    query = build_query(
        keywords="sloan",
        servicetype="sia",
        waveband="optical",
        author="%SDSS%",
        datamodel="obscore",
        ivoid=["ivo://a/b"],
        ucd="pos.eq.ra%",
        spatial=(10, 20),
        spectral=500 * u.nm,
        temporal=50000,
        maxrec=10,
    )
    assert where(query.replace("SELECT TOP 10 ", "SELECT ")).count("\n  AND ") == 9


def test_empty_keywords_are_errors():
    for bad in ([], [""], ["  "], [None]):
        with pytest.raises(ParameterError):
            build_query(keywords=bad)


# --- literals: nothing a user types can leave its string --------------------------

_LITERAL = re.compile(r"'(?:[^']|'')*'")


def split_literals(query: str) -> tuple[str, list[str]]:
    """The query with every string literal replaced by '?', and the literals' values."""
    values = [m.group(0)[1:-1].replace("''", "'") for m in _LITERAL.finditer(query)]
    skeleton = _LITERAL.sub("?", query)
    assert "'" not in skeleton, "an unbalanced quote escaped a literal"
    return skeleton, values


_text = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
    min_size=1,
).filter(lambda s: s.strip() and not any(ord(c) < 32 and c not in "\t\n\r" for c in s))


@given(word=_text)
@example(word="'; DROP TABLE rr.resource; --")
@example(word="o''brien' OR '1'='1")
@example(word="100% \\' \\\\")
@example(word="\u00e9toile \u2605 '")
def test_no_keyword_breaks_out_of_its_literal(word):
    skeleton, values = split_literals(build_query(keywords=[word]))
    reference, _ = split_literals(build_query(keywords=["plain"]))
    assert skeleton == reference
    assert word.strip() in values
    assert f"%{word.strip()}%" in values


@given(name=_text)
@example(name="Smith' OR 1=1 --")
def test_no_author_breaks_out_of_its_literal(name):
    skeleton, values = split_literals(build_query(author=name))
    reference, _ = split_literals(build_query(author="plain"))
    assert skeleton == reference
    assert name.strip() in values


@given(tail=_text)
@example(tail="x' OR ivoid LIKE '%")
def test_no_ivoid_breaks_out_of_its_literal(tail):
    ivoid = "ivo://" + tail
    skeleton, values = split_literals(build_query(ivoid=ivoid))
    reference, _ = split_literals(build_query(ivoid="ivo://plain"))
    assert skeleton == reference
    assert ivoid.strip().lower() in values


@pytest.mark.parametrize("bad", ["nul\x00byte", "bell\x07"])
def test_control_characters_are_refused(bad):
    with pytest.raises(ParameterError, match="control character"):
        build_query(keywords=[bad])


# --- resources and their interfaces ------------------------------------------------


def _resource(*interfaces: Interface) -> Resource:
    return Resource(ivoid="ivo://example/svc", interfaces=interfaces)


def test_sia_and_sia2_are_told_apart():
    resource = _resource(
        Interface("ivo://ivoa.net/std/sia#query-2.0", "http://h/sia2", "vs:paramhttp", "std"),
        Interface("ivo://ivoa.net/std/sia", "http://h/sia1?", "vs:paramhttp", "std"),
    )
    assert resource.access_url("sia") == "http://h/sia1?"
    assert resource.access_url("image") == "http://h/sia1?"
    assert resource.access_url("sia2") == "http://h/sia2"
    assert resource.service_kinds == ("sia2", "sia")


def test_standard_interfaces_are_preferred_and_vosi_never_chosen():
    resource = _resource(
        Interface("ivo://ivoa.net/std/vosi#capabilities", "http://h/caps", "vs:paramhttp", "std"),
        Interface("ivo://ivoa.net/std/tap#aux", "http://h/aux-tap", "vs:paramhttp", "std"),
        Interface("ivo://ivoa.net/std/tap", "http://h/odd-tap", "vr:webbrowser", ""),
        Interface("ivo://ivoa.net/std/tap", "http://h/tap", "vs:paramhttp", "std"),
    )
    assert resource.access_url("tap") == "http://h/tap"
    only_vosi = _resource(
        Interface("ivo://ivoa.net/std/vosi#capabilities", "http://h/caps", "vs:paramhttp", "std")
    )
    with pytest.raises(NoServiceError, match="no tap interface"):
        only_vosi.interface("tap")


def test_auxiliary_capability_used_when_nothing_else():
    resource = _resource(
        Interface("ivo://ivoa.net/std/tap#aux", "http://h/tap", "vs:paramhttp", "std")
    )
    assert resource.access_url("tap") == "http://h/tap"
    with pytest.raises(NoServiceError):
        resource.access_url("sia")


def test_open_ended_wavelength_runs_against_energy():
    # (None, 700 nm): wavelengths up to 700 nm, which is energies from E(700 nm) up.
    energy = repr(float((700 * u.nm).to_value(u.J, equivalencies=u.spectral()))).upper()
    assert where(build_query(spectral=(None, 700 * u.nm))) == (
        f"WHERE ivoid IN (SELECT ivoid FROM rr.stc_spectral WHERE spectral_end >= {energy})"
    )
    # In energy units nothing is turned round.
    assert where(build_query(spectral=(None, 2 * u.eV))).endswith(
        f"spectral_start <= {repr(float((2 * u.eV).to_value(u.J))).upper()})"
    )


def test_temporal_times_are_sent_as_utc_mjd():
    tt = Time(59000.0, format="mjd", scale="tt")
    text = where(build_query(temporal=tt))
    assert f"{float(tt.utc.mjd)!r}" in text
    assert "59000.0)" not in text


@pytest.mark.parametrize("empty", [{"waveband": []}, {"ucd": []}, {"servicetype": []}])
def test_empty_lists_are_errors_not_broken_adql(empty):
    with pytest.raises(ParameterError, match="empty"):
        build_query(**empty)
