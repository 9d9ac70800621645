"""The Downloader's file writes: every byte in order, the stream read while a write runs."""

from __future__ import annotations

import asyncio
import math
import os
import threading
from pathlib import Path

import pytest
from aiohttp import web

from tests.servers import LocalServer
from voharvest import ClientConfig, HostPolicy, RetryPolicy, VOClient, _partfile
from voharvest.transport import Stream

BODY = b"SIMPLE  =                    T" + b" " * 50 + os.urandom(600_000)


def test_short_writev_calls_still_write_every_piece_in_order(tmp_path: Path, monkeypatch):
    real = os.writev
    calls = []

    def short(fd: int, buffers: list[bytes]) -> int:
        calls.append(len(buffers))
        return real(fd, [bytes(memoryview(buffers[0])[:777])])  # at most 777 bytes a call

    monkeypatch.setattr(os, "writev", short)
    pieces = [os.urandom(n) for n in (5000, 1, 0, 3000, 777, 12_345)]
    path = tmp_path / "out"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT)
    try:
        _partfile.write_all(fd, pieces)
    finally:
        os.close(fd)
    assert path.read_bytes() == b"".join(pieces)
    assert len(calls) > len(pieces)


def test_more_pieces_than_one_writev_takes(tmp_path: Path):
    pieces = [bytes([i % 256]) * 3 for i in range(3000)]  # past IOV_MAX (1024)
    path = tmp_path / "out"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT)
    try:
        _partfile.write_all(fd, pieces)
    finally:
        os.close(fd)
    assert path.read_bytes() == b"".join(pieces)


async def test_the_body_is_read_on_while_a_write_is_in_its_thread(
    server: LocalServer, tmp_path: Path, monkeypatch
):
    """The server sends the rest of the body only once the first write is in its
    thread, and that write waits for a piece of the rest: it gets one only if
    reading goes on while a write is in flight (else it waits in vain)."""
    writing = threading.Event()
    read_during_write = threading.Event()
    waited: list[bool] = []
    real_write_all = _partfile.write_all
    real_pieces = Stream.pieces

    def write_all(fd: int, pieces: list[bytes]) -> None:
        if not writing.is_set():
            writing.set()
            waited.append(read_during_write.wait(timeout=5))
        real_write_all(fd, pieces)

    async def pieces(self: Stream):
        async for piece in real_pieces(self):
            if writing.is_set():
                read_during_write.set()
            yield piece

    monkeypatch.setattr(_partfile, "write_all", write_all)
    monkeypatch.setattr(Stream, "pieces", pieces)
    first = 100_000  # more than chunk_bytes: the first write starts within it

    async def handle(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Length": str(len(BODY))})
        await response.prepare(request)
        await response.write(BODY[:first])
        while not writing.is_set():  # noqa: ASYNC110 (a flag set by a file thread)
            await asyncio.sleep(0.002)
        await response.write(BODY[first:])
        return response

    server.route("GET", "/img.fits", handle)
    config = ClientConfig(host=HostPolicy(rate=math.inf), chunk_bytes=64 * 1024)
    async with VOClient(config) as client:
        path = await client.download(server.url("/img.fits"), tmp_path)
    assert waited == [True]
    assert path.read_bytes() == BODY


@pytest.mark.parametrize("chunk_bytes", [1, 4096, 10 * 1024 * 1024])
async def test_any_chunk_size_gives_the_same_file(
    server: LocalServer, tmp_path: Path, chunk_bytes: int
):
    async def handle(request: web.Request) -> web.StreamResponse:
        return web.Response(body=BODY, content_type="image/fits")

    server.route("GET", "/img.fits", handle)
    config = ClientConfig(host=HostPolicy(rate=math.inf), chunk_bytes=chunk_bytes)
    async with VOClient(config) as client:
        path = await client.download(
            server.url("/img.fits"), tmp_path, expected_format="image/fits"
        )
    assert path.read_bytes() == BODY
    assert sorted(p.name for p in tmp_path.iterdir()) == ["img.fits"]


async def test_a_cut_keeps_every_byte_received_for_the_resume(server: LocalServer, tmp_path: Path):
    from tests.client.test_downloads import RangeServer

    source = RangeServer(BODY)
    source.cut_after = 50_000  # well under one write of chunk_bytes
    server.route("GET", "/img.fits", source.handle)
    config = ClientConfig(
        host=HostPolicy(rate=math.inf),
        retry=RetryPolicy(attempts=2, initial=0.01, jitter=0.0),
        chunk_bytes=1024 * 1024,
    )
    async with VOClient(config) as client:
        path = await client.download(server.url("/img.fits"), tmp_path, keep_partial=True)
    assert path.read_bytes() == BODY
    assert [hit.headers.get("Range") for hit in server.hits_for("/img.fits")] == [
        None,
        "bytes=50000-",
    ]
