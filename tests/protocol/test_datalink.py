"""DataLink documents, service descriptors and SODA parameters, with pyvo as the oracle.

Every DataLink and SODA document shipped in the pyvo wheel (recorded from
GAVO's DaCHS and CADC, plus ObsCore and SSA answers that carry descriptors)
is parsed by us and by pyvo; links, semantics, descriptors and the URLs built
from them must agree.
"""

from __future__ import annotations

import io
import math
import warnings
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest
from astropy import units as u
from astropy.coordinates import SkyCoord

from voharvest import DataLinkError, FormatError, ParameterError, QueryError
from voharvest.protocol import votable
from voharvest.protocol.datalink import (
    DataLinks,
    Link,
    descriptors_of,
    is_datalink_format,
    parse_datalink,
    same_format,
)
from voharvest.protocol.soda import Cutout, soda_params

from ..recorded import pyvo_data

LINK_DOCUMENTS = [
    "datalink.xml",
    "proc.xml",
    "proc_inf.xml",
    "proc_units.xml",
    "cutout1.xml",
    "cutout2.xml",
]
DESCRIBED_ANSWERS = ["datalink-obscore.xml", "datalink-ssa.xml"]


def recorded(name: str) -> bytes:
    return pyvo_data("pyvo.dal.tests", "datalink", name)


def pyvo_results(name: str) -> Any:
    from astropy.io.votable import parse
    from pyvo.dal.adhoc import DatalinkResults

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        table = parse(io.BytesIO(recorded(name)))
    return DatalinkResults(table, url=f"http://example.org/{name}")


def text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bytes):
        value = value.decode()
    if hasattr(value, "mask") and bool(value.mask):
        return None
    value = str(value).strip()
    return value or None


@pytest.mark.parametrize("name", LINK_DOCUMENTS)
def test_links_agree_with_pyvo(name: str) -> None:
    ours = parse_datalink(recorded(name), url=name)
    theirs = pyvo_results(name)
    assert len(ours) == len(theirs) > 0
    for link, row in zip(ours, theirs, strict=True):
        assert link.id == text(row["ID"])
        assert link.access_url == text(row["access_url"])
        assert link.service_def == text(row["service_def"])
        assert link.error_message == text(row["error_message"])
        assert link.semantics == text(row["semantics"])
        assert link.content_type == text(row["content_type"])
    for term in ("#this", "#preview", "#progenitor", "#proc", "#cutout"):
        expected = [text(r["access_url"]) for r in theirs.bysemantics(term, include_narrower=False)]
        assert [lk.access_url for lk in ours.by_semantics(term)] == expected


@pytest.mark.parametrize("name", LINK_DOCUMENTS + DESCRIBED_ANSWERS)
def test_descriptors_agree_with_pyvo(name: str) -> None:
    ours = descriptors_of(recorded(name))
    theirs = list(pyvo_results(name).iter_adhocservices())
    assert len(ours) == len(theirs) > 0
    for descriptor, resource in zip(ours, theirs, strict=True):
        params = {p.name: p.value for p in resource.params}
        assert descriptor.access_url == params["accessURL"]
        assert descriptor.standard_id == params["standardID"]
        assert descriptor.id == resource.ID
        inputs = [p for g in resource.groups if g.name == "inputParams" for p in g.entries]
        assert [p.name for p in descriptor.params] == [p.name for p in inputs]
        for ours_param, their_param in zip(descriptor.params, inputs, strict=True):
            assert ours_param.ref == (their_param.ref or None)
            if their_param.datatype == "char":
                assert ours_param.value == (text(their_param.value) or "")


@pytest.mark.parametrize("name", LINK_DOCUMENTS)
def test_soda_descriptor_found_as_pyvo_finds_it(name: str) -> None:
    ours = parse_datalink(recorded(name))
    theirs = pyvo_results(name)
    # pyvo: the first link whose service_def names a SODA sync descriptor.
    first = theirs.get_first_proc()
    found = ours.soda_sync()
    assert found is not None
    descriptor, link = found
    assert descriptor.is_soda_sync
    assert link.service_def == text(first["service_def"])
    resource = theirs.get_adhocservice_by_id(text(first["service_def"]))
    assert descriptor.access_url == {p.name: p.value for p in resource.params}["accessURL"]


