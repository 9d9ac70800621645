"""Stable, collision-free, safe names for harvested files.

``<out>/<service>/<target>/<record>``: the service folder is its label plus a
hash of its access URL, the target folder its name or position, the record's
file its title (or URL name) plus a hash of its access URL and an extension
from its format. The same inputs give the same names in every run; two
different URLs never share a name; nothing a server sends can climb out.
"""

from __future__ import annotations

from pathlib import PurePosixPath
from urllib.parse import unquote, urlsplit

from .._files import safe_filename, url_digest

__all__ = ["extension_for", "record_filename", "service_folder", "url_hash"]

_EXTENSIONS = {
    "image/fits": ".fits",
    "application/fits": ".fits",
    "image/x-fits": ".fits",
    "image/jpeg": ".jpg",
    "image/jpg": ".jpg",
    "image/png": ".png",
    "image/gif": ".gif",
    "image/tiff": ".tiff",
    "application/x-votable+xml": ".xml",
    "text/xml": ".xml",
    "application/gzip": ".gz",
    "application/x-gzip": ".gz",
    "text/html": ".html",
    "text/plain": ".txt",
}


def url_hash(url: str, length: int = 10) -> str:
    """Harvest file names keep 10 hex digits of the URL's hash (6 for service folders)."""
    return url_digest(url, length)


def extension_for(format: str | None, url: str) -> str:
    """The file extension for a record's MIME type, else from its URL, else ``.dat``."""
    if format:
        base = format.split(";", 1)[0].strip().lower()
        if base in _EXTENSIONS:
            return _EXTENSIONS[base]
    name = unquote(PurePosixPath(urlsplit(url).path).name)
    suffixes = PurePosixPath(safe_filename(name)).suffixes
    if suffixes and all(len(s) <= 6 for s in suffixes[-2:]):
        return "".join(suffixes[-2:]).lower()
    return ".dat"


def service_folder(label: str, access_url: str) -> str:
    return f"{safe_filename(label, default='service')[:40]}-{url_hash(access_url, 6)}"


def record_filename(url: str, title: str | None, format: str | None) -> str:
    ext = extension_for(format, url)
    base = title or unquote(PurePosixPath(urlsplit(url).path).name) or "record"
    stem = safe_filename(base, default="record")
    for suffix in (ext, ".fits.gz", ".fits", ".jpg", ".jpeg", ".png", ".xml"):
        if stem.lower().endswith(suffix) and len(stem) > len(suffix):
            stem = stem[: -len(suffix)]
            break
    return f"{stem[:80]}-{url_hash(url)}{ext}"
