"""SIA keyword names: the standard's, this library's and pyvo's, and nothing silently lost.

pyvo is the oracle: ``pyvo.dal.sia2.SIA2Query(url, **kw)`` and
``pyvo.dal.sia.SIAQuery(url, **kw)`` build the parameters pyvo would send,
without a request. Every keyword of pyvo's signatures must give the same
parameters here; a lower-case keyword that is no SIA parameter is an error (a
misspelt constraint sent as a parameter the service ignores would return
unfiltered results); service-specific parameters go in upper case or ``extra``.
"""

from __future__ import annotations

import inspect
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from aiohttp import web
from astropy import units as u
from astropy.time import Time
from pyvo.dal.sia import SIAQuery
from pyvo.dal.sia2 import SIA2Query

from tests.servers import LocalServer
from voharvest import VOClient
from voharvest._exceptions import ParameterError
from voharvest.protocol import sia1, sia2

URL = "https://images.example.org/sia2/query"
SIA1_URL = "https://images.example.org/sia"


def keywords_of(query_class: type) -> list[str]:
    """The keyword parameters of a pyvo query class (not the URL, session or **kwargs)."""
    parameters = inspect.signature(query_class.__init__).parameters.values()
    return [
        p.name
        for p in parameters
        if p.kind is not p.VAR_KEYWORD and p.name not in ("self", "url", "baseurl", "session")
    ]


def ours(url: str) -> dict[str, list[str]]:
    return parse_qs(urlsplit(url).query, keep_blank_values=True)


def theirs(query: Any) -> dict[str, list[str]]:
    """pyvo's parameters as {name: [values]} (empty lists are not sent)."""
    return {
        key: [str(v) for v in value] if isinstance(value, list) else [str(value)]
        for key, value in query.items()
        if not (isinstance(value, list) and not value)
    }


# A value for each of pyvo's SIA 2.0 keywords, in a form pyvo encodes right (pyvo
# writes "inf" for open ends, drops calib_level=0 and keeps only the last of
# several target names: see test_sia_encoding.py for those).
SIA2_VALUES: dict[str, Any] = {
    "pos": (202.4696, 47.1952, 0.1),
    "band": (5e-07, 6e-07),
    "time": (Time("2020-01-01"), Time("2020-02-01")),
    "pol": ["I", "Q"],
    "field_of_view": (0.5, 2.0),
    "spatial_resolution": (0.1, 0.2),
    "spectral_resolving_power": (1000.0, 2000.0),
    "exptime": (10.0, 20.0),
    "timeres": (1.0, 2.0),
    "publisher_did": ["ivo://org.example/data?a", "ivo://org.example/data?b"],
    "facility": "HST",
    "collection": ["HST", "JWST"],
    "instrument": "ACS/WFC",
    "data_type": "image",
    "calib_level": [2, 3],
    "target_name": "M51",
    "res_format": "image/fits",
    "maxrec": 100,
}


def test_the_values_cover_pyvos_whole_sia2_signature() -> None:
    assert sorted(keywords_of(SIA2Query)) == sorted(SIA2_VALUES)


@pytest.mark.parametrize("name", list(SIA2_VALUES))
def test_each_pyvo_sia2_keyword_gives_the_parameters_pyvo_gives(name: str) -> None:
    value = SIA2_VALUES[name]
    expected = theirs(SIA2Query(URL, **{name: value}))
    assert expected  # pyvo sends something for it
    assert ours(sia2.build_url(URL, **{name: value})) == expected
    # ... and the standard's name, in upper or lower case, is the same parameter
    (standard,) = expected
    assert ours(sia2.build_url(URL, **{standard: value})) == expected
    assert ours(sia2.build_url(URL, **{standard.lower(): value})) == expected


