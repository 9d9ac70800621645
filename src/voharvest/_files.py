"""Safe file names: nothing a server sends can place a file outside its directory."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path, PurePosixPath
from urllib.parse import unquote, urlsplit

from ._exceptions import ParameterError

__all__ = ["filename_from_url", "inside", "safe_filename", "url_digest"]

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


def filename_from_url(url: str) -> str:
    """A stable, safe name for what ``url`` serves.

    The last path segment, made safe; when the URL has a query string (as
    ``getproduct?ID=...`` URLs do) a short hash of the whole URL keeps names of
    different products apart.
    """
    parts = urlsplit(url)
    segment = unquote(PurePosixPath(parts.path).name)
    name = safe_filename(segment)
    if parts.query:
        digest = url_digest(url)
        stem, dot, ext = name.rpartition(".")
        name = f"{stem}-{digest}.{ext}" if dot and stem else f"{name}-{digest}"
    return name


def url_digest(url: str, length: int = 12) -> str:
    """A short, stable hash of a URL (to keep names of different URLs apart)."""
    return hashlib.sha256(url.encode("utf-8", "surrogatepass")).hexdigest()[:length]


def inside(directory: Path, name: str) -> Path:
    """``directory / name``, refusing anything that would land outside ``directory``."""
    root = directory.resolve()
    target = (root / name).resolve()
    if target.parent != root:
        raise ParameterError(f"file name {name!r} would leave the directory {directory}")
    return target
