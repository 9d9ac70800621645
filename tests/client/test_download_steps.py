"""What a download asks of the file system: early writeback, few thread hops, what it reports."""

from __future__ import annotations

import math
import os
import threading
from pathlib import Path

import pytest
from aiohttp import web

from tests.servers import LocalServer
from voharvest import ClientConfig, HostPolicy, ParameterError, VOClient, _downloader, _partfile
from voharvest._config import origin_of
from voharvest._files import inside

BODY = b"SIMPLE  =                    T" + b" " * 50 + os.urandom(300_000)


def _serve(server: LocalServer) -> str:
    async def handle(request: web.Request) -> web.StreamResponse:
        return web.Response(body=BODY, content_type="image/fits")

    server.route("GET", "/img.fits", handle)
    return server.url("/img.fits")


@pytest.mark.parametrize("fsync", [True, False])
async def test_writeback_starts_with_each_write_only_when_files_are_fsynced(
    server: LocalServer, tmp_path: Path, monkeypatch, fsync: bool
):
    started: list[int] = []
    synced: list[int] = []
    real_fsync = os.fsync
    monkeypatch.setattr(_partfile, "_start_writeback", started.append)
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(fd), real_fsync(fd)))
    config = ClientConfig(host=HostPolicy(rate=math.inf), chunk_bytes=64 * 1024, fsync=fsync)
    async with VOClient(config) as client:
        path = await client.download(_serve(server), tmp_path, expected_format="image/fits")
    assert path.read_bytes() == BODY
    if fsync:
        # Every write but the last (which the fsync itself flushes) starts writeback.
        assert len(started) >= len(BODY) // (64 * 1024) - 1
        assert len(synced) == 1
    else:
        assert started == [] and synced == []


async def test_a_file_in_one_write_takes_two_hops_to_the_file_threads(
    server: LocalServer, tmp_path: Path, monkeypatch
):
    url = _serve(server)
    hops: list[str] = []
    config = ClientConfig(host=HostPolicy(rate=math.inf), chunk_bytes=4 * 1024 * 1024)
    async with VOClient(config) as client:
        files = client._files
        assert files is not None
        real_submit = files.submit

        def submit(function, *args, **kwargs):  # type: ignore[no-untyped-def]
            hops.append(getattr(function, "__name__", repr(function)))
            return real_submit(function, *args, **kwargs)

        monkeypatch.setattr(files, "submit", submit)
        path = await client.download(url, tmp_path, keep_partial=True, expected_format="image/fits")
    assert path.read_bytes() == BODY
    # Where it goes (and whether it is there already); then open, write, fsync and rename.
    assert hops == ["_place", "_finish"], hops
    assert not (tmp_path / "img.fits.part").exists()
    assert not (tmp_path / "img.fits.part.json").exists()


