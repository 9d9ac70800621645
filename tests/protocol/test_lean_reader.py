"""The lean VOTable reader against astropy: the same fields, values and status.

astropy is the oracle: on every VOTable in pyvo's recorded answers of real
services (and on documents built to hit each conversion rule), the lean
reader's answer equals astropy's, value for value.
"""

from __future__ import annotations

import dataclasses
import io
import math
import pickle
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import pyvo
from astropy import units as u
from astropy.io.votable import from_table
from astropy.io.votable.converters import get_converter
from astropy.table import MaskedColumn, Table

from voharvest import FormatError, QueryError
from voharvest.protocol import votable
from voharvest.protocol._lean import Field, read_lean


def _recorded_votables() -> list[Path]:
    root = Path(pyvo.__file__).parent
    found = []
    for path in sorted(root.rglob("tests/data/**/*.xml")):
        head = path.read_bytes()[:4096]
        if b"<VOTABLE" in head or b":VOTABLE" in head:
            found.append(path)
    return found


RECORDED = _recorded_votables()


def _astropy(data: bytes) -> votable.Decoded | Exception:
    try:
        votable.check_prolog(data)
        return votable._decode_with_astropy(data, None, True)
    except Exception as exc:
        return exc


def _lean(data: bytes) -> votable.Decoded | Exception:
    try:
        return votable.decode(data)
    except Exception as exc:
        return exc


def _plain(f: Field) -> Field:
    return dataclasses.replace(f, id=None, unit=None, arraysize=f.arraysize or "1")


def _unit(text: str | None) -> Any:
    if text is None:
        return None
    return u.Unit(text, format="vounit", parse_strict="silent")