def test_all_pyvo_sia2_keywords_at_once() -> None:
    expected = theirs(SIA2Query(URL, **SIA2_VALUES))
    assert ours(sia2.build_url(URL, **SIA2_VALUES)) == expected
    assert len(expected) == len(SIA2_VALUES)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("field_of_view", (30 * u.arcmin, 2 * u.deg)),
        ("spatial_resolution", (100 * u.mas, 0.2 * u.arcsec)),
        ("exptime", (1 * u.min, 1 * u.h)),
        ("timeres", (1 * u.ms, 1 * u.s)),
        ("band", (1 * u.GHz, 2 * u.GHz)),
        ("spectral_resolving_power", (1000, 2000)),
    ],
)
def test_quantities_and_integers_give_the_same_numbers_as_pyvo(name: str, value: Any) -> None:
    (key, texts), = theirs(SIA2Query(URL, **{name: value})).items()  # fmt: skip
    found = ours(sia2.build_url(URL, **{name: value}))
    assert list(found) == [key]
    assert [[float(x) for x in t.split()] for t in found[key]] == [
        pytest.approx([float(x) for x in t.split()], rel=1e-12) for t in texts
    ]


@pytest.mark.parametrize(
    ("name", "value"),
    [("calib_level", 7), ("data_type", ""), ("res_format", 3), ("target_name", [])],
)
def test_pyvo_names_are_checked_and_errors_name_them(name: str, value: Any) -> None:
    with pytest.raises(ParameterError, match=name):
        sia2.build_url(URL, **{name: value})


@pytest.mark.parametrize("name", ["calib_lvl", "survey", "responseformat", "pos_", "fov2"])
def test_an_unknown_lower_case_keyword_raises_naming_the_valid_ones(name: str) -> None:
    with pytest.raises(ParameterError) as caught:
        sia2.build_url(URL, pos=(1, 2, 3), **{name: "x"})
    message = str(caught.value)
    assert repr(name) in message
    for valid in ("calib", "calib_level", "res_format", "target_name", "fov", "pos"):
        assert valid in message
    assert f"{name.upper()}=" in message and "extra=" in message


def test_unknown_lower_case_none_is_refused_too() -> None:
    with pytest.raises(ParameterError, match="calib_lvl"):
        sia2.build_url(URL, calib_lvl=None)


def test_the_same_parameter_twice_is_an_error() -> None:
    for pair in ({"calib": 1, "calib_level": 2}, {"calib": 1, "CALIB": 1}, {"fov": 1, "FOV": 2}):
        with pytest.raises(ParameterError, match="twice"):
            sia2.build_url(URL, **pair)
    # a None is no value: pos=None with POS=... is one POS
    assert ours(sia2.build_url(URL, pos=None, POS=(1, 2, 3))) == {"POS": ["CIRCLE 1.0 2.0 3.0"]}


def test_upper_case_standard_names_are_checked_like_their_keywords() -> None:
    assert ours(sia2.build_url(URL, CALIB=2, MAXREC=0)) == {"CALIB": ["2"], "MAXREC": ["0"]}
    with pytest.raises(ParameterError, match="CALIB"):
        sia2.build_url(URL, CALIB=7)
    with pytest.raises(ParameterError, match="Pol"):
        sia2.build_url(URL, Pol="Z")


def test_service_specific_parameters_go_in_upper_case_or_extra() -> None:
    url = sia2.build_url(
        URL,
        pos=(1, 2, 3),
        RESPONSEFORMAT="application/x-votable+xml",
        RunId="abc",
        extra={"survey": ["dss1", "dss2"], "x-custom": 1.5},
    )
    assert ours(url) == {
        "POS": ["CIRCLE 1.0 2.0 3.0"],
        "RESPONSEFORMAT": ["application/x-votable+xml"],
        "RunId": ["abc"],
        "survey": ["dss1", "dss2"],
        "x-custom": ["1.5"],
    }


# -- SIA 1.0 -----------------------------------------------------------------------------------

SIA1_VALUES: dict[str, Any] = {
    "pos": (202.4696, 47.1952),
    "size": (0.2, 0.1),
    "format": "image/fits",
    "intersect": "overlaps",
    "verbosity": 2,
}


