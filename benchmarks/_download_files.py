"""The files of ``python -m benchmarks.downloads``: which URLs, and whether what landed is right.

:func:`make_plan` picks the tiles and the URLs on every host; :func:`verify`
matches every file in a directory to its tile by its FITS header and checks
its size and three 4 KiB windows against the farm's bytes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks import _harness

WINDOW = 4096


@dataclass(frozen=True)
class Job:
    """One file to fetch: which host serves which tile, its URL and the name tools give it."""

    host: int
    tile: str
    url: str

    @property
    def name(self) -> str:
        return f"h{self.host}-{self.tile}.fits"


@dataclass
class Plan:
    """The files of one run and how to check them."""

    jobs: list[Job]
    targets: list[tuple[float, float]]
    sia1_urls: list[str]
    image_bytes: int
    expected: dict[str, Any] = field(default_factory=dict)  # tile -> FitsImage

    @property
    def total_bytes(self) -> int:
        return sum(self.expected[job.tile].size for job in self.jobs)


def make_plan(hosts: list[dict[str, Any]], files: int, image_bytes: int, seed: int) -> Plan:
    """``files`` URLs: the same ``files / hosts`` tiles on every host (distinct URLs)."""
    from voharvest.testing import HostConfig, VOFarm, tile_by_id

    per_host = max(1, math.ceil(files / len(hosts)))
    ids = _harness.tile_ids(per_host)
    jobs = [
        Job(host["index"], tile, f"{host['base_url']}/images/{tile}.fits")
        for tile in ids
        for host in hosts
    ]
    # The exact bytes a host serves, without starting anything: an unstarted farm's sky.
    sky = VOFarm(hosts=1, config=HostConfig(image_bytes=image_bytes), seed=seed).sky
    expected = {}
    targets = []
    for tile_id in ids:
        tile = tile_by_id(tile_id)
        assert tile is not None
        expected[tile_id] = sky.fits(tile, image_bytes, 16)
        targets.append((tile.ra, tile.dec))
    return Plan(jobs, targets, [host["sia1_url"] for host in hosts], image_bytes, expected)


def _tile_in_header(head: bytes) -> str | None:
    for start in range(0, min(len(head), 2880 * 4), 80):
        card = head[start : start + 80]
        if card.startswith(b"OBJECT  ="):
            text = card[10:].decode("ascii", "replace").split("/", 1)[0].strip().strip("'")
            return text.strip().rsplit(" ", 1)[-1]
    return None


def verify(directory: Path, plan: Plan) -> dict[str, Any]:
    """Every expected file present once, of the right size, with the right bytes (spot-checked).

    A file is matched to its tile by the OBJECT card of its FITS header, so
    the names each tool chose don't matter; ``.part`` files and the journal
    are ignored.
    """
    wanted: dict[str, int] = {}
    for job in plan.jobs:
        wanted[job.tile] = wanted.get(job.tile, 0) + 1
    found: dict[str, int] = {}
    problems: list[str] = []
    files = [
        p
        for p in directory.rglob("*")
        if p.is_file() and p.suffix == ".fits" and not p.name.endswith(".part")
    ]
    for path in files:
        size = path.stat().st_size
        with path.open("rb") as handle:
            tile = _tile_in_header(handle.read(2880 * 2)) or ""
            image = plan.expected.get(tile)
            if image is None:
                problems.append(f"{path.name}: not one of the tiles ({tile!r})")
                continue
            found[tile] = found.get(tile, 0) + 1
            if size != image.size:
                problems.append(f"{path.name}: {size} bytes, {image.size} expected")
                continue
            for start in (0, size // 2 - WINDOW // 2, size - WINDOW):
                handle.seek(start)
                if handle.read(WINDOW) != image.read(start, start + WINDOW):
                    problems.append(f"{path.name}: bytes differ at {start}")
                    break
    for tile, count in wanted.items():
        if found.get(tile, 0) != count:
            problems.append(f"tile {tile}: {found.get(tile, 0)} files, {count} expected")
    return {
        "files": len(files),
        "expected_files": len(plan.jobs),
        "bytes": sum(p.stat().st_size for p in files),
        "ok": not problems and len(files) == len(plan.jobs),
        "problems": problems[:10],
    }
