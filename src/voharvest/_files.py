"""Safe file names: nothing a server sends can place a file outside its directory."""

from __future__ import annotations

import re
from pathlib import Path

from ._exceptions import ParameterError

__all__ = ["inside", "matches", "safe_filename", "sniff_kind"]

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
    """``directory / name``, refusing anything that would land outside ``directory``."""
    root = directory.resolve()
    target = (root / name).resolve()
    if target.parent != root:
        raise ParameterError(f"file name {name!r} would leave the directory {directory}")
    return target


# How files of the formats harvests fetch begin.
_MAGIC = {
    "fits": (b"SIMPLE  =",),
    "jpeg": (b"\xff\xd8\xff",),
    "png": (b"\x89PNG\r\n\x1a\n",),
    "gzip": (b"\x1f\x8b",),
    "votable": (b"<",),
}


def sniff_kind(mime: str | None) -> str | None:
    """The kind of file a MIME type promises, if we know how such files start."""
    if not mime:
        return None
    base = mime.split(";", 1)[0].strip().lower()
    if base in ("image/fits", "application/fits", "image/x-fits", "application/x-fits"):
        return "fits"
    if base in ("image/jpeg", "image/jpg", "image/pjpeg"):
        return "jpeg"
    if base == "image/png":
        return "png"
    if base in ("application/gzip", "application/x-gzip", "image/fits+gzip"):
        return "gzip"
    if base in ("application/x-votable+xml", "text/xml", "application/xml"):
        return "votable"
    return None


def matches(kind: str, head: bytes) -> bool:
    """Whether ``head`` (the first bytes of a file) starts as a file of ``kind``."""
    if kind == "fits" and head[:2] == b"\x1f\x8b":
        return True  # a gzipped FITS served as image/fits is common and fine
    if kind == "votable":
        return head.lstrip()[:1] == b"<"
    return any(head.startswith(magic) for magic in _MAGIC[kind])
