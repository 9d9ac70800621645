"""What the lean reader's TABLEDATA and BINARY paths share: a FIELD, the integer
types' ranges, how an integer cell reads, and the signal to leave a document to astropy.

Pure: no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["INTEGERS", "TEXT", "Field", "Unreadable", "integer", "local"]


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


# Each integer type's range: astropy clamps a value outside it (with a warning); we defer.
INTEGERS = {
    "unsignedbyte": (0, 255),
    "short": (-(2**15), 2**15 - 1),
    "int": (-(2**31), 2**31 - 1),
    "long": (-(2**63), 2**63 - 1),
}
TEXT = {"char", "unicodechar"}


class Unreadable(Exception):
    """A document or cell this reader leaves to astropy."""


def local(element: Any) -> str:
    tag = element.tag
    return tag.rpartition("}")[2] if isinstance(tag, str) else ""


def integer(text: str) -> int:
    """An integer cell as astropy reads it: ``0x`` hexadecimal, else decimal."""
    text = text.strip().lower()
    return int(text[2:], 16) if text.startswith("0x") else int(text, 10)