def test_this_links_and_formats() -> None:
    links = parse_datalink(recorded("cutout1.xml"))
    assert len(links.ids) == 2
    # Two datasets, one #this each, served as application/fits: image/fits finds them.
    assert [lk.content_type for lk in links.this("image/fits")] == ["application/fits"] * 2
    assert links.this("image/jpeg") == []
    first = links.ids[0]
    assert [lk.id for lk in links.dataset("image/fits", first)] == [first]
    with pytest.raises(DataLinkError, match="offers application/fits") as caught:
        links.dataset("image/png", first)
    assert caught.value.dataset_id == first


def test_previews_take_narrower_terms_and_progenitors() -> None:
    proc = parse_datalink(recorded("proc.xml"))
    semantics = sorted(lk.semantics for lk in proc.previews)
    assert semantics == ["#preview", "#preview-image"]
    gavo = parse_datalink(recorded("datalink.xml"))
    assert [lk.content_type for lk in gavo.progenitors] == [
        "application/x-votable+xml;content=datalink"
    ]
    assert gavo.progenitors[0].is_progenitor
    assert gavo.this()[0].content_length == 100800


def _with_error_row(document: bytes, dataset: str, message: str) -> bytes:
    """A copy of a DaCHS DataLink document whose rows are replaced by one error row."""
    head, _, rest = document.partition(b"<TR>")
    _, _, tail = rest.rpartition(b"</TR>")
    row = (
        f"<TR><TD>{dataset}</TD><TD/><TD/><TD>{message}</TD><TD/>"
        "<TD>#this</TD><TD/><TD>-1</TD></TR>"
    ).encode()
    return head + row + tail


def test_error_row_is_a_typed_error_for_that_dataset() -> None:
    document = _with_error_row(
        recorded("datalink.xml"), "ivo://x/y?1", "NotFoundFault: ivo://x/y?1 is unknown"
    )
    links = parse_datalink(document, url="http://dl.example/links")
    assert [lk.is_error for lk in links] == [True]
    assert links.this() == []
    with pytest.raises(DataLinkError, match="NotFoundFault") as caught:
        links.dataset("image/fits")
    assert caught.value.dataset_id == "ivo://x/y?1"
    assert caught.value.url == "http://dl.example/links"


def test_not_a_links_document_and_query_error() -> None:
    with pytest.raises(FormatError, match="not a DataLink document"):
        parse_datalink(recorded("datalink-obscore.xml"))
    error = (
        b'<VOTABLE version="1.3" xmlns="http://www.ivoa.net/xml/VOTable/v1.3">'
        b'<RESOURCE type="results"><INFO name="QUERY_STATUS" value="ERROR">'
        b"UsageFault: no ID given</INFO></RESOURCE></VOTABLE>"
    )
    with pytest.raises(QueryError, match="UsageFault"):
        parse_datalink(error)
    with pytest.raises(FormatError):
        parse_datalink(b"<html><body>Service down</body></html>")


def test_descriptors_refuse_entities() -> None:
    hostile = (
        b'<?xml version="1.0"?><!DOCTYPE VOTABLE [<!ENTITY a "aaaaaaaa">]>'
        b'<VOTABLE><RESOURCE type="meta" utype="adhoc:service">'
        b'<PARAM name="accessURL" datatype="char" arraysize="*" value="&a;"/>'
        b"</RESOURCE></VOTABLE>"
    )
    with pytest.raises(FormatError):
        descriptors_of(hostile)
    assert descriptors_of(b"<VOTABLE/>") == ()


