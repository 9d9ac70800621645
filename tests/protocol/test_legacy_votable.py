"""VOTables with a document type declaration, as VOTable 1.0/1.1 services write them.

``<!DOCTYPE VOTABLE SYSTEM "http://us-vo.org/xml/VOTable.dtd">`` (HEASARC-era
Java services, STIL's VOTable 1.0 writer, IRSA) only names an external DTD: it
is read, never fetched. An internal subset, an entity declaration or a
reference to an entity beyond XML's five is still refused, by every XML reader
(VOTable, service descriptors, UWS, Sesame).

Oracles: pyvo reads the recorded SIA 1.0 answer of its wheel; astropy reads
IRSA's recorded answer, which carries the DOCTYPE as the service sent it.
"""

from __future__ import annotations

import io
import math
from importlib import resources

import numpy as np
import pytest
from astropy.io.votable import parse as astropy_parse
from pyvo.dal.sia import SIAResults as PyvoSIAResults

from voharvest._exceptions import FormatError
from voharvest.protocol import sesame, tap, votable
from voharvest.protocol._descriptors import descriptors_of

from ..recorded import pyvo_data

SYSTEM = b'<!DOCTYPE VOTABLE SYSTEM "http://us-vo.org/xml/VOTable.dtd">'
PUBLIC = (
    b'<!DOCTYPE VOTABLE PUBLIC "-//IVOA//DTD VOTable 1.1//EN"'
    b" 'http://www.ivoa.net/xml/VOTable/VOTable-1.1.dtd' >"
)
UWS = "http://www.ivoa.net/xml/UWS/v1.0"


def sia1_answer() -> bytes:
    """pyvo's recorded SIA 1.0 answer."""
    return pyvo_data("pyvo.dal.tests", "sia", "dataset.xml")


def with_doctype(data: bytes, doctype: bytes, *, legacy: bool = False) -> bytes:
    """``data`` with ``doctype`` before its root; ``legacy``: written as VOTable 1.1
    without a namespace, as the services that send a DOCTYPE write it."""
    start = data.index(b"<VOTABLE")
    end = data.index(b">", start) + 1
    root = b'<VOTABLE version="1.1">' if legacy else data[start:end]
    return data[:start] + doctype + b"\n" + root + data[end:]


def pyvo_records(data: bytes) -> PyvoSIAResults:
    return PyvoSIAResults(astropy_parse(io.BytesIO(data)))


def same(ours: object, theirs: object) -> bool:
    if theirs is np.ma.masked or theirs is None:
        return ours is None
    if isinstance(theirs, np.ndarray):
        return np.array_equal(np.asarray(ours), theirs)
    if isinstance(theirs, float | np.floating) and math.isnan(theirs):
        return ours is None or (isinstance(ours, float) and math.isnan(ours))
    if isinstance(theirs, bytes):
        theirs = theirs.decode()
    return bool(ours == theirs)


@pytest.mark.parametrize("legacy", [False, True], ids=["as-recorded", "votable-1.1"])
@pytest.mark.parametrize("doctype", [SYSTEM, PUBLIC], ids=["SYSTEM", "PUBLIC"])
def test_a_recorded_sia1_answer_with_an_external_dtd_reads_as_pyvo_reads_it(
    doctype: bytes, legacy: bool
) -> None:
    data = with_doctype(sia1_answer(), doctype, legacy=legacy)
    ours = votable.parse_sia(data, url="http://sia.example.org/sia")
    theirs = pyvo_records(data)
    assert ours.version == 1
    assert len(ours) == len(theirs) == 2
    assert ours.fieldnames == list(theirs.fieldnames)
    for mine, record in zip(ours, theirs, strict=True):
        assert mine.getdataurl() == record.getdataurl() == "http://example.com/querydata/image.fits"
        assert mine.title == record.title
        assert mine.format == record.format
        assert mine.ra == record.pos.ra.deg
        assert mine.dec == record.pos.dec.deg
        assert mine.filesize == record.filesize
        for name in theirs.fieldnames:
            assert same(mine[name], record[name]), name
    # ... and exactly as the same answer without the DOCTYPE
    plain = votable.parse_sia(sia1_answer())
    assert [r.to_dict().keys() for r in plain] == [r.to_dict().keys() for r in ours]