def test_sia1_values_cover_pyvos_signature() -> None:
    assert sorted(keywords_of(SIAQuery)) == sorted(SIA1_VALUES)


@pytest.mark.parametrize("name", ["format", "intersect", "verbosity"])
def test_each_pyvo_sia1_keyword_gives_the_parameters_pyvo_gives(name: str) -> None:
    kwargs = {"pos": SIA1_VALUES["pos"], "size": SIA1_VALUES["size"], name: SIA1_VALUES[name]}
    assert ours(sia1.build_url(SIA1_URL, **kwargs)) == theirs(SIAQuery(SIA1_URL, **kwargs))


def test_all_pyvo_sia1_keywords_and_the_standards_names() -> None:
    expected = theirs(SIAQuery(SIA1_URL, **SIA1_VALUES))
    assert ours(sia1.build_url(SIA1_URL, **SIA1_VALUES)) == expected
    standard = {"POS": (202.4696, 47.1952), "SIZE": (0.2, 0.1), "FORMAT": "image/fits",
                "INTERSECT": "overlaps", "VERB": 2}  # fmt: skip
    assert ours(sia1.build_url(SIA1_URL, **standard)) == expected
    spelt = dict(SIA1_VALUES, verb=2, verbosity=None)
    assert ours(sia1.build_url(SIA1_URL, **spelt)) == expected


def test_sia1_unknown_lower_case_raises_and_services_own_pass() -> None:
    with pytest.raises(ParameterError, match="'survey'") as caught:
        sia1.build_url(SIA1_URL, pos=(1, 2), size=0.1, survey="dss")
    assert "intersect" in str(caught.value) and "verbosity" in str(caught.value)
    url = sia1.build_url(SIA1_URL, pos=(1, 2), size=0.1, NAXIS="300,300", extra={"survey": "dss"})
    assert ours(url) == {
        "POS": ["1.0,2.0"],
        "SIZE": ["0.1"],
        "NAXIS": ["300,300"],
        "survey": ["dss"],
    }
    with pytest.raises(ParameterError, match="size"):
        sia1.build_url(SIA1_URL, pos=(1, 2))


# -- through the services ----------------------------------------------------------------------


async def test_services_send_pyvo_names_as_the_standards(server: LocalServer) -> None:
    answer = (
        b'<?xml version="1.0"?><VOTABLE version="1.3"><RESOURCE type="results">'
        b'<INFO name="QUERY_STATUS" value="OK"/><TABLE>'
        b'<FIELD name="access_url" datatype="char" arraysize="*"/>'
        b'<FIELD name="u" datatype="char" arraysize="*" ucd="VOX:Image_AccessReference"/>'
        b"<DATA><TABLEDATA/></DATA></TABLE></RESOURCE></VOTABLE>"
    )

    async def handler(request: web.Request) -> web.Response:
        return web.Response(body=answer, content_type="text/xml")

    server.route("GET", "/sia2", handler)
    server.route("GET", "/sia", handler)
    async with VOClient() as client:
        service2 = client.sia_service(server.url("/sia2"), version=2)
        await service2.search((10, 20, 0.1), calib_level=2, res_format="image/fits",
                              extra={"survey": "x"})  # fmt: skip
        with pytest.raises(ParameterError, match="calib_lvl"):
            await service2.search((10, 20, 0.1), calib_lvl=2)
        service1 = client.sia_service(server.url("/sia"))
        await service1.search((10, 20), "2arcmin", NAXIS="10,10", extra={"survey": "x"})
    (hit2,) = server.hits_for("/sia2")
    (hit1,) = server.hits_for("/sia")
    assert hit2.query == {
        "POS": "CIRCLE 10.0 20.0 0.1",
        "CALIB": "2",
        "FORMAT": "image/fits",
        "survey": "x",
    }
    assert hit1.query == {"POS": "10.0,20.0", "SIZE": repr(2 / 60), "NAXIS": "10,10", "survey": "x"}
