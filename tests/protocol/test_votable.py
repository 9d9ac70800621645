"""VOTable answers: the IVOA status conventions and answers that aren't VOTables at all."""

from __future__ import annotations

import time
import warnings

import pytest

from voharvest import FormatError, OverflowWarning, QueryError
from voharvest.protocol import votable

HEAD = (
    b'<?xml version="1.0"?>\n<VOTABLE version="1.4" xmlns="http://www.ivoa.net/xml/VOTable/v1.3">'
)
TABLE = (
    b'<TABLE><FIELD name="access_url" datatype="char" arraysize="*"/>'
    b'<FIELD name="access_format" datatype="char" arraysize="*"/>'
    b"<DATA><TABLEDATA>"
    b"<TR><TD>http://h/a.fits</TD><TD>image/fits</TD></TR>"
    b"<TR><TD>http://h/b.jpg</TD><TD>image/jpeg</TD></TR>"
    b"</TABLEDATA></DATA></TABLE>"
)


def info(value: str, text: str = "") -> bytes:
    return f'<INFO name="QUERY_STATUS" value="{value}">{text}</INFO>'.encode()


def doc(*, root_before=b"", resource_before=b"", table=TABLE, resource_after=b"", root_after=b""):
    return (
        HEAD
        + root_before
        + b'<RESOURCE type="results">'
        + resource_before
        + table
        + resource_after
        + b"</RESOURCE>"
        + root_after
        + b"</VOTABLE>"
    )


def test_ok_answer():
    results = votable.parse_sia(doc(resource_before=info("OK")))
    assert len(results) == 2
    assert not results.overflow
    assert [r.format for r in results] == ["image/fits", "image/jpeg"]


def test_error_carries_the_servers_message():
    data = doc(resource_before=info("ERROR", "Invalid POS: 'abc' is not a position"))
    with pytest.raises(QueryError, match="Invalid POS") as caught:
        votable.parse_sia(data, url="http://h/sia?POS=abc")
    assert caught.value.url == "http://h/sia?POS=abc"
    assert "http://h/sia?POS=abc" in str(caught.value)


def test_error_document_without_a_table_is_a_query_error_not_a_format_error():
    data = (
        HEAD + b'<RESOURCE type="results">' + info("ERROR", "bad query") + b"</RESOURCE></VOTABLE>"
    )
    with pytest.raises(QueryError, match="bad query"):
        votable.parse_table(data)


def test_error_at_the_root_only():
    data = HEAD + info("ERROR", "service down for maintenance") + b"</VOTABLE>"
    with pytest.raises(QueryError, match="maintenance"):
        votable.parse_table(data)


def test_trailing_error_after_the_table_wins_over_the_leading_ok():
    data = doc(resource_before=info("OK"), resource_after=info("ERROR", "timeout while streaming"))
    with pytest.raises(QueryError, match="timeout while streaming"):
        votable.parse_table(data)


def test_trailing_error_at_the_root_after_the_resource_wins():
    data = doc(resource_before=info("OK"), root_after=info("ERROR", "late failure"))
    with pytest.raises(QueryError, match="late failure"):
        votable.parse_table(data)


def test_leading_root_error_is_overridden_by_a_later_ok():
    # "The last INFO wins", in document order, wherever it stands.
    data = doc(root_before=info("ERROR", "stale"), resource_before=info("OK"))
    assert len(votable.parse_table(data)) == 2


def test_trailing_overflow_warns_and_flags():
    data = doc(resource_before=info("OK"), resource_after=info("OVERFLOW"))
    with pytest.warns(OverflowWarning, match="truncated"):
        results = votable.parse_sia(data, url="http://h/sia")
    assert results.overflow
    assert len(results) == 2


def test_status_inside_the_table():
    table = TABLE.replace(b"</TABLE>", info("OVERFLOW") + b"</TABLE>")
    with pytest.warns(OverflowWarning):
        assert votable.parse_table(doc(table=table)).overflow


def test_no_status_at_all_is_ok():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        results = votable.parse_table(doc())
    assert not results.overflow and len(results) == 2