@pytest.mark.parametrize("name", DESCRIBED_ANSWERS)
def test_datalink_url_of_rows_matches_pyvo(name: str) -> None:
    from pyvo.dal.adhoc import DATALINK_IVOID, DatalinkQuery

    decoded = votable.decode(recorded(name))
    ours = votable.table_results(decoded)
    theirs = pyvo_results(name)
    resource = theirs.get_adhocservice_by_ivoid(DATALINK_IVOID)
    descriptor = ours.links_descriptor
    assert descriptor is not None
    for index, row in enumerate(theirs):
        query = DatalinkQuery.from_resource(row, resource)
        ours_url = descriptor.url(row=ours.row_by_field_id(index))
        assert ours_url.split("?", 1)[0] == query.baseurl
        assert sorted(parse_qsl(urlsplit(ours_url).query)) == sorted(
            (k, str(v)) for k, v in query.items()
        )


def test_obscore_record_knows_its_datalink() -> None:
    results = votable.sia_results(votable.decode(recorded("datalink-obscore.xml")))
    assert len(results) == 3
    for record in results:
        assert record.is_datalink
        # access_format says DataLink: the access URL is the document.
        assert record.datalink_url == record.getdataurl()


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("application/x-votable+xml;content=datalink", True),
        ('application/x-votable+xml; content="datalink"', True),
        ("Application/X-VOTable+XML;Content=DataLink", True),
        ("application/x-votable+xml", False),
        ("image/fits", False),
        (None, False),
        ("", False),
    ],
)
def test_is_datalink_format(value: str | None, expected: bool) -> None:
    assert is_datalink_format(value) is expected


def test_same_format() -> None:
    assert same_format("application/fits", "image/fits")
    assert same_format("image/fits;version=4", "image/fits")
    assert same_format("image/jpeg", "image/*")
    assert not same_format("image/png", "image/fits")
    assert not same_format(None, "image/fits")


# --- SODA parameters ---------------------------------------------------------------


def _pyvo_soda(name: str, **region: Any) -> dict[str, str]:
    from pyvo.dal.adhoc import SodaQuery

    theirs = pyvo_results(name)
    first = theirs.get_first_proc()
    resource = theirs.get_adhocservice_by_id(text(first["service_def"]))
    query = SodaQuery.from_resource(first, resource, **region)
    return {k: str(v) for k, v in query.items()}


def _numbers(value: str) -> list[float]:
    return [float(x) for x in value.replace("CIRCLE", "").replace("POLYGON", "").split()]


@pytest.mark.parametrize("name", ["cutout1.xml", "proc.xml"])
def test_circle_cutout_matches_pyvo(name: str) -> None:
    links = parse_datalink(recorded(name))
    found = links.soda_sync()
    assert found is not None
    descriptor, _ = found
    ra, dec, radius = 88.7, -67.8, 3 / 60
    ours = dict(descriptor.fixed_values())
    ours.update(soda_params(descriptor, ra, dec, Cutout.circle(3 * u.arcmin)))
    theirs = _pyvo_soda(name, circle=(ra, dec, radius))
    assert set(ours) == set(theirs)
    for key, value in theirs.items():
        if key == "CIRCLE":
            assert _numbers(ours[key]) == pytest.approx(_numbers(value))
        else:
            assert ours[key] == value


def test_box_cutout_polygon_and_pos_fallback() -> None:
    links = parse_datalink(recorded("cutout1.xml"))
    found = links.soda_sync()
    assert found is not None
    descriptor, _ = found
    box = Cutout.box("4arcmin", "2arcmin")
    params = dict(soda_params(descriptor, 10.0, 20.0, box))
    vertices = _numbers(params["POLYGON"])
    assert len(vertices) == 8
    centre = SkyCoord(10.0, 20.0, unit="deg")
    corners = SkyCoord(vertices[0::2], vertices[1::2], unit="deg")
    # Each corner lies half a diagonal away from the centre.
    diagonal = math.hypot(4, 2) / 2
    assert corners.separation(centre).arcmin == pytest.approx([diagonal] * 4, rel=1e-3)
    # East first: the first two corners have the larger RA.
    assert vertices[0] > 10 and vertices[2] > 10 and vertices[4] < 10
    # A service with POS only gets the shape in POS.
    from voharvest.protocol._descriptors import InputParam, ServiceDescriptor

    pos_only = ServiceDescriptor("http://s.example/soda", params=(InputParam("POS"),))
    assert soda_params(pos_only, 10.0, 20.0, Cutout.circle(0.1)) == [
        ("POS", "CIRCLE 10.0 20.0 0.1")
    ]


