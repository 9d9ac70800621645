"""The lean reader's BINARY and BINARY2 streams (base64 in the document, as DaCHS
sends them) to plain columns, with the value rules of :mod:`._lean`'s docstring.

Pure: no I/O.
"""

from __future__ import annotations

import base64
import binascii
import struct
from collections.abc import Callable
from typing import Any

from ._cells import INTEGERS, TEXT, Field, Unreadable, local
from ._cells import integer as integer_cell

__all__ = ["binary_columns"]


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
                raise Unreadable("a value runs past the stream")
            return data[at + 4 : end].decode(codec), end

        return variable
    if arraysize is None or arraysize.isdigit():
        width = int(arraysize or 1) * size

        def fixed(data: bytes, at: int) -> tuple[Any, int]:
            end = at + width
            if end > len(data):
                raise Unreadable("a value runs past the stream")
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
    if datatype in TEXT:
        return _text_reader(datatype, field.arraysize)
    if field.arraysize not in (None, "1") or (datatype not in _STRUCT and datatype != "boolean"):
        return None
    if datatype == "boolean":

        def boolean(data: bytes, at: int) -> tuple[Any, int]:
            return _BINARY_BOOLEAN[data[at]], at + 1

        return boolean
    unpack = _STRUCT[datatype].unpack_from
    width = _STRUCT[datatype].size
    if datatype in INTEGERS:
        null_int = integer_cell(null) if null is not None and null.strip() else None

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


def binary_columns(
    element: Any, fields: list[Field], nulls: list[str | None], flagged: bool
) -> tuple[list[list[Any] | None], int] | None:
    streams = [child for child in element if local(child) == "STREAM"]
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
    text = [f.datatype.lower() in TEXT for f in fields]
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
            raise Unreadable("the stream ends inside a row")
        rows += 1
    return [column if keep else None for column, keep in zip(values, kept, strict=True)], rows