def test_irsa_answer_with_its_doctype_reads_as_astropy_reads_it() -> None:
    """A real IRSA answer (in astropy's test data), DOCTYPE and &apos; as the service sent them."""
    data = (resources.files("astropy.io.votable.tests") / "data" / "irsa-nph-m31.xml").read_bytes()
    assert data.splitlines()[1] == SYSTEM
    ours = votable.parse_table(data)
    theirs = astropy_parse(io.BytesIO(data)).get_first_table().to_table(use_names_over_ids=True)
    assert len(ours) == len(theirs) == 18
    assert ours.fieldnames == theirs.colnames
    for name in theirs.colnames:
        assert [same(ours[i][name], theirs[name][i]) for i in range(len(theirs))] == [True] * 18


def test_the_dtd_is_never_fetched_nor_needed_offline() -> None:
    # A DTD at an address nothing listens on: a fetch would fail or hang.
    doctype = b'<!DOCTYPE VOTABLE SYSTEM "http://127.0.0.1:9/VOTable.dtd">'
    assert len(votable.parse_sia(with_doctype(sia1_answer(), doctype))) == 2


@pytest.mark.parametrize(
    "prolog",
    [
        b'<?xml version="1.0"?>\n<!-- a comment -->\n' + SYSTEM + b"\n<!-- after -->\n",
        b"\xef\xbb\xbf" + SYSTEM,
        b'<!DOCTYPE VOTABLE SYSTEM "VOTable.dtd">',
        b"<!DOCTYPE VOTABLE>",
        b'<!DOCTYPE foo SYSTEM "http://us-vo.org/xml/VOTable.dtd">',
    ],
    ids=["comments-around", "bom", "relative-dtd", "no-external-id", "other-name"],
)
def test_doctype_forms_that_only_name_a_dtd_are_read(prolog: bytes) -> None:
    body = with_doctype(sia1_answer(), b"", legacy=True)
    body = body[body.index(b"<VOTABLE") :]
    assert len(votable.parse_sia(prolog + body)) == 2


REFUSED = {
    "internal subset": b'<!DOCTYPE VOTABLE [<!ENTITY t "Test">]>',
    "empty internal subset": b"<!DOCTYPE VOTABLE []>",
    "external and internal": b'<!DOCTYPE VOTABLE SYSTEM "x.dtd" [<!ELEMENT VOTABLE ANY>]>',
    "parameter entity": b'<!DOCTYPE VOTABLE [<!ENTITY % r SYSTEM "http://127.0.0.1:9/r"> %r;]>',
    "malformed": b'<!DOCTYPE VOTABLE SYSTEM "unterminated>',
}


@pytest.mark.parametrize("doctype", list(REFUSED.values()), ids=list(REFUSED))
def test_internal_subsets_are_still_refused(doctype: bytes) -> None:
    with pytest.raises(FormatError, match="document type declaration"):
        votable.parse_sia(with_doctype(sia1_answer(), doctype))


@pytest.mark.parametrize("where", ["cell", "attribute", "description"])
def test_an_undeclared_entity_after_an_external_dtd_is_refused(where: str) -> None:
    # astropy and pyvo skip such a reference silently (its text is lost); we refuse it.
    data = with_doctype(sia1_answer(), SYSTEM)
    if where == "cell":
        data = data.replace(b"<TD>Test Observation</TD>", b"<TD>Test&nbsp;Observation</TD>", 1)
    elif where == "attribute":
        data = data.replace(b'name="mime"', b'name="mi&shy;me"', 1)
    else:
        data = data.replace(b"Synthetic name", b"Synthetic &ouml; name", 1)
    with pytest.raises(FormatError, match="undeclared entity"):
        votable.parse_sia(data)


def test_an_entity_declaration_outside_the_doctype_is_refused() -> None:
    data = with_doctype(sia1_answer(), SYSTEM).replace(b"<RESOURCE", b'<!ENTITY t "x"><RESOURCE', 1)
    with pytest.raises(FormatError, match="entity declaration"):
        votable.parse_sia(data)


