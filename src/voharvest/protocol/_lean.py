"""The lean VOTable reader: the results table of a DAL answer as plain Python columns.

A harvest reads a few fields of each answer (the access URL, the format, a
title, a position), so building astropy's whole object tree and an astropy
Table for every answer is most of its CPU. This reader walks the document
once with lxml and converts the TABLEDATA cells, or the BINARY and BINARY2
streams (base64 in the document, as DaCHS sends them), of scalar fields the
way astropy does (``tests/protocol/test_lean_reader.py`` holds it to astropy
on every recorded answer of real services in the pyvo wheel, and
``tests/integration/test_lean_reader.py`` on DaCHS's answers). In TABLEDATA:

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

In BINARY and BINARY2 the same rules hold for the values (text ends at the first
NUL of a fixed-width field; integers and floats are null at the ``null`` value,
floats at NaN where there is none), and BINARY2's null flags make any field
but a character one None.

What it does not convert (numeric and boolean arrays, ``bit``, complex
numbers, multidimensional character arrays) is left to astropy: such a column
is marked *deferred* and read from astropy's table of the same document the
first time it is asked for. A document it can't take whole (a FITS
serialisation, a stream by reference, in BINARY a ``bit`` field or a
multidimensional variable-length array, a FIELD without a name, two FIELDs of
one name, rows of the wrong length, an integer out of its type's range, a cell it can't read,
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

from ._binary import binary_columns
from ._cells import INTEGERS, TEXT, Field, Unreadable, integer, local
from ._descriptors import ServiceDescriptor, descriptors_in

__all__ = ["Field", "LeanTable", "read_lean"]


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
    #: The document's service descriptors (DataLink, SODA), read from the same tree.
    descriptors: tuple[ServiceDescriptor, ...] = ()


_PARSER = etree.XMLParser(
    resolve_entities=False,
    no_network=True,
    load_dtd=False,
    huge_tree=False,
    remove_comments=True,
    remove_pis=True,
    recover=False,
)

_FLOATS = {"float", "double"}
_TRUE = {"T", "TRUE", "1"}
_FALSE = {"F", "FALSE", "0"}
_BOOLEAN_NULL = {"", "?", " ", "\0"}
_VERSIONS = {"1.0", "1.1", "1.2", "1.3", "1.4", "1.5"}


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
    null_value = integer(null) if null is not None and null.strip() else None
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
            value = integer(text)
            if not low <= value <= high:
                raise Unreadable(f"{value} is out of range")
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
            raise Unreadable(f"not a boolean: {cell!r}")
    return values


def _converter(
    field: Field, null: str | None, version_1_3: bool
) -> Callable[[list[str]], list[Any]] | None:
    """How to turn a column's cell texts into values; None defers it to astropy."""
    datatype = field.datatype.lower()
    if datatype in TEXT:
        return _text_converter(field.arraysize)
    if field.arraysize not in (None, "1"):
        return None
    if datatype in INTEGERS:
        return _integer_converter(INTEGERS[datatype], null, version_1_3)
    if datatype in _FLOATS:
        return _float_converter(datatype, null)
    if datatype == "boolean":
        return _boolean
    return None


def _results_table(root: Any) -> tuple[Any, Any] | None:
    """(results RESOURCE, its first TABLE) as astropy chooses them, or None."""
    resources = [child for child in root if local(child) == "RESOURCE"]
    if not resources:
        return None
    resource = next(
        (r for r in resources if (r.get("type") or "").lower() == "results"), resources[0]
    )
    tables = [child for child in resource if local(child) == "TABLE"]
    if not tables:
        tables = [
            table
            for inner in resource
            if local(inner) == "RESOURCE"
            for table in inner
            if local(table) == "TABLE"
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
        if local(element) != "FIELD":
            continue
        name = element.get("name")
        if not name:
            raise Unreadable("a FIELD without a name")
        null = None
        for values in element:
            if local(values) == "VALUES":
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
        raise Unreadable("two FIELDs of one name")
    return fields, nulls


def _tabledata(element: Any, width: int) -> list[list[str]]:
    """The TABLEDATA cell texts row by row."""
    rows: list[list[str]] = []
    for tr in element:
        row = [td.text or "" for td in tr]
        if len(row) != width:
            raise Unreadable("a row of the wrong length")
        rows.append(row)
    return rows


def _tabledata_columns(
    element: Any, fields: list[Field], nulls: list[str | None], version_1_3: bool
) -> tuple[list[list[Any] | None], int]:
    cells = _tabledata(element, len(fields))
    by_column: Sequence[Sequence[str]] = list(zip(*cells, strict=True)) if cells else []
    columns: list[list[Any] | None] = []
    for index, (field, null) in enumerate(zip(fields, nulls, strict=True)):
        convert = _converter(field, null, version_1_3)
        if convert is None:
            columns.append(None)
        else:
            columns.append(convert(list(by_column[index])) if cells else [])
    return columns, len(cells)


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
        if not fields:
            return None
        body = next((child for child in table if local(child) == "DATA"), None)
        serialisation = (
            next((child for child in body if local(child) != "INFO"), None)
            if body is not None
            else None
        )
        kind = local(serialisation) if serialisation is not None else ""
        read: tuple[list[list[Any] | None], int] | None
        if serialisation is None:
            read = _tabledata_columns([], fields, nulls, version >= "1.3")
        elif kind == "TABLEDATA":
            read = _tabledata_columns(serialisation, fields, nulls, version >= "1.3")
        elif kind in ("BINARY", "BINARY2"):
            read = binary_columns(serialisation, fields, nulls, flagged=kind == "BINARY2")
        else:
            return None
        if read is None:
            return None
        columns, rows = read
    except (Unreadable, ValueError, OverflowError, TypeError, KeyError, IndexError, struct.error):
        return None
    descriptors = descriptors_in(root) if b"adhoc:service" in data else ()
    return LeanTable(tuple(fields), tuple(columns), rows, status, message, descriptors)
