"""What a simulated host puts on the wire, below HTTP: bodies held in memory,
the byte range a ``Range`` header asks for, and a connection broken under a
response (a TCP reset or a plain close). Used by :mod:`._host`.
"""

from __future__ import annotations

import contextlib
import socket
import struct
from collections.abc import Iterator

from aiohttp import web

from ._sky import FitsImage

__all__ = ["Blob", "Body", "abort", "parse_range"]


class Blob:
    """Bytes in memory, served like a :class:`FitsImage`."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.size = len(data)

    def chunks(self, start: int, end: int, chunk: int) -> Iterator[bytes]:
        for position in range(start, end, chunk):
            yield self.data[position : min(end, position + chunk)]


Body = FitsImage | Blob


def parse_range(header: str, size: int) -> tuple[int, int] | str | None:
    """(start, end) of a single byte range, None to ignore the header, "416" if unsatisfiable."""
    unit, _, spec = header.partition("=")
    if unit.strip().lower() != "bytes" or "," in spec:
        return None  # other units and multipart ranges: answer the whole file
    first, dash, last = spec.strip().partition("-")
    if not dash:
        return None
    try:
        if not first.strip():
            length = int(last)
            if length <= 0:
                return "416"
            return max(0, size - length), size
        start = int(first)
        end = int(last) + 1 if last.strip() else size
    except ValueError:
        return None
    if start >= size:
        return "416"
    if end <= start:
        return None
    return start, min(end, size)


def abort(request: web.Request, *, reset: bool) -> None:
    """Close the connection under the response: with a TCP reset, or a plain close."""
    transport = request.transport
    if transport is None:
        return
    if reset:
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        transport.abort()
    else:
        transport.close()