def test_cutout_parsing_and_refusals() -> None:
    assert Cutout.parse("3arcmin").radius == pytest.approx(0.05)
    assert Cutout.parse(0.05 * u.deg).radius == pytest.approx(0.05)
    assert Cutout.parse(0.05).radius == pytest.approx(0.05)
    assert Cutout.parse("3").radius == 3.0  # a bare number is degrees, as everywhere
    box = Cutout.parse("4arcmin x 2arcmin")
    assert (box.width, box.height) == pytest.approx((4 / 60, 2 / 60))
    assert Cutout.parse(box) is box
    for bad in ("three", "3kg", -1, 0, 120, "91", "1deg x", float("nan")):
        with pytest.raises(ParameterError):
            Cutout.parse(bad)
    with pytest.raises(ParameterError):
        Cutout(radius=0.1, width=0.1, height=0.1)
    band = Cutout.circle(0.1, band=(500 * u.nm, 400 * u.nm)).band
    assert band == pytest.approx((4e-7, 5e-7))
    described = Cutout.circle("6arcsec").describe(202.47, 47.2)
    assert described.startswith("CIRCLE 202.47 47.2 0.001666")


def test_band_needs_a_band_parameter() -> None:
    from voharvest import UnsupportedConstraintError
    from voharvest.protocol._descriptors import InputParam, ServiceDescriptor

    circle_only = ServiceDescriptor("http://s.example/soda", params=(InputParam("CIRCLE"),))
    with pytest.raises(UnsupportedConstraintError, match="BAND"):
        soda_params(circle_only, 1.0, 2.0, Cutout.circle(0.1, band=(4e-7, 5e-7)))
    nothing = ServiceDescriptor("http://s.example/soda", params=(InputParam("ID", value="x"),))
    with pytest.raises(UnsupportedConstraintError, match="neither"):
        soda_params(nothing, 1.0, 2.0, Cutout.circle(0.1))


def test_descriptor_url_keeps_fixed_values_and_encodes() -> None:
    links = parse_datalink(recorded("cutout1.xml"))
    found = links.soda_sync(links.ids[1])
    assert found is not None
    descriptor, link = found
    assert link.id == links.ids[1]
    url = descriptor.url(soda_params(descriptor, 80.0, -70.3, Cutout.circle(0.01)))
    query = dict(parse_qsl(urlsplit(url).query))
    assert query["ID"] == "ad:MACHO/cal054151b.fits.fz"
    assert query["RUNID"] == "e3h6rssb161oyf7j"
    assert query["CIRCLE"] == "80.0 -70.3 0.01"
    assert "+" not in url and "%20" in url


def test_links_document_is_a_value() -> None:
    links = parse_datalink(recorded("datalink.xml"))
    assert isinstance(links, DataLinks)
    assert all(isinstance(link, Link) for link in links)
    one = links.for_id(links.ids[0])
    assert len(one) == len(links)
    assert len(links.for_id("nothing")) == 0


@pytest.mark.parametrize("fallback", ["full", "skip", "fail"])
def test_an_error_row_wins_over_the_cutout_fallback(fallback: str) -> None:
    """A dataset the server doesn't know is its error, whatever the fallback says."""
    from voharvest.protocol.datalink import plan_datasets

    document = _with_error_row(recorded("datalink.xml"), "ivo://x/y?2", "NotFoundFault: gone")
    links = parse_datalink(document)
    with pytest.raises(DataLinkError, match="NotFoundFault: gone"):
        plan_datasets(links, cutout=Cutout.circle(0.1), position=(1.0, 2.0), fallback=fallback)
