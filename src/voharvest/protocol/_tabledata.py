"""The lean VOTable reader: the results table of a DAL answer as plain Python columns.

A harvest reads a few fields of each answer (the access URL, the format, a
title, a position), so building astropy's whole object tree and an astropy
Table for every answer is most of its CPU. This reader walks the document
once with lxml and converts the TABLEDATA cells of scalar fields the way
astropy does (``tests/protocol/test_lean_reader.py`` holds it to astropy on
every recorded answer of real services in the pyvo wheel):

- ``char``/``unicodeChar``: the text with surrounding white space removed, cut
  to a fixed ``arraysize``; an empty cell is ``""``.
- integers (``unsignedByte``, ``short``, ``int``, ``long``): decimal or ``0x``
  hexadecimal; ``NaN`` and the field's ``VALUES null`` are None, and so is an
  empty cell from VOTable 1.3 on (before 1.3 an empty cell is the null value,
  or 0 where the field has none).
- ``float``/``double``: an empty or unreadable cell is None; so is ``NaN``
  where the field has no ``null`` value, else the ``null`` value is; ``float``
  values pass through 32-bit precision as astropy stores them.
- ``boolean``: ``T``/``true``/``1`` and ``F``/``false``/``0``; ``?``, a space or
  an empty cell is None.

What it does not convert (numeric and boolean arrays, ``bit``, complex
numbers, multidimensional character arrays) is left to astropy: such a column
is marked *deferred* and read from astropy's table of the same document the
first time it is asked for. A document it can't take whole (BINARY, BINARY2
or FITS serialisation, a FIELD without a name, two FIELDs of one name, rows of
the wrong length, an integer out of its type's range, a cell it can't read,
a missing or unknown VOTable version) makes :func:`read_lean` return None,
and the caller parses the document with astropy instead.

Pure: no I/O; the XML parser never loads a DTD, resolves an entity or touches
the network.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from lxml import etree

__all__ = ["Field", "LeanTable", "read_lean"]


@dataclass(frozen=True, slots=True)
class Field:
    """A FIELD of a results table: its name and the metadata results use."""

    name: str
    id: str | None = None
    datatype: str = "char"
    arraysize: str | None = None
    unit: str | None = None
    ucd: str | None = None
    utype: str | None = None
    xtype: str | None = None


@dataclass(frozen=True, slots=True)
class LeanTable:
    """The results table read by :func:`read_lean`.

    ``columns[i]`` holds the values of ``fields[i]`` (None where null), or is
    None where the field is deferred to astropy. ``status`` and ``message``
    are the last QUERY_STATUS INFO in document order ('' when there is none).
    """

    fields: tuple[Field, ...]
    columns: tuple[list[Any] | None, ...]
    rows: int
    status: str
    message: str


_PARSER = etree.XMLParser(
    resolve_entities=False,
    no_network=True,
    load_dtd=False,
    huge_tree=False,
    remove_comments=True,
    remove_pis=True,
    recover=False,
)

# Each integer type's range: astropy clamps a value outside it (with a warning); we defer.
_INTEGERS = {
    "unsignedbyte": (0, 255),
    "short": (-(2**15), 2**15 - 1),
    "int": (-(2**31), 2**31 - 1),
    "long": (-(2**63), 2**63 - 1),
}
_FLOATS = {"float", "double"}
_TEXT = {"char", "unicodechar"}
_TRUE = {"T", "TRUE", "1"}
_FALSE = {"F", "FALSE", "0"}
_BOOLEAN_NULL = {"", "?", " ", "\0"}
_VERSIONS = {"1.0", "1.1", "1.2", "1.3", "1.4", "1.5"}


class _Unreadable(Exception):
    """A document or cell this reader leaves to astropy."""


def _local(element: Any) -> str:
    tag = element.tag
    return tag.rpartition("}")[2] if isinstance(tag, str) else ""


def _integer(text: str) -> int:
    """An integer cell as astropy reads it: ``0x`` hexadecimal, else decimal."""
    text = text.strip().lower()
    return int(text[2:], 16) if text.startswith("0x") else int(text, 10)


def _text_converter(arraysize: str | None) -> Callable[[list[str]], list[Any]] | None:
    if arraysize == "*":
        return lambda cells: [cell.strip() for cell in cells]
    if arraysize is None or arraysize.isdigit():
        width = int(arraysize or 1)  # no arraysize: one character
        return lambda cells: [cell.strip()[:width] for cell in cells]
    return None  # "10*", "8x*": astropy's own rules


def _integer_converter(
    bounds: tuple[int, int], null: str | None, empty_is_null: bool
) -> Callable[[list[str]], list[Any]]:
    null_value = _integer(null) if null is not None and null.strip() else None
    low, high = bounds
    # Before VOTable 1.3 an empty cell is a value (the null value, or 0), not a null.
    empty = None if empty_is_null or null_value is not None else 0

    def convert(cells: list[str]) -> list[Any]:
        values: list[Any] = []
        for cell in cells:
            text = cell.strip()
            if not text:
                values.append(empty)
                continue
            if text.lower() == "nan":
                values.append(None)
                continue
            value = _integer(text)
            if not low <= value <= high:
                raise _Unreadable(f"{value} is out of range")
            values.append(None if value == null_value else value)
        return values

    return convert


def _single(value: float) -> float:
    """``value`` at 32-bit precision (OverflowError past its range, as astropy warns)."""
    result: float = struct.unpack("f", struct.pack("f", value))[0]
    return result


def _float_converter(datatype: str, null: str | None) -> Callable[[list[str]], list[Any]]:
    single = datatype == "float"
    null_value = float(null) if null is not None and null.strip() else None

    def convert(cells: list[str]) -> list[Any]:
        values: list[Any] = []
        for cell in cells:
            try:
                value = float(cell)
            except ValueError:  # empty, or a word such as IRSA's 'null': a null
                values.append(None)
                continue
            if single:
                value = _single(value)
            if null_value is None:
                values.append(None if value != value else value)  # NaN is the null
            else:
                values.append(None if value == null_value else value)
        return values

    return convert


def _boolean(cells: list[str]) -> list[Any]:
    values: list[Any] = []
    for cell in cells:
        text = cell.strip().upper()
        if text in _TRUE:
            values.append(True)
        elif text in _FALSE:
            values.append(False)
        elif text in _BOOLEAN_NULL:
            values.append(None)
        else:
            raise _Unreadable(f"not a boolean: {cell!r}")
    return values


def _converter(
    field: Field, null: str | None, version_1_3: bool
) -> Callable[[list[str]], list[Any]] | None:
    """How to turn a column's cell texts into values; None defers it to astropy."""
    datatype = field.datatype.lower()
    if datatype in _TEXT:
        return _text_converter(field.arraysize)
    if field.arraysize not in (None, "1"):
        return None
    if datatype in _INTEGERS:
        return _integer_converter(_INTEGERS[datatype], null, version_1_3)
    if datatype in _FLOATS:
        return _float_converter(datatype, null)
    if datatype == "boolean":
        return _boolean
    return None


