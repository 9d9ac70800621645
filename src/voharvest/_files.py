"""Safe file names: nothing a server sends can place a file outside its directory."""

from __future__ import annotations

import os
import re
from pathlib import Path

from ._exceptions import ParameterError

__all__ = ["inside", "safe_filename"]

_UNSAFE = re.compile(r"[^A-Za-z0-9._+-]+")
_RESERVED = {
    "CON",
    "PRN",
    "AUX",
    "NUL",
    *(f"COM{i}" for i in range(1, 10)),
    *(f"LPT{i}" for i in range(1, 10)),
}
MAX_NAME = 120


def safe_filename(name: str, *, default: str = "download") -> str:
    """``name`` reduced to one safe path component.

    Only letters, digits and ``._+-`` survive (runs of anything else become
    ``_``), no leading dots (no hidden files, no ``..``), no reserved device
    names, at most 120 characters with the extension kept.
    """
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    cleaned = _UNSAFE.sub("_", base).strip("._-")
    if not cleaned:
        cleaned = default
    stem, dot, ext = cleaned.rpartition(".")
    if not dot:
        stem, ext = cleaned, ""
    if stem.upper() in _RESERVED:
        stem = "_" + stem
    ext = ext[:16]
    room = MAX_NAME - (len(ext) + 1 if ext else 0)
    stem = stem[:room]
    return f"{stem}.{ext}" if ext else stem


def inside(directory: Path, name: str) -> Path:
    """``directory / name``, refusing anything that would land outside ``directory``.

    The directory is resolved; a ``name`` of one plain path component lands in it
    unless it is a symbolic link, the one case where it is resolved too (one
    ``lstat``, not one per component of the path).
    """
    root = directory.resolve()
    target = root / name
    plain = name not in ("", ".", "..") and os.sep not in name
    if not plain or (os.altsep and os.altsep in name) or os.path.islink(target):
        target = target.resolve()
    if target.parent != root:
        raise ParameterError(f"file name {name!r} would leave the directory {directory}")
    return target
