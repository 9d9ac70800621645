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

import base64
import binascii
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from lxml import etree

from ._descriptors import ServiceDescriptor, descriptors_in

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


def _tabledata(element: Any, width: int) -> list[list[str]]:
    """The TABLEDATA cell texts row by row."""
    rows: list[list[str]] = []
    for tr in element:
        row = [td.text or "" for td in tr]
        if len(row) != width:
            raise _Unreadable("a row of the wrong length")
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


# --- BINARY and BINARY2 -------------------------------------------------------------

_BYTES = {
    "boolean": 1,
    "unsignedbyte": 1,
    "short": 2,
    "int": 4,
    "long": 8,
    "char": 1,
    "unicodechar": 2,
    "float": 4,
    "double": 8,
    "floatcomplex": 8,
    "doublecomplex": 16,
}
_STRUCT = {
    "unsignedbyte": struct.Struct(">B"),
    "short": struct.Struct(">h"),
    "int": struct.Struct(">i"),
    "long": struct.Struct(">q"),
    "float": struct.Struct(">f"),
    "double": struct.Struct(">d"),
}
_LENGTH = struct.Struct(">I")
_BINARY_BOOLEAN = {
    ord("T"): True,
    ord("t"): True,
    ord("1"): True,
    ord("F"): False,
    ord("f"): False,
    ord("0"): False,
    0: None,
    ord(" "): None,
    ord("?"): None,
}

#: Reads one value at an offset of the stream: (value, offset after it).
_Reader = Callable[[bytes, int], tuple[Any, int]]


def _skipper(datatype: str, arraysize: str | None) -> _Reader | None:
    """Steps over a field left to astropy; None where its size is not plain to see."""
    size = _BYTES.get(datatype)
    if size is None:
        return None  # bit: packed, astropy's
    dims = (arraysize or "1").split("x")
    if all(d.isdigit() for d in dims):
        count = 1
        for d in dims:
            count *= int(d)
        width = count * size
        return lambda data, at: (None, at + width)
    bound = dims[0][:-1]
    if len(dims) == 1 and dims[0].endswith("*") and (bound == "" or bound.isdigit()):

        def skip(data: bytes, at: int) -> tuple[Any, int]:
            (count,) = _LENGTH.unpack_from(data, at)
            return None, at + 4 + count * size

        return skip
    return None


def _text_reader(datatype: str, arraysize: str | None) -> _Reader | None:
    unicode = datatype == "unicodechar"
    size, codec = (2, "utf_16_be") if unicode else (1, "ascii")
    if arraysize is not None and arraysize.endswith("*") and "x" not in arraysize:

        def variable(data: bytes, at: int) -> tuple[Any, int]:
            (count,) = _LENGTH.unpack_from(data, at)
            end = at + 4 + count * size
            if end > len(data):
                raise _Unreadable("a value runs past the stream")
            return data[at + 4 : end].decode(codec), end

        return variable
    if arraysize is None or arraysize.isdigit():
        width = int(arraysize or 1) * size

        def fixed(data: bytes, at: int) -> tuple[Any, int]:
            end = at + width
            if end > len(data):
                raise _Unreadable("a value runs past the stream")
            if unicode:
                text = data[at:end].decode(codec)
                return text.split("\0", 1)[0], end
            return data[at:end].split(b"\0", 1)[0].decode(codec), end

        return fixed
    return None


def _binary_reader(field: Field, null: str | None) -> tuple[_Reader, bool] | None:
    """How to read a field's value from a BINARY stream, and whether the value is
    kept (False: stepped over, astropy's on demand); None: the document is astropy's."""
    datatype = field.datatype.lower()
    read = _value_reader(field, datatype, null)
    if read is not None:
        return read, True
    skip = _skipper(datatype, field.arraysize)
    return (skip, False) if skip is not None else None


def _value_reader(field: Field, datatype: str, null: str | None) -> _Reader | None:
    """The reader of a field's value, None for a field this reader leaves to astropy."""
    if datatype in _TEXT:
        return _text_reader(datatype, field.arraysize)
    if field.arraysize not in (None, "1") or (datatype not in _STRUCT and datatype != "boolean"):
        return None
    if datatype == "boolean":

        def boolean(data: bytes, at: int) -> tuple[Any, int]:
            return _BINARY_BOOLEAN[data[at]], at + 1

        return boolean
    unpack = _STRUCT[datatype].unpack_from
    width = _STRUCT[datatype].size
    if datatype in _INTEGERS:
        null_int = _integer(null) if null is not None and null.strip() else None

        def integer(data: bytes, at: int) -> tuple[Any, int]:
            (value,) = unpack(data, at)
            return (None if value == null_int else value), at + width

        return integer
    null_float = float(null) if null is not None and null.strip() else None

    def floating(data: bytes, at: int) -> tuple[Any, int]:
        (value,) = unpack(data, at)
        if null_float is None:
            return (None if value != value else value), at + width
        return (None if value == null_float else value), at + width

    return floating


def _binary_columns(
    element: Any, fields: list[Field], nulls: list[str | None], flagged: bool
) -> tuple[list[list[Any] | None], int] | None:
    streams = [child for child in element if _local(child) == "STREAM"]
    if len(streams) != 1 or streams[0].get("href") is not None:
        return None
    if (streams[0].get("encoding") or "").lower() != "base64":
        return None
    try:
        data = base64.b64decode(streams[0].text or "")
    except (binascii.Error, ValueError):
        return None
    chosen = [_binary_reader(f, n) for f, n in zip(fields, nulls, strict=True)]
    if any(choice is None for choice in chosen):
        return None
    readers = [choice[0] for choice in chosen if choice is not None]
    kept = [choice[1] for choice in chosen if choice is not None]
    flag_bytes = (len(fields) + 7) // 8 if flagged else 0
    text = [f.datatype.lower() in _TEXT for f in fields]
    values: list[list[Any]] = [[] for _ in fields]
    at = rows = 0
    end = len(data)
    while at < end:
        flags = data[at : at + flag_bytes]
        at += flag_bytes
        for index, reader in enumerate(readers):
            value, at = reader(data, at)
            if flag_bytes and not text[index] and flags[index // 8] & (0x80 >> (index % 8)):
                value = None
            values[index].append(value)
        if at > end:
            raise _Unreadable("the stream ends inside a row")
        rows += 1
    return [column if keep else None for column, keep in zip(values, kept, strict=True)], rows


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
        body = next((child for child in table if _local(child) == "DATA"), None)
        serialisation = (
            next((child for child in body if _local(child) != "INFO"), None)
            if body is not None
            else None
        )
        kind = _local(serialisation) if serialisation is not None else ""
        read: tuple[list[list[Any] | None], int] | None
        if serialisation is None:
            read = _tabledata_columns([], fields, nulls, version >= "1.3")
        elif kind == "TABLEDATA":
            read = _tabledata_columns(serialisation, fields, nulls, version >= "1.3")
        elif kind in ("BINARY", "BINARY2"):
            read = _binary_columns(serialisation, fields, nulls, flagged=kind == "BINARY2")
        else:
            return None
        if read is None:
            return None
        columns, rows = read
    except (_Unreadable, ValueError, OverflowError, TypeError, KeyError, IndexError, struct.error):
        return None
    descriptors = descriptors_in(root) if b"adhoc:service" in data else ()
    return LeanTable(tuple(fields), tuple(columns), rows, status, message, descriptors)