def test_the_five_xml_entities_and_character_references_are_fine() -> None:
    data = with_doctype(sia1_answer(), SYSTEM).replace(
        b"<TD>Test Observation</TD>",
        b"<TD>&lt;&gt;&amp;&apos;&quot;&#233;&#x263A;<![CDATA[&raw;]]></TD><!-- &c; -->",
        1,
    )
    titles = [record.title for record in votable.parse_sia(data)]
    assert titles == ["<>&'\"\u00e9\u263a&raw;", "Test Observation"]


def test_without_a_doctype_an_undeclared_entity_is_malformed() -> None:
    data = sia1_answer().replace(b"<TD>Test Observation</TD>", b"<TD>x&nbsp;y</TD>", 1)
    with pytest.raises(FormatError, match="malformed"):
        votable.parse_sia(data)


def test_an_html_page_with_a_doctype_is_named_as_html() -> None:
    page = b"<!doctype html>\n<html><body><h1>502 Bad Gateway</h1></body></html>"
    with pytest.raises(FormatError, match="<html>") as caught:
        votable.parse_sia(page)
    assert "502 Bad Gateway" in caught.value.snippet


# -- the same rule in the other XML readers -------------------------------------------------

DESCRIPTOR = (
    b'<RESOURCE type="meta" utype="adhoc:service" ID="links">'
    b'<PARAM name="accessURL" datatype="char" arraysize="*" value="http://h/links"/>'
    b'<PARAM name="standardID" datatype="char" arraysize="*" '
    b'value="ivo://ivoa.net/std/DataLink#links-1.0"/>'
    b"</RESOURCE></VOTABLE>"
)


def test_service_descriptors_of_a_votable_with_an_external_dtd_are_read() -> None:
    data = with_doctype(sia1_answer(), SYSTEM, legacy=True)
    data = data.replace(b"</VOTABLE>", DESCRIPTOR)
    (descriptor,) = descriptors_of(data)
    assert descriptor.access_url == "http://h/links"
    results = votable.parse_sia(data)
    assert results.links_descriptor == descriptor
    with pytest.raises(FormatError, match="internal subset"):
        descriptors_of(with_doctype(sia1_answer(), REFUSED["internal subset"]) + DESCRIPTOR)
    entity = data.replace(b"http://h/links", b"http://h/&ent;")
    with pytest.raises(FormatError, match="undeclared entity"):
        descriptors_of(entity)


def job(doctype: str, job_id: str = "42") -> bytes:
    return (
        f'<?xml version="1.0"?>{doctype}<uws:job xmlns:uws="{UWS}">'
        f"<uws:jobId>{job_id}</uws:jobId><uws:phase>COMPLETED</uws:phase></uws:job>"
    ).encode()


def test_uws_job_with_an_external_dtd_is_read_and_entities_refused() -> None:
    parsed = tap.parse_job(job('<!DOCTYPE uws:job SYSTEM "http://127.0.0.1:9/uws.dtd">'))
    assert (parsed.job_id, parsed.phase) == ("42", "COMPLETED")
    with pytest.raises(FormatError, match="internal subset"):
        tap.parse_job(job('<!DOCTYPE uws:job [<!ENTITY i "1">]>', "&i;"))
    with pytest.raises(FormatError, match="undeclared entity"):
        tap.parse_job(job('<!DOCTYPE uws:job SYSTEM "uws.dtd">', "&i;"))


def sesame_answer(doctype: str, ra: str = "202.4696") -> bytes:
    return (
        f'<?xml version="1.0" encoding="UTF-8"?>{doctype}<Sesame><Target><name>M51</name>'
        f"<Resolver><jradeg>{ra}</jradeg><jdedeg>47.1952</jdedeg></Resolver></Target></Sesame>"
    ).encode()


def test_sesame_with_an_external_dtd_is_read_and_entities_refused() -> None:
    doctype = '<!DOCTYPE Sesame SYSTEM "http://127.0.0.1:9/sesame.dtd">'
    assert sesame.parse(sesame_answer(doctype), "M51") == (202.4696, 47.1952)
    with pytest.raises(FormatError, match="undeclared entity"):
        sesame.parse(sesame_answer(doctype, "&ra;"), "M51")
    with pytest.raises(FormatError, match="internal subset"):
        sesame.parse(sesame_answer('<!DOCTYPE Sesame [<!ENTITY ra "1">]>', "&ra;"), "M51")
