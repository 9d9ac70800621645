"""A harvest killed with SIGKILL at several moments, and run again each time.

Measured on the server: at the end every file is there, whole; no file that
was complete on disk when the harvest died was fetched again; the journal
always opens; nothing partial ever sits under a final name.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import sys
from collections.abc import Callable
from pathlib import Path

from tests.harvest.minisky import MiniSky, fits_bytes
from tests.servers import LocalServer
from voharvest.harvesting import JOURNAL_NAME

POSITIONS = [(10.0 + i, 20.0 + i) for i in range(6)]
IMAGE_SIZE = 160 * 1024


def finals(out: Path) -> dict[str, Path]:
    """Files under their final names, by the image name they hold."""
    found = {}
    for path in out.rglob("*.fits"):
        original = path.name.removeprefix("Field_").rsplit("-", 1)[0] + ".fits"
        found[original] = path
    return found


async def start(server: LocalServer, out: Path, targets: Path) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "voharvest", "harvest",
        "--service", server.url("/sia"), "--targets", str(targets),
        "--size", "0.2", "--format", "image/fits", "--out", str(out),
        "--no-rate-limit", "--downloads", "3", "--searches", "2", "--no-progress",
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip


async def wait_for(condition: Callable[[], bool], limit: float = 60.0) -> None:
    async with asyncio.timeout(limit):
        while not condition():  # noqa: ASYNC110 (counters of a server on this loop)
            await asyncio.sleep(0.005)


async def test_killed_harvests_resume_with_nothing_lost_or_fetched_twice(
    server: LocalServer, tmp_path: Path
):
    sky = MiniSky(server, per_search=2, image_size=IMAGE_SIZE, chunk_delay=0.004)
    out = tmp_path / "out"
    targets = tmp_path / "targets.txt"
    targets.write_text("".join(f"{ra} {dec}\n" for ra, dec in POSITIONS))
    expected = {name for ra, dec in POSITIONS for name in sky.names(ra, dec)}

    kill_points: list[Callable[[], bool]] = [
        lambda: len(server.hits_for("/sia")) >= 1,  # during the searches
        lambda: sum(sky.fetches.values()) >= 2,  # mid-download, nothing complete yet
        lambda: sum(sky.completed.values()) >= 4,  # some done, some in flight
        lambda: sum(sky.completed.values()) >= 8,
    ]
    protected: dict[str, int] = {}  # final on disk at a kill -> server fetches then
    kills = 0
    for point in kill_points:
        process = await start(server, out, targets)
        try:
            await wait_for(lambda p=point, proc=process: p() or proc.returncode is not None)
        finally:
            if process.returncode is None:
                process.send_signal(signal.SIGKILL)
                kills += 1
            await process.wait()
        # Whatever is under a final name is whole.
        for name, path in finals(out).items():
            assert path.read_bytes() == fits_bytes(name, IMAGE_SIZE), name
            protected.setdefault(name, sky.fetches[name] + sky.range_fetches[name])
        # The journal always opens.
        with sqlite3.connect(out / JOURNAL_NAME) as db:
            db.execute("SELECT count(*) FROM records").fetchone()
    assert kills >= 3

    process = await start(server, out, targets)
    _, err = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode == 0, err.decode()

    on_disk = finals(out)
    assert set(on_disk) == expected
    for name, path in on_disk.items():
        assert path.read_bytes() == fits_bytes(name, IMAGE_SIZE)
    for name, fetches in protected.items():
        assert sky.fetches[name] + sky.range_fetches[name] == fetches, name
    # (The server may have sent a file whole to a harvest that died before it had
    # written it: that one is fetched again, as it must be: it was never complete here.)
    leftovers = [p for p in out.rglob("*") if p.name.endswith((".part", ".part.json"))]
    assert leftovers == []
    assert not any(os.path.getsize(p) == 0 for p in on_disk.values())


async def test_a_killed_datalink_harvest_resumes_without_refetching(
    server: LocalServer, tmp_path: Path
):
    """SIGKILL while DataLink records are resolved and their files fetched."""
    from tests.linksky import FIELDS, LinkSky, field_fits

    sky = LinkSky(server, delay=0.08)
    out = tmp_path / "out"
    targets = tmp_path / "targets.txt"
    targets.write_text("".join(f"{FIELDS[n][0]} {FIELDS[n][1]}\n" for n in ("m51_r", "m101_r")))

    async def run() -> asyncio.subprocess.Process:
        return await asyncio.create_subprocess_exec(
            sys.executable, "-m", "voharvest", "harvest",
            "--sia2", server.url("/sia2"), "--targets", str(targets),
            "--size", "0.1", "--format", "image/fits", "--out", str(out),
            "--no-rate-limit", "--downloads", "2", "--no-progress",
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip

    def whole() -> dict[str, int]:
        found = {}
        for path in out.rglob("*.fits"):
            name = next(n for n in FIELDS if n in path.name.lower())
            assert path.read_bytes() == field_fits(name), path  # never a partial file
            found[name] = sky.fetches[f"{name}.fits"]
        return found

    protected: dict[str, int] = {}
    for point in (
        lambda: sky.fetches["/dl"] >= 1,  # resolving
        lambda: sum(sky.completed.values()) >= 1,  # one file whole, others in flight
    ):
        process = await run()
        try:
            await wait_for(lambda p=point, proc=process: p() or proc.returncode is not None)
        finally:
            if process.returncode is None:
                process.send_signal(signal.SIGKILL)
            await process.wait()
        for name, fetches in whole().items():
            protected.setdefault(name, fetches)
    process = await run()
    _, err = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode == 0, err.decode()
    assert set(whole()) == set(FIELDS)
    for name, fetches in protected.items():
        assert sky.fetches[f"{name}.fits"] == fetches, name  # complete then: not fetched again
    with sqlite3.connect(out / JOURNAL_NAME) as db:
        states = dict(
            db.execute("SELECT kind, group_concat(DISTINCT state) FROM records GROUP BY kind")
        )
    assert states == {"datalink": "resolved", "file": "done"}