@pytest.mark.parametrize("chunk", [4 * 1024 * 1024, 64 * 1024])
async def test_a_file_is_checked_on_its_head_as_received_and_a_whole_one_leaves_no_note(
    server: LocalServer, tmp_path: Path, monkeypatch, chunk: int
):
    """No re-reading of the part for its format; a file written whole in one hop gets
    no resume note (one written in several does, until its rename)."""
    url = _serve(server)
    opened: list[tuple[str, str]] = []
    noted: list[str] = []
    real_open, real_write_text = Path.open, Path.write_text

    def spy_open(self: Path, mode: str = "r", *args, **kwargs):  # type: ignore[no-untyped-def]
        opened.append((self.name, mode))
        return real_open(self, mode, *args, **kwargs)

    def spy_write_text(self: Path, *args, **kwargs):  # type: ignore[no-untyped-def]
        noted.append(self.name)
        return real_write_text(self, *args, **kwargs)

    monkeypatch.setattr(Path, "open", spy_open)
    monkeypatch.setattr(Path, "write_text", spy_write_text)
    config = ClientConfig(host=HostPolicy(rate=math.inf), chunk_bytes=chunk)
    async with VOClient(config) as client:
        path = await client.download(url, tmp_path, keep_partial=True, expected_format="image/fits")
    assert path.read_bytes() == BODY
    assert ("img.fits.part", "rb") not in opened
    assert noted == ([] if chunk > len(BODY) else ["img.fits.part.json"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["img.fits"]


async def test_an_error_page_is_caught_on_the_head_as_received(server: LocalServer, tmp_path: Path):
    from voharvest import FormatError

    async def page(request: web.Request) -> web.Response:
        return web.Response(body=b"<html>" + b"x" * 5000, content_type="image/fits")

    server.route("GET", "/page.fits", page)
    async with VOClient(ClientConfig(host=HostPolicy(rate=math.inf))) as client:
        with pytest.raises(FormatError, match="starts with b'<html>xx"):
            await client.download(server.url("/page.fits"), tmp_path, expected_format="image/fits")
    assert list(tmp_path.iterdir()) == []


async def test_fetched_says_the_size_and_whether_the_file_was_there(
    server: LocalServer, tmp_path: Path
):
    url = _serve(server)
    async with VOClient(ClientConfig(host=HostPolicy(rate=math.inf))) as client:
        first = _downloader.Fetched()
        _downloader.fetched.set(first)
        path = await client.download(url, tmp_path)
        again = _downloader.Fetched()
        _downloader.fetched.set(again)
        same = await client.download(url, tmp_path)
    assert (first.path, first.size, first.existed) == (path, len(BODY), False)
    assert (again.path, again.size, again.existed) == (same, len(BODY), True)
    assert len(server.hits_for("/img.fits")) == 1


async def test_a_cancelled_finish_renames_nothing(server: LocalServer, tmp_path: Path):
    """Cancelled while its last hop waits for the disk: no file under the final name."""
    url = _serve(server)
    in_fsync = threading.Event()
    release = threading.Event()
    real_fsync = os.fsync

    def slow_fsync(fd: int) -> None:
        in_fsync.set()
        release.wait(timeout=10)
        real_fsync(fd)

    import asyncio

    async with VOClient(ClientConfig(host=HostPolicy(rate=math.inf))) as client:
        os_fsync = os.fsync
        os.fsync = slow_fsync
        try:
            task = asyncio.ensure_future(client.download(url, tmp_path))
            while not in_fsync.is_set():  # noqa: ASYNC110 (a flag set by a file thread)
                await asyncio.sleep(0.005)
            task.cancel()
            await asyncio.sleep(0.05)
            release.set()
            with pytest.raises(asyncio.CancelledError):
                await task
        finally:
            os.fsync = os_fsync
        await asyncio.sleep(0.1)  # the file thread ends its hop
    assert not (tmp_path / "img.fits").exists()


def test_inside_checks_a_plain_name_with_one_lstat_and_still_refuses_links_out(
    tmp_path: Path,
):
    (tmp_path / "d").mkdir()
    assert inside(tmp_path / "d", "a.fits") == (tmp_path / "d" / "a.fits").resolve()
    os.symlink("/etc/hostname", tmp_path / "d" / "out")
    os.symlink(tmp_path / "d" / "b.fits", tmp_path / "d" / "in")
    assert inside(tmp_path / "d", "in") == (tmp_path / "d" / "b.fits").resolve()
    for name in ("out", "..", ".", "", "../x", "x/y", "x/../../y"):
        with pytest.raises(ParameterError):
            inside(tmp_path / "d", name)


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.2:36183/sia?POS=1,2&SIZE=0.01",
        "HTTPS://Example.org/x",
        "https://a.b:8443?x=1",
        "http://h#frag",
        "http://user:pw@H.org:80/p",
        "https://[::1]:99/x",
        " http://h/x",
        "http://h/a://b",
    ],
)
def test_origins_are_the_same_asked_once_or_many_times(url: str):
    from voharvest import _checks, _config

    _config._ORIGINS.clear()
    first = origin_of(url)
    assert origin_of(url) == first == _checks.http_origin(url)


@pytest.mark.parametrize("url", ["ftp://x/y", "http://h:99999/x", "http:///x", "nonsense"])
def test_a_bad_url_is_refused_by_its_whole_text_every_time(url: str):
    for _ in range(2):
        with pytest.raises(ParameterError, match=repr(url).replace("?", r"\?")):
            origin_of(url)
