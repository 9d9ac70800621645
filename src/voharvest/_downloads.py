"""Downloads: the file-level helpers of the :class:`~voharvest._downloader.Downloader`.

Content-Range parsing, the content check of a finished ``.part``, which
failures leave a ``.part`` worth keeping, and the reading of a DataLink
document that came where a file was due. No aiohttp here.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from ._exceptions import FormatError, PayloadError, TooLargeError, TransportError
from ._media import matches, sniff_kind
from .protocol import datalink

__all__ = [
    "HEAD_BYTES",
    "MAX_LINKS_BYTES",
    "LinksInstead",
    "content_range",
    "content_range_total",
    "head_problem",
    "plain_format",
    "read_capped",
    "resumable",
]

#: The largest DataLink document taken (they are a few kB per dataset).
MAX_LINKS_BYTES = 16 * 1024 * 1024


class LinksInstead(Exception):
    """A download's URL answered with a DataLink document (internal to the client)."""

    def __init__(self, body: bytes, url: str) -> None:
        super().__init__(url)
        self.body = body
        self.url = url


async def read_capped(stream: Any, url: str) -> bytes:
    body = bytearray()
    async for chunk in stream.chunks(256 * 1024):
        body += chunk
        if len(body) > MAX_LINKS_BYTES:
            raise TooLargeError(
                f"a DataLink document over {MAX_LINKS_BYTES} bytes", url=url, retryable=False
            )
    return bytes(body)


def plain_format(value: str | None) -> str | None:
    """A format to pick links by: None for no choice or for DataLink itself."""
    if not value or datalink.is_datalink_format(value):
        return None
    return value


def resumable(exc: BaseException) -> bool:
    """Whether a ``.part`` is worth keeping after ``exc``: transport trouble or cancellation."""
    return isinstance(exc, TransportError | asyncio.CancelledError)


def content_range_total(value: str | None) -> int | None:
    """The complete length from ``Content-Range: bytes */n`` (a 416 answer), if given."""
    if value and "/" in value:
        length = value.rsplit("/", 1)[1].strip()
        return int(length) if length.isdigit() else None
    return None


def content_range(value: str | None) -> tuple[int, int | None]:
    """(first byte, total length or None) of a ``Content-Range: bytes a-b/n`` header."""
    if value:
        unit, _, spec = value.strip().partition(" ")
        span, _, length = spec.partition("/")
        first, _, _ = span.partition("-")
        if unit.lower() == "bytes" and first.isdigit():
            return int(first), int(length) if length.isdigit() else None
    raise PayloadError(f"a 206 answer with an unreadable Content-Range {value!r}")


#: Bytes of a file's head its format is checked on (a FITS header block).
HEAD_BYTES = 2880


def head_problem(
    part: Path, mime: str | None, url: str, head: bytes | None = None
) -> FormatError | None:
    """A FormatError if a file of a known type doesn't start as one (an error page, say).

    ``head``: the file's first :data:`HEAD_BYTES` (or all of it, if shorter)
    as received; without it the file's head is read (blocking: call it in a
    thread).
    """
    kind = sniff_kind(mime)
    if kind is None:
        return None
    if head is None:
        with part.open("rb") as handle:
            head = handle.read(HEAD_BYTES)
    if matches(kind, head):
        return None
    return FormatError(
        f"expected {mime}, but the file starts with {head[:60]!r}",
        snippet=head[:200].decode("utf-8", errors="replace"),
        url=url,
    )
