"""Every file and folder name voharvest writes, in one scheme.

A file is ``<stem>[_<tag>]-<hash><extension>``: a safe stem (a record's title,
or the last segment of its URL), a tag for what was made of it (``cutout``),
the first 10 hex digits of the SHA-256 of the URL it came from, and an
extension from its MIME type (else from its URL, else ``.dat``). The same
inputs give the same names in every run; two URLs never share a name; nothing a
server sends can climb out of the folder (see :func:`voharvest._files.safe_filename`).

- a harvest writes ``<out>/<service>/<target>/<record file>``: the service
  folder is its label plus the hash of its access URL (:func:`service_folder`);
  the target folder its name or position; the record file as above
  (:func:`record_filename`), and the files a DataLink record leads to after the
  record's stem (:func:`linked_filename`);
- ``VOClient.download`` without a file name keeps the URL's own last segment,
  and adds the hash only when the URL has a query (``getproduct?ID=...``
  URLs share their last segment): :func:`url_filename`; a dataset reached
  through DataLink is named by :func:`dataset_filename`.

The protocol layer returns URLs and formats; only this module turns them into
names. A harvest's journal keeps every name it gave, so a resumed harvest finds
the files of earlier runs under the names they were given then.
"""

from __future__ import annotations

import hashlib
from pathlib import PurePosixPath
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit

from ._files import safe_filename
from ._media import media_type

if TYPE_CHECKING:
    from .protocol.datalink import Dataset

__all__ = [
    "HASH_DIGITS",
    "dataset_filename",
    "extension_for",
    "linked_filename",
    "record_filename",
    "record_stem",
    "service_folder",
    "url_filename",
    "url_hash",
]

#: Hex digits of a URL's SHA-256 in a name.
HASH_DIGITS = 10

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
_STEM = 80  # characters of a stem kept in a name
_KNOWN_SUFFIXES = (".fits.gz", ".fits", ".jpg", ".jpeg", ".png", ".xml")


def url_hash(url: str) -> str:
    """The first :data:`HASH_DIGITS` hex digits of the SHA-256 of ``url``."""
    return hashlib.sha256(url.encode("utf-8", "surrogatepass")).hexdigest()[:HASH_DIGITS]


def _segment(url: str) -> str:
    """The last segment of the URL's path, percent-decoded."""
    return unquote(PurePosixPath(urlsplit(url).path).name)


def _name(stem: str, url: str, extension: str, tag: str = "") -> str:
    """The one scheme: ``<stem>[_<tag>]-<hash of url><extension>``."""
    tagged = f"{stem[:_STEM]}_{tag}" if tag else stem[:_STEM]
    return f"{tagged}-{url_hash(url)}{extension}"


def extension_for(format: str | None, url: str) -> str:
    """The file extension for a MIME type, else from the URL's name, else ``.dat``."""
    base = media_type(format)
    if base in _EXTENSIONS:
        return _EXTENSIONS[base]
    suffixes = PurePosixPath(safe_filename(_segment(url))).suffixes
    if suffixes and all(len(s) <= 6 for s in suffixes[-2:]):
        return "".join(suffixes[-2:]).lower()
    return ".dat"


def record_stem(url: str, title: str | None, extension: str = "") -> str:
    """A record's stem: its title (else its URL's name), safe, without its extension."""
    stem = safe_filename(title or _segment(url) or "record", default="record")
    for suffix in (extension, *_KNOWN_SUFFIXES):
        if suffix and stem.lower().endswith(suffix) and len(stem) > len(suffix):
            return stem[: -len(suffix)][:_STEM]
    return stem[:_STEM]


def record_filename(url: str, title: str | None, format: str | None) -> str:
    """The file of a record a harvest downloads."""
    extension = extension_for(format, url)
    return _name(record_stem(url, title, extension), url, extension)


def linked_filename(stem: str, url: str, format: str | None, mode: str = "full") -> str:
    """A file a DataLink record (of stem ``stem``) led to: ``_cutout`` tagged for cutouts."""
    return _name(stem, url, extension_for(format, url), "cutout" if mode == "cutout" else "")


def service_folder(label: str, access_url: str) -> str:
    """The folder of a service's files in a harvest: its label and its access URL's hash."""
    return _name(safe_filename(label, default="service")[:40], access_url, "")


def url_filename(url: str) -> str:
    """The name ``VOClient.download`` gives what ``url`` serves when not told one.

    The URL's last segment, made safe; with the URL's hash before the
    extension when the URL has a query string (so ``getproduct?ID=...`` URLs of
    different products get different names).
    """
    name = safe_filename(_segment(url))
    if not urlsplit(url).query:
        return name
    stem, dot, extension = name.rpartition(".")
    if dot and stem:
        return _name(stem, url, f".{extension}")
    return _name(name, url, "")


def dataset_filename(dataset: Dataset) -> str:
    """The name ``VOClient.download`` gives a dataset reached through a DataLink document.

    A full dataset is named after its URL (:func:`url_filename`); a cutout
    after the dataset it was cut from (its stem and extension), tagged
    ``_cutout`` and hashed by the cutout's own URL.
    """
    if dataset.mode != "cutout":
        return url_filename(dataset.url)
    source = dataset.cut_from or dataset.url
    stem = safe_filename(_segment(source), default="dataset").partition(".")[0] or "dataset"
    extension = extension_for(None, source)  # the full dataset's own (.fits.fz stays)
    if extension == ".dat":
        extension = extension_for(dataset.format, dataset.url)
    return _name(stem, dataset.url, extension, "cutout")
