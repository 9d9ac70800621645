"""Media types (MIME types): one reading of a ``Content-Type`` or a record's format.

A media type is read here and nowhere else: :func:`media_type` is the
``type/subtype`` part, lower-cased, without parameters or spaces (RFC 9110,
section 8.3.1: the type, subtype and parameter names are case-insensitive);
:func:`parse_media` also gives the parameters. On that reading:

- :func:`is_datalink_format`: a DataLink document
  (``application/x-votable+xml;content=datalink``, DataLink 1.0 section 3.3);
- :func:`same_format`: whether a link's content type is a format asked for
  (shell patterns, synonyms such as ``image/fits`` and ``application/fits``);
- :func:`sniff_kind` and :func:`matches`: the kind of file a media type promises
  and whether a file's first bytes start that way.

Pure: no I/O. The protocol layer uses it as well as the downloads and the harvest.
"""

from __future__ import annotations

import fnmatch

__all__ = [
    "DATALINK_MIME",
    "is_datalink_format",
    "matches",
    "media_type",
    "parse_media",
    "same_format",
    "sniff_kind",
]

#: The media type of a DataLink document.
DATALINK_MIME = "application/x-votable+xml;content=datalink"

# Media types that name one kind of file under several names.
_SYNONYMS = {
    "image/fits": "fits",
    "application/fits": "fits",
    "image/x-fits": "fits",
    "application/x-fits": "fits",
    "image/jpeg": "jpeg",
    "image/jpg": "jpeg",
    "image/pjpeg": "jpeg",
}

# The media types a VOTable (and so a DataLink document) is sent as.
_VOTABLE_TYPES = ("application/x-votable+xml", "text/xml", "application/xml")

# Kinds of file known by how they start, besides the synonyms' (a gzipped FITS
# is a gzip file; every XML type is checked as a VOTable would be).
_KINDS = {
    **_SYNONYMS,
    "image/png": "png",
    "application/gzip": "gzip",
    "application/x-gzip": "gzip",
    "image/fits+gzip": "gzip",
    **dict.fromkeys(_VOTABLE_TYPES, "votable"),
}

# How files of the formats harvests fetch begin.
_MAGIC = {
    "fits": (b"SIMPLE  =",),
    "jpeg": (b"\xff\xd8\xff",),
    "png": (b"\x89PNG\r\n\x1a\n",),
    "gzip": (b"\x1f\x8b",),
    "votable": (b"<",),
}


def media_type(value: str | None) -> str:
    """``type/subtype`` of a media type, lower-cased, parameters dropped ('' for none)."""
    if not value:
        return ""
    return value.split(";", 1)[0].strip().lower()


def parse_media(value: str | None) -> tuple[str, dict[str, str]]:
    """(type/subtype, parameters) of a media type, lower-cased, spaces ignored."""
    if not value:
        return "", {}
    base, *rest = value.split(";")
    params: dict[str, str] = {}
    for item in rest:
        key, _, val = item.partition("=")
        if key.strip():
            params[key.strip().lower()] = val.strip().strip('"').lower()
    return base.strip().lower(), params


def is_datalink_format(value: str | None) -> bool:
    """Whether a media type is that of a DataLink document (``...;content=datalink``)."""
    base, params = parse_media(value)
    return base in _VOTABLE_TYPES and params.get("content") == "datalink"


def same_format(offered: str | None, wanted: str) -> bool:
    """Whether a link's content type is the format asked for.

    ``wanted`` may be a shell pattern (``image/*``); parameters are ignored
    and synonyms (``image/fits`` and ``application/fits``) agree.
    """
    have = media_type(offered)
    want = media_type(wanted)
    if not have or not want:
        return False
    if fnmatch.fnmatchcase(have, want):
        return True
    kind = _SYNONYMS.get(have)
    return kind is not None and kind == _SYNONYMS.get(want)


def sniff_kind(mime: str | None) -> str | None:
    """The kind of file a MIME type promises, if we know how such files start."""
    return _KINDS.get(media_type(mime))


def matches(kind: str, head: bytes) -> bool:
    """Whether ``head`` (the first bytes of a file) starts as a file of ``kind``."""
    if kind == "fits" and head[:2] == b"\x1f\x8b":
        return True  # a gzipped FITS served as image/fits is common and fine
    if kind == "votable":
        return head.lstrip()[:1] == b"<"
    return any(head.startswith(magic) for magic in _MAGIC[kind])
