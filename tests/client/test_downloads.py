"""Downloads: atomic files, Range resume guarded by If-Range, content checks."""

from __future__ import annotations

import asyncio
import json
import math
import os
from pathlib import Path

import pytest
from aiohttp import web

from tests.servers import LocalServer
from voharvest import ClientConfig, FormatError, HostPolicy, RetryPolicy, VOClient

FITS = b"SIMPLE  =                    T" + b" " * 50 + os.urandom(200_000)


def config(**changes) -> ClientConfig:
    base = {
        "retry": RetryPolicy(attempts=3, initial=0.01, maximum=0.05, jitter=0.0),
        "host": HostPolicy(rate=math.inf, concurrency=8),
        "chunk_bytes": 16 * 1024,
    }
    base.update(changes)
    return ClientConfig(**base)


class RangeServer:
    """Serves FITS with ETag and Range; can cut the first answer short."""

    def __init__(self, data: bytes, *, etag: str | None = '"v1"', ranges: bool = True) -> None:
        self.data = data
        self.etag = etag
        self.ranges = ranges
        self.cut_after: int | None = None
        self.sent = 0

    async def handle(self, request: web.Request) -> web.StreamResponse:
        start = 0
        wanted = request.headers.get("Range", "")
        if (
            self.ranges
            and wanted.startswith("bytes=")
            and request.headers.get("If-Range") == self.etag
        ):
            start = int(wanted[6:].split("-")[0])
        if start >= len(self.data):
            return web.Response(status=416, headers={"Content-Range": f"bytes */{len(self.data)}"})
        body = self.data[start:]
        headers = {"Content-Length": str(len(body)), "Content-Type": "image/fits"}
        if self.etag:
            headers["ETag"] = self.etag
        status = 200
        if start:
            status = 206
            headers["Content-Range"] = f"bytes {start}-{len(self.data) - 1}/{len(self.data)}"
        response = web.StreamResponse(status=status, headers=headers)
        await response.prepare(request)
        if self.cut_after is not None:
            cut, self.cut_after = self.cut_after, None
            await response.write(body[:cut])
            self.sent += cut
            await asyncio.sleep(0.05)
            request.transport.close()
            return response
        await response.write(body)
        self.sent += len(body)
        return response


async def test_a_cut_download_resumes_with_range(server: LocalServer, tmp_path: Path):
    source = RangeServer(FITS)
    source.cut_after = 50_000
    server.route("GET", "/img.fits", source.handle)
    async with VOClient(config()) as client:
        path = await client.download(server.url("/img.fits"), tmp_path, keep_partial=True)
    assert path.read_bytes() == FITS
    hits = server.hits_for("/img.fits")
    assert len(hits) == 2
    assert hits[1].headers["Range"].startswith("bytes=")
    assert hits[1].headers["If-Range"] == '"v1"'
    resumed_from = int(hits[1].headers["Range"][6:].split("-")[0])
    assert 0 < resumed_from <= 50_000
    # Only what was missing was sent again.
    assert source.sent == len(FITS) + (50_000 - resumed_from)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["img.fits"]


async def test_a_server_ignoring_range_gets_a_fresh_start_not_an_append(
    server: LocalServer, tmp_path: Path
):
    source = RangeServer(FITS, ranges=False)
    source.cut_after = 50_000
    server.route("GET", "/img.fits", source.handle)
    async with VOClient(config()) as client:
        path = await client.download(server.url("/img.fits"), tmp_path, keep_partial=True)
    assert path.read_bytes() == FITS
    assert len(server.hits_for("/img.fits")) == 2


async def test_a_changed_file_is_fetched_whole(server: LocalServer, tmp_path: Path):
    # A .part from an earlier version of the file: If-Range fails, the server sends it all.
    (tmp_path / "img.fits.part").write_bytes(b"SIMPLE  = old version")
    url = server.url("/img.fits")
    (tmp_path / "img.fits.part.json").write_text(json.dumps({"url": url, "etag": '"v0"'}))
    source = RangeServer(FITS, etag='"v1"')
    server.route("GET", "/img.fits", source.handle)
    async with VOClient(config()) as client:
        path = await client.download(url, tmp_path, keep_partial=True)
    assert path.read_bytes() == FITS
    assert server.hits_for("/img.fits")[0].headers.get("If-Range") == '"v0"'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["img.fits"]


async def test_without_a_validator_nothing_is_resumed(server: LocalServer, tmp_path: Path):
    source = RangeServer(FITS, etag=None)
    source.cut_after = 50_000
    server.route("GET", "/img.fits", source.handle)
    async with VOClient(config()) as client:
        path = await client.download(server.url("/img.fits"), tmp_path, keep_partial=True)
    assert path.read_bytes() == FITS
    assert all("Range" not in hit.headers for hit in server.hits_for("/img.fits"))