@pytest.mark.parametrize(
    ("body", "quoted"),
    [
        (b"<!DOCTYPE html><html><body><h1>502 Bad Gateway</h1></body></html>", "502 Bad Gateway"),
        (b"<html><head><title>Service Unavailable</title></head></html>", "Service Unavailable"),
        (b"java.lang.NullPointerException at org.example.Sia.run", "NullPointerException"),
        (b'{"error": "rate limited"}', "rate limited"),
    ],
)
def test_not_a_votable_quotes_the_start_of_the_body(body, quoted):
    with pytest.raises(FormatError) as caught:
        votable.parse_sia(body, url="http://h/sia")
    assert quoted in caught.value.snippet
    assert quoted in str(caught.value)


def test_empty_body():
    for body in (b"", b"   \n"):
        with pytest.raises(FormatError, match="empty"):
            votable.parse_table(body)


def test_truncated_votable():
    data = doc(resource_before=info("OK"))
    with pytest.raises(FormatError, match="malformed") as caught:
        votable.parse_table(data[: len(data) // 2])
    assert caught.value.snippet.startswith('<?xml version="1.0"?>')


def test_votable_without_table_or_resource():
    with pytest.raises(FormatError, match="no TABLE"):
        votable.parse_table(
            HEAD + b'<RESOURCE type="results">' + info("OK") + b"</RESOURCE></VOTABLE>"
        )
    with pytest.raises(FormatError, match="no RESOURCE"):
        votable.parse_table(HEAD + b"</VOTABLE>")


def test_entity_expansion_is_refused_quickly():
    bomb = (
        b'<?xml version="1.0"?><!DOCTYPE VOTABLE [<!ENTITY a "aaaaaaaaaa">'
        + b"".join(
            f'<!ENTITY {chr(98 + i)} "{("&" + chr(97 + i) + ";") * 10}">'.encode() for i in range(8)
        )
        + b']><VOTABLE version="1.4"><RESOURCE><TABLE><FIELD name="x" datatype="char" '
        b'arraysize="*"/><DATA><TABLEDATA><TR><TD>&i;</TD></TR></TABLEDATA></DATA></TABLE>'
        b"</RESOURCE></VOTABLE>"
    )
    start = time.perf_counter()
    with pytest.raises(FormatError, match="document type declaration"):
        votable.parse_table(bomb)
    assert time.perf_counter() - start < 1.0


def test_external_entity_is_refused():
    data = (
        b'<?xml version="1.0"?><!DOCTYPE VOTABLE [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
        + HEAD[len(b'<?xml version="1.0"?>\n') :]
        + b"</VOTABLE>"
    )
    with pytest.raises(FormatError) as caught:
        votable.parse_table(data)
    assert "root:" not in str(caught.value)


def test_comments_and_processing_instructions_before_the_root_are_fine():
    data = (
        b"\xef\xbb\xbf"
        + b"<!-- made by DaCHS --><?xml-stylesheet href='x.xsl'?>"
        + doc()[len(b'<?xml version="1.0"?>') :]
    )
    assert len(votable.parse_table(data)) == 2


def test_parse_sia_needs_an_access_reference():
    table = (
        b'<TABLE><FIELD name="ra" datatype="double"/>'
        b"<DATA><TABLEDATA><TR><TD>1</TD></TR></TABLEDATA></DATA></TABLE>"
    )
    with pytest.raises(FormatError, match="not an SIA answer"):
        votable.parse_sia(doc(table=table))


def test_parse_registry_needs_registry_columns():
    with pytest.raises(FormatError, match="not a registry answer"):
        votable.parse_registry(doc())


def test_records_index_slice_and_table():
    results = votable.parse_sia(doc())
    assert results[-1].getdataurl() == "http://h/b.jpg"
    assert [r.getdataurl() for r in results[0:1]] == ["http://h/a.fits"]
    with pytest.raises(IndexError):
        results[2]
    table = results.to_table()
    assert list(table["access_url"]) == ["http://h/a.fits", "http://h/b.jpg"]
    assert results[0]["ACCESS_FORMAT"] == "image/fits"
    assert results[0].get("missing") is None
    assert results[1].to_dict() == {"access_url": "http://h/b.jpg", "access_format": "image/jpeg"}
    with pytest.raises(KeyError, match="access_url"):
        results.column("nope")


def test_bytes_only():
    with pytest.raises(TypeError):
        votable.parse_table("<VOTABLE/>")  # type: ignore[arg-type]