def _results_table(root: Any) -> tuple[Any, Any] | None:
    """(results RESOURCE, its first TABLE) as astropy chooses them, or None."""
    resources = [child for child in root if _local(child) == "RESOURCE"]
    if not resources:
        return None
    resource = next(
        (r for r in resources if (r.get("type") or "").lower() == "results"), resources[0]
    )
    tables = [child for child in resource if _local(child) == "TABLE"]
    if not tables:
        tables = [
            table
            for inner in resource
            if _local(inner) == "RESOURCE"
            for table in inner
            if _local(table) == "TABLE"
        ]
    return (resource, tables[0]) if tables else (resource, None)


def _status(root: Any, resource: Any, table: Any) -> tuple[str, str]:
    """The last QUERY_STATUS INFO at the root, in the results RESOURCE or in its own TABLE."""
    owners = [root, resource] + ([table] if table.getparent() is resource else [])
    status = message = ""
    for info in root.iter("{*}INFO"):
        if (info.get("name") or "").upper() != "QUERY_STATUS":
            continue
        parent = info.getparent()
        if any(parent is owner for owner in owners):
            status = (info.get("value") or "").strip().upper()
            message = (info.text or "").strip()
    return status, message


def _fields(table: Any) -> tuple[list[Field], list[str | None]]:
    fields: list[Field] = []
    nulls: list[str | None] = []
    for element in table:
        if _local(element) != "FIELD":
            continue
        name = element.get("name")
        if not name:
            raise _Unreadable("a FIELD without a name")
        null = None
        for values in element:
            if _local(values) == "VALUES":
                null = values.get("null")
        fields.append(
            Field(
                name=name,
                id=element.get("ID"),
                datatype=element.get("datatype") or "char",
                arraysize=element.get("arraysize"),
                unit=element.get("unit"),
                ucd=element.get("ucd"),
                utype=element.get("utype"),
                xtype=element.get("xtype"),
            )
        )
        nulls.append(null)
    if len({f.name for f in fields}) != len(fields):
        raise _Unreadable("two FIELDs of one name")
    return fields, nulls


def _cells(table: Any, width: int) -> list[list[str]] | None:
    """The TABLEDATA cell texts row by row; None for another serialisation."""
    data = next((child for child in table if _local(child) == "DATA"), None)
    if data is None:
        return []
    rows: list[list[str]] = []
    for serialisation in data:
        name = _local(serialisation)
        if name == "INFO":
            continue
        if name != "TABLEDATA":
            return None
        for tr in serialisation:
            row = [td.text or "" for td in tr]
            if len(row) != width:
                raise _Unreadable("a row of the wrong length")
            rows.append(row)
    return rows


def _document(data: bytes) -> Any:
    return etree.fromstring(data, _PARSER)


def read_lean(data: bytes) -> LeanTable | None:
    """The results table of a VOTable document, or None where astropy must read it.

    Raises ``lxml.etree.XMLSyntaxError`` for a document that isn't well-formed
    XML; the caller turns that into its own error.
    """
    root = _document(data)
    version = (root.get("version") or "").strip()
    found = _results_table(root)
    if found is None or version not in _VERSIONS:
        return None
    resource, table = found
    if table is None:
        return None  # astropy says what is missing
    status, message = _status(root, resource, table)
    try:
        fields, nulls = _fields(table)
        cells = _cells(table, len(fields))
        if cells is None or not fields:
            return None
        by_column: Sequence[Sequence[str]] = list(zip(*cells, strict=True)) if cells else []
        columns: list[list[Any] | None] = []
        for index, (field, null) in enumerate(zip(fields, nulls, strict=True)):
            convert = _converter(field, null, version >= "1.3")
            if convert is None:
                columns.append(None)
            else:
                columns.append(convert(list(by_column[index])) if cells else [])
    except (_Unreadable, ValueError, OverflowError, TypeError):
        return None
    return LeanTable(tuple(fields), tuple(columns), len(cells), status, message)