async def test_kept_partial_survives_cancellation_and_resumes_next_time(
    server: LocalServer, tmp_path: Path
):
    started = asyncio.Event()

    async def stalls(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Length": str(len(FITS)), "ETag": '"v1"'})
        await response.prepare(request)
        await response.write(FITS[:100_000])
        started.set()
        await asyncio.sleep(10)
        return response

    server.route("GET", "/img.fits", stalls)
    async with VOClient(config()) as client:
        task = asyncio.create_task(
            client.download(server.url("/img.fits"), tmp_path, keep_partial=True)
        )
        await started.wait()
        await asyncio.sleep(0.2)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    kept = (tmp_path / "img.fits.part").stat().st_size
    assert 0 < kept <= 100_000
    assert not (tmp_path / "img.fits").exists()

    source = RangeServer(FITS)
    server.route("GET", "/img.fits", source.handle)
    async with VOClient(config()) as client:
        path = await client.download(server.url("/img.fits"), tmp_path, keep_partial=True)
    assert path.read_bytes() == FITS
    assert server.hits[-1].headers["Range"] == f"bytes={kept}-"
    assert source.sent == len(FITS) - kept


async def test_an_error_page_is_not_saved_as_an_image(server: LocalServer, tmp_path: Path):
    async def html(request: web.Request) -> web.Response:
        return web.Response(
            text="<html><body>Quota exceeded</body></html>", content_type="text/html"
        )

    server.route("GET", "/img.fits", html)
    async with VOClient(config()) as client:
        with pytest.raises(FormatError, match="image/fits") as caught:
            await client.download(
                server.url("/img.fits"), tmp_path, expected_format="image/fits", keep_partial=True
            )
    assert "Quota exceeded" in caught.value.snippet
    assert list(tmp_path.iterdir()) == []


async def test_existing_final_file_is_kept_unless_overwrite(server: LocalServer, tmp_path: Path):
    source = RangeServer(FITS)
    server.route("GET", "/img.fits", source.handle)
    (tmp_path / "img.fits").write_bytes(b"mine")
    async with VOClient(config()) as client:
        path = await client.download(server.url("/img.fits"), tmp_path)
        assert path.read_bytes() == b"mine"
        assert server.hits_for("/img.fits") == []
        path = await client.download(server.url("/img.fits"), tmp_path, overwrite=True)
    assert path.read_bytes() == FITS


async def test_a_complete_part_is_finished_without_fetching_again(
    server: LocalServer, tmp_path: Path
):
    # Killed after the last byte was written but before the rename: the server
    # answers 416 to "the rest", and the kept part becomes the file.
    url = server.url("/img.fits")
    (tmp_path / "img.fits.part").write_bytes(FITS)
    (tmp_path / "img.fits.part.json").write_text(json.dumps({"url": url, "etag": '"v1"'}))
    source = RangeServer(FITS)
    server.route("GET", "/img.fits", source.handle)
    async with VOClient(config()) as client:
        path = await client.download(url, tmp_path, keep_partial=True, expected_format="image/fits")
    assert path.read_bytes() == FITS
    assert source.sent == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["img.fits"]


async def test_an_unwritable_directory_is_a_storage_error(server: LocalServer, tmp_path: Path):
    from voharvest import StorageError

    source = RangeServer(FITS)
    server.route("GET", "/img.fits", source.handle)
    blocker = tmp_path / "file-not-dir"
    blocker.write_text("x")
    async with VOClient(config()) as client:
        with pytest.raises(StorageError, match="file-not-dir"):
            await client.download(server.url("/img.fits"), blocker / "sub")
    assert not (blocker / "sub").exists() and blocker.read_text() == "x"


async def test_a_file_that_cannot_be_written_is_a_storage_error(
    server: LocalServer, tmp_path: Path
):
    from voharvest import StorageError

    source = RangeServer(FITS)
    server.route("GET", "/img.fits", source.handle)
    (tmp_path / "img.fits.part").mkdir()  # the .part can't be opened for writing
    async with VOClient(config()) as client:
        with pytest.raises(StorageError, match=r"img\.fits"):
            await client.download(server.url("/img.fits"), tmp_path, keep_partial=True)
    assert len(server.hits_for("/img.fits")) == 1  # a disk error is not retried
    assert not (tmp_path / "img.fits").exists()


async def test_stale_partials_beside_a_complete_file_are_removed(
    server: LocalServer, tmp_path: Path
):
    # Killed after the rename, before the .part.json was removed.
    (tmp_path / "img.fits").write_bytes(FITS)
    (tmp_path / "img.fits.part.json").write_text("{}")
    server.route("GET", "/img.fits", RangeServer(FITS).handle)
    async with VOClient(config()) as client:
        await client.download(server.url("/img.fits"), tmp_path, keep_partial=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["img.fits"]
    assert server.hits_for("/img.fits") == []