def _same_value(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return (
            type(a) is type(b)
            and np.array_equal(np.ma.getdata(a), np.ma.getdata(b), equal_nan=True)
            and np.array_equal(np.ma.getmaskarray(a), np.ma.getmaskarray(b))
        )
    return type(a) is type(b) and a == b


def assert_same(lean: votable.Decoded | Exception, oracle: votable.Decoded | Exception) -> None:
    if isinstance(oracle, Exception):
        assert isinstance(lean, type(oracle)), (lean, oracle)
        assert str(lean) == str(oracle)
        return
    assert not isinstance(lean, Exception), lean
    assert len(lean.fields) == len(oracle.fields)
    for ours, theirs in zip(lean.fields, oracle.fields, strict=True):
        # astropy gives a FIELD without an ID one made from its name, and its units
        # are astropy's rendering of the unit text.
        # (and a character FIELD without an arraysize one of "1").
        assert _plain(ours) == _plain(theirs)
        assert ours.id in (None, theirs.id)
        assert _unit(ours.unit) == _unit(theirs.unit)
    assert lean.rows == oracle.rows
    assert lean.status == oracle.status
    assert lean.descriptors == oracle.descriptors
    assert lean.field_ids.items() <= oracle.field_ids.items()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # OVERFLOW, and astropy's spec warnings
        lean_results = votable.table_results(lean)
        oracle_results = votable.table_results(oracle)
        _compare_columns(lean_results, oracle_results)


def _compare_columns(lean_results: Any, oracle_results: Any) -> None:
    for name in oracle_results.fieldnames:
        ours, theirs = lean_results.column(name), oracle_results.column(name)
        assert len(ours) == len(theirs)
        for row, (a, b) in enumerate(zip(ours, theirs, strict=True)):
            assert _same_value(a, b), (name, row, a, b)


def test_the_recorded_answers_are_many_and_mostly_lean():
    assert len(RECORDED) >= 30
    lean = [p for p in RECORDED if read_lean(p.read_bytes()) is not None]
    # Most real answers are TABLEDATA the lean reader takes whole.
    assert len(lean) >= 0.6 * len(RECORDED)


@pytest.mark.parametrize("path", RECORDED, ids=lambda p: f"{p.parent.parent.name}/{p.name}")
def test_every_recorded_answer_decodes_as_astropy_reads_it(path: Path):
    data = path.read_bytes()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert_same(_lean(data), _astropy(data))


def _document(fields: str, rows: str, status: str = "") -> bytes:
    return (
        '<?xml version="1.0"?>\n<VOTABLE version="1.4" '
        'xmlns="http://www.ivoa.net/xml/VOTable/v1.3"><RESOURCE type="results">'
        f"{status}<TABLE>{fields}<DATA><TABLEDATA>{rows}</TABLEDATA></DATA></TABLE>"
        "</RESOURCE></VOTABLE>"
    ).encode()


CELLS = [
    ('<FIELD name="c" datatype="char" arraysize="*"/>', [" ab c ", "", "x\ny", "&lt;&amp;"]),
    ('<FIELD name="c4" datatype="char" arraysize="4"/>', ["abcdefg", "", "a", " ab "]),
    ('<FIELD name="c1" datatype="char"/>', ["xy", "", "b", " "]),
    ('<FIELD name="u" datatype="unicodeChar" arraysize="*"/>', ["&#233;t&#233;", "", "c", "ü"]),
    ('<FIELD name="i" datatype="int"><VALUES null="-999"/></FIELD>', ["-999", "", "0x1F", "7"]),
    ('<FIELD name="l" datatype="long"/>', ["123456789012", "", "-5", "+3"]),
    ('<FIELD name="s" datatype="short"><VALUES null="0"/></FIELD>', ["7", "", "-7", "0"]),
    ('<FIELD name="b" datatype="unsignedByte"/>', ["255", "", "0", " 12 "]),
    ('<FIELD name="f" datatype="float"/>', ["0.1", "", "NaN", "-inf"]),
    ('<FIELD name="d" datatype="double"/>', ["0.1", "", "+Inf", "1e400"]),
    ('<FIELD name="d2" datatype="double" unit="deg"/>', [" 1.5 ", "nan", "-0", "3"]),
    ('<FIELD name="t" datatype="boolean"/>', ["T", "", "?", "false"]),
    ('<FIELD name="t2" datatype="boolean"/>', ["1", "0", "F", "true"]),
    ('<FIELD name="ia" datatype="int" arraysize="*"/>', ["1 2 3", "", "4", "5 6"]),
    ('<FIELD name="da" datatype="double" arraysize="2"/>', ["1.5 2.5", "", "1 NaN", "1 2"]),
]


def test_each_conversion_rule_matches_astropy():
    fields = "".join(f for f, _ in CELLS)
    rows = "".join(
        "<TR>" + "".join(f"<TD>{cells[r]}</TD>" for _, cells in CELLS) + "</TR>" for r in range(4)
    )
    data = _document(fields, rows, '<INFO name="QUERY_STATUS" value="OK"/>')
    lean = read_lean(data)
    assert lean is not None
    # Arrays are left to astropy; every scalar column is read by the lean reader.
    deferred = {f.name for f, c in zip(lean.fields, lean.columns, strict=True) if c is None}
    assert deferred == {"ia", "da"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert_same(_lean(data), _astropy(data))


def test_a_trailing_query_status_wins_as_with_astropy():
    data = _document(
        '<FIELD name="a" datatype="int"/>',
        "<TR><TD>1</TD></TR>",
        '<INFO name="QUERY_STATUS" value="OK"/>',
    ).replace(b"</TABLE>", b'</TABLE><INFO name="QUERY_STATUS" value="OVERFLOW"/>')
    lean, oracle = _lean(data), _astropy(data)
    assert_same(lean, oracle)
    assert isinstance(lean, votable.Decoded) and lean.status.is_overflow
    error = data.replace(b'value="OVERFLOW"/>', b'value="ERROR">ran out of time</INFO>')
    with pytest.raises(QueryError, match="ran out of time"):
        votable.decode(error)


def _typed_table() -> Table:
    return Table(
        {
            "access_url": ["http://h/a.fits", "http://h/b.fits", "", "http://h/é"],
            "code": MaskedColumn(["ab", "c", "", "d"], mask=[False, True, False, False]),
            "i": MaskedColumn(np.array([1, -2, 3, 4], dtype=np.int32), mask=[0, 1, 0, 0]),
            "s": np.array([1, -2, 3, 32767], dtype=np.int16),
            "b": np.array([0, 255, 3, 4], dtype=np.uint8),
            "l": np.array([2**40, -1, 0, 5], dtype=np.int64),
            "f": MaskedColumn(
                np.array([0.1, np.nan, 2.5, -1], dtype=np.float32), mask=[0, 0, 1, 0]
            ),
            "d": MaskedColumn([0.1, np.nan, np.inf, -1e300], mask=[0, 0, 0, 1]),
            "t": MaskedColumn([True, False, True, False], mask=[0, 0, 1, 0]),
            "naxis": np.array([[1, 2], [3, 4], [5, 6], [7, 8]], dtype=np.int32),
        }
    )


@pytest.mark.parametrize("serialisation", ["tabledata", "binary", "binary2"])
def test_every_serialisation_of_one_table_decodes_as_astropy_reads_it(serialisation: str):
    vot = from_table(_typed_table())
    vot.get_first_table().format = serialisation
    # BINARY has no null flags: a masked integer needs a null value.
    vot.get_first_table().get_field_by_id("i").values.null = -99
    # astropy writes a bool column as 'bit' (left to astropy); make it a VOTable boolean.
    flag = vot.get_first_table().get_field_by_id("t")
    flag.datatype = "boolean"
    flag.converter = get_converter(flag)
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # astropy's own spec warnings while writing
        vot.to_xml(buffer)
    data = buffer.getvalue()
    lean = read_lean(data)
    assert lean is not None
    assert lean.columns[-1] is None  # the array column is left to astropy
    assert all(column is not None for column in lean.columns[:-1])
    assert [f.datatype for f in lean.fields][-2:] == ["boolean", "int"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert_same(_lean(data), _astropy(data))


def test_what_the_lean_reader_leaves_goes_to_astropy():
    by_reference = _document('<FIELD name="a" datatype="int"/>', "").replace(
        b"<TABLEDATA></TABLEDATA>",
        b'<BINARY><STREAM href="http://example.invalid/table.bin"/></BINARY>',
    )
    assert read_lean(by_reference) is None
    # Two FIELDs of one name: astropy's renaming rules, not ours.
    twice = _document(
        '<FIELD name="a" datatype="int"/><FIELD name="a" datatype="int"/>',
        "<TR><TD>1</TD><TD>2</TD></TR>",
    )
    assert read_lean(twice) is None
    names = votable.table_results(votable.decode(twice)).fieldnames
    assert len(names) == 2 and len(set(names)) == 2
    # No VOTable version: astropy's assumptions about empty cells, not ours.
    unversioned = _document('<FIELD name="a" datatype="int"/>', "<TR><TD></TD></TR>").replace(
        b' version="1.4"', b""
    )
    assert read_lean(unversioned) is None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert_same(_lean(unversioned), _astropy(unversioned))


def test_malformed_documents_fail_as_before():
    broken = _document('<FIELD name="a" datatype="int"/>', "<TR><TD>1</TD></TR>")[:-20]
    with pytest.raises(FormatError, match="malformed VOTable"):
        votable.decode(broken)
    no_fields = _document("", "")
    with pytest.raises(FormatError, match="no FIELD"):
        votable.decode(no_fields)


def test_to_table_and_deferred_columns_come_from_astropy_on_demand():
    masked = Table(
        {
            "access_url": ["http://h/a.fits", "http://h/b.fits"],
            "scale": MaskedColumn([[1.0, 2.0], [3.0, 4.0]], mask=[[False, False], [False, True]]),
        }
    )
    buffer = io.BytesIO()
    from_table(masked).to_xml(buffer)
    decoded = votable.decode(buffer.getvalue())
    results = votable.table_results(decoded)
    assert decoded.columns[1] is None  # an array: left to astropy
    assert results.column("scale")[0].tolist() == [1.0, 2.0]
    assert math.isnan(results.column("scale")[1][1])
    table = results.to_table()
    assert table.colnames == ["access_url", "scale"]
    assert list(table["access_url"]) == ["http://h/a.fits", "http://h/b.fits"]


def test_a_decoded_answer_pickles_without_its_document():
    data = _document('<FIELD name="a" datatype="double" ucd="pos.eq.ra"/>', "<TR><TD>1</TD></TR>")
    decoded = votable.decode(data, keep_source=False)
    assert decoded.source is None
    back = pickle.loads(pickle.dumps(decoded))
    assert back == decoded
    assert back.fields[0].ucd == "pos.eq.ra"
    assert back.with_source(data).to_table()["a"][0] == 1.0
