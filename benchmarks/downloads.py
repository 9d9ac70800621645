"""Benchmark 3, downloads: voharvest against aria2c -j16 and sequential curl on the same files.

::

    python -m benchmarks.downloads [--gib 1.0 --file-mib 8 --hosts 1] [--smoke] [--out DIR]

A VOFarm in a process of its own serves ``--gib`` GiB as FITS files of
``--file-mib`` MiB (no rate limit, Range on, no latency): one tile per file.
Each contender fetches every file into a fresh directory on the same disk,
in a process of its own, reaped with ``os.wait4`` for its peak RSS and CPU:

- **voharvest harvest**: ``voharvest.harvest(...)`` with ``download_to``, one
  target per tile on the farm's SIA 1.0 service (``images_per_search=1``):
  searches, journal and downloads, 16 downloads in flight. The product.
- **voharvest download**: ``VOClient.download`` under a 16-worker queue over
  the URL list, the same list the others get: the client's transfer alone.
- **aria2c** ``-j16 -x1 -i urls.txt`` (Debian package aria2).
- **curl, one process**: ``curl -K config`` with one ``url``/``output`` pair
  per file and no ``--parallel``: one transfer after another over one
  kept-alive connection.
- **curl, a process per file**: ``curl -s -o FILE URL`` one after another.

voharvest's children are this module run with ``--child``; they time the
transfer phase themselves (client open to close, interpreter start and
imports excluded and reported apart), the external tools are timed around
their process. Every process is forked by a small launcher (see
:func:`run_measured`), so its peak RSS is its own. Every file is checked: its
size, the tile named in its FITS header, and three 4 KiB windows against the
farm's bytes. Between runs the directory is deleted and the disk synced,
outside the clocks. Each contender runs ``--repeat`` times (median); every
round runs every contender (and every diagnosis) once, in a different order.

``--diagnose`` adds voharvest variants that explain a missed target: the
defaults again (a second series: the run-to-run noise), the harvest's
searches alone, ``chunk_bytes`` 256 KiB and 4 MiB, ``file_workers``
1, 4 and 16, 8 and 1 workers, and no fsync per file
(``ClientConfig(fsync=False)``, or ``os.fsync`` made a no-op in the child
where voharvest lacks that setting). Missing aria2c or curl are installed
with apt-get when running as root (not with ``--smoke`` or
``--no-install``); one still missing is reported as unavailable and the
others run.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MiB = 1024 * 1024
GiB = 1024 * MiB
REPO = Path(__file__).resolve().parents[1]
RSS_TARGET_BYTES = 100 * 1000 * 1000  # "100 MB": decimal megabytes (95.4 MiB)
TARGET_VS_ARIA2C = 1.5
TARGET_VS_CURL = 0.8
WINDOW = 4096

# --- processes ----------------------------------------------------------------------------


@dataclass
class Measured:
    """One child process, reaped with os.wait4: exit code, wall time, peak RSS, CPU."""

    returncode: int
    wall: float
    maxrss_kib: int
    cpu: float
    stdout: str = ""
    stderr: str = ""
    timed_out: bool = False
    samples: list[tuple[float, int]] = field(default_factory=list)  # (seconds, VmRSS KiB)
    appeared: dict[str, float] = field(default_factory=dict)  # watched path -> seconds

    @property
    def maxrss_bytes(self) -> int:
        return self.maxrss_kib * 1024


# Runs the measured command as its own child and reports the command's rusage alone.
# A child's ru_maxrss starts from the RSS of the process it was forked (or vforked)
# from: Linux keeps the old image's high-water mark across exec. So a command
# launched straight from this (large) process would report at least our RSS; from
# this small launcher, at least the launcher's (RSS_FLOOR_KIB, measured once).
_LAUNCHER = """
import json, os, sys, time
report, command = sys.argv[1], sys.argv[2:]
began = time.perf_counter()
pid = os.fork()
if pid == 0:
    try:
        os.execvp(command[0], command)
    finally:
        os._exit(127)
_, status, usage = os.wait4(pid, 0)
wall = time.perf_counter() - began
with open(report, "w") as handle:
    json.dump({"code": os.waitstatus_to_exitcode(status), "wall": wall,
               "maxrss_kib": usage.ru_maxrss, "cpu": usage.ru_utime + usage.ru_stime}, handle)
"""


def run_measured(
    command: Sequence[str],
    *,
    timeout: float,
    cwd: Path | None = None,
    sample: float | None = None,
    watch: Sequence[Path] = (),
) -> Measured:
    """Run ``command`` to its end: exit code, wall time, its own peak RSS and CPU.

    The command is forked by a small launcher that reaps it with ``os.wait4``
    and times it from fork to exit (the launcher's own start is not counted).
    Output goes to temporary files. The whole process group is killed if it
    outlives ``timeout``. With ``sample`` (seconds), the command's VmRSS is
    also read from /proc that often, for a profile of memory over time, and
    the time each of the ``watch`` paths first exists is noted (same clock), as
    is the time the command first wrote to stderr (key ``"stderr"``).
    """
    with (
        tempfile.TemporaryFile() as out,
        tempfile.TemporaryFile() as err,
        tempfile.TemporaryDirectory() as where,
    ):
        report = Path(where) / "usage.json"
        process = subprocess.Popen(
            [sys.executable, "-I", "-S", "-c", _LAUNCHER, str(report), *command],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            cwd=cwd,
            start_new_session=True,
        )
        samples: list[tuple[float, int]] = []
        appeared: dict[str, float] = {}
        sampler = None
        if sample:
            sampler = threading.Thread(
                target=_sample_rss,
                args=(process, sample, samples, list(watch), appeared, err.fileno()),
                daemon=True,
            )
            sampler.start()
        try:
            process.wait(timeout=timeout)
            timed_out = False
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            timed_out = True
        if sampler is not None:
            sampler.join(timeout=5)
        out.seek(0)
        err.seek(0)
        stdout = out.read().decode("utf-8", "replace")
        stderr = err.read().decode("utf-8", "replace")
        try:
            usage = json.loads(report.read_text())
        except (OSError, ValueError):
            usage = {"code": process.returncode or -1, "wall": 0.0, "maxrss_kib": 0, "cpu": 0.0}
        return Measured(
            returncode=int(usage["code"]),
            wall=float(usage["wall"]),
            maxrss_kib=int(usage["maxrss_kib"]),
            cpu=float(usage["cpu"]),
            stdout=stdout,
            stderr=stderr,
            timed_out=timed_out,
            samples=samples,
            appeared=appeared,
        )


def _sample_rss(
    launcher: subprocess.Popen[bytes],
    every: float,
    samples: list[tuple[float, int]],
    watch: list[Path],
    appeared: dict[str, float],
    stderr: int,
) -> None:
    """Append (seconds, VmRSS KiB) of the launcher's child until the launcher ends."""
    began = time.perf_counter()
    children = Path(f"/proc/{launcher.pid}/task/{launcher.pid}/children")
    child: int | None = None
    while launcher.poll() is None:
        try:
            if child is None:
                pids = children.read_text().split()
                child = int(pids[0]) if pids else None
            if child is not None:
                for line in Path(f"/proc/{child}/status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        samples.append((time.perf_counter() - began, int(line.split()[1])))
                        break
        except (OSError, ValueError):
            pass
        for path in watch:
            if str(path) not in appeared and path.exists():
                appeared[str(path)] = time.perf_counter() - began
        if "stderr" not in appeared and os.fstat(stderr).st_size:
            appeared["stderr"] = time.perf_counter() - began
        time.sleep(every)


def rss_floor_kib() -> int:
    """The peak RSS the launcher reports for a command that does nothing (``true``)."""
    return run_measured(["true"], timeout=60).maxrss_kib


def last_json(text: str) -> dict[str, Any]:
    """The last line of ``text`` that is a JSON object."""
    for line in reversed(text.splitlines()):
        line = line.strip()
        if line.startswith("{"):
            with contextlib.suppress(ValueError):
                value = json.loads(line)
                if isinstance(value, dict):
                    return value
    raise RuntimeError(f"no JSON line in the output:\n{text[-2000:]}")


class FarmProcess:
    """``python -m voharvest.testing serve ...`` as a subprocess: ready line in, counters out."""

    def __init__(self, options: Sequence[str], *, duration: float) -> None:
        self.command = [
            sys.executable,
            "-m",
            "voharvest.testing",
            "serve",
            *options,
            "--duration",
            str(duration),
        ]
        self.process: subprocess.Popen[str] | None = None
        self.ready: dict[str, Any] = {}
        self.stopped: dict[str, Any] = {}

    def __enter__(self) -> FarmProcess:
        self.process = subprocess.Popen(
            self.command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=REPO,
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            self.__exit__(None, None, None)
            raise RuntimeError(f"the farm did not start: {' '.join(self.command)}")
        self.ready = json.loads(line)
        return self

    @property
    def hosts(self) -> list[dict[str, Any]]:
        return list(self.ready["hosts"])

    def cpu_seconds(self) -> float | None:
        """CPU time the farm has used so far (user + system), from /proc; None if unknown."""
        if self.process is None:
            return None
        try:
            fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, ValueError, IndexError):
            return None

    def __exit__(self, *exc_info: object) -> None:
        process = self.process
        if process is None:
            return
        self.process = None
        try:
            rest, _ = process.communicate(timeout=30)  # closes stdin: the farm stops
        except subprocess.TimeoutExpired:
            process.kill()
            rest, _ = process.communicate()
        with contextlib.suppress(RuntimeError):
            self.stopped = last_json(rest or "")


def dirty_sources() -> list[str]:
    """Files under src/ with uncommitted changes when a benchmark ran (others may edit)."""
    try:
        text = subprocess.run(
            ["git", "status", "--porcelain", "src"],
            capture_output=True,
            text=True,
            check=False,
            cwd=REPO,
        ).stdout
    except OSError:
        return []
    return [line[3:] for line in text.splitlines() if line.strip()]


def sync_disk() -> None:
    """Flush dirty pages so one run's writeback doesn't land in the next run's clock."""
    with contextlib.suppress(AttributeError, OSError):
        os.sync()


# --- the files ----------------------------------------------------------------------------


def tile_ids(count: int) -> list[str]:
    """``count`` distinct tiles, along Dec bands from the equator northwards."""
    from voharvest.testing import tile_by_id

    ids: list[str] = []
    band = 450
    while len(ids) < count:
        index = 0
        while len(ids) < count:
            tile = tile_by_id(f"{band:03d}-{index:04d}")
            if tile is None or tile.id != f"{band:03d}-{index:04d}":
                break
            ids.append(tile.id)
            index += 1
        band += 1
        if band >= 900:
            raise ValueError(f"the sky has fewer than {count} tiles north of the equator")
    return ids


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
    ids = tile_ids(per_host)
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


# --- the voharvest children -----------------------------------------------------------------


def _child(argv: Sequence[str]) -> int:
    """Run in a child: fetch with voharvest, print one JSON line of inner timings."""
    began = time.perf_counter()
    parser = argparse.ArgumentParser(prog="benchmarks.downloads --child")
    parser.add_argument("mode", choices=("download", "harvest", "searches", "discard"))
    parser.add_argument("--spec", type=Path, required=True)
    parser.add_argument("--dir", type=Path, required=True)
    parser.add_argument("--workers", type=int, default=16)
    parser.add_argument("--chunk-bytes", type=int, default=None)
    parser.add_argument("--file-workers", type=int, default=None)
    parser.add_argument("--no-fsync", action="store_true", help="diagnosis: no fsync per file")
    parser.add_argument("--profile", type=Path, default=None, help="diagnosis: cProfile to FILE")
    args = parser.parse_args(argv)
    spec = json.loads(args.spec.read_text())

    import asyncio
    import resource

    import voharvest
    from voharvest import ClientConfig, HostPolicy, VOClient

    imported = time.perf_counter()
    rss_after_imports = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    extra: dict[str, Any] = {}
    if args.no_fsync:
        if "fsync" in {f.name for f in dataclasses.fields(ClientConfig)}:
            extra["fsync"] = False
        else:  # a voharvest without the setting: os.fsync made a no-op in this child only
            os.fsync = lambda fd: None
    if args.chunk_bytes is not None:
        extra["chunk_bytes"] = args.chunk_bytes
    if args.file_workers is not None:
        extra["file_workers"] = args.file_workers
    config = ClientConfig(host=HostPolicy(rate=math.inf, concurrency=args.workers), **extra)
    failures: list[str] = []

    async def download_all(client: VOClient) -> None:
        queue: asyncio.Queue[str | None] = asyncio.Queue(maxsize=args.workers * 2)

        async def worker() -> None:
            while (url := await queue.get()) is not None:
                try:
                    await client.download(url, args.dir, expected_format="image/fits")
                except voharvest.VOHarvestError as exc:
                    failures.append(f"{url}: {exc}")

        async with asyncio.TaskGroup() as group:
            for _ in range(args.workers):
                group.create_task(worker())
            for url in spec["urls"]:
                await queue.put(url)
            for _ in range(args.workers):
                await queue.put(None)

    async def discard_all() -> None:
        """The ceiling of an asyncio client here: aiohttp alone, 16 streams, bytes dropped."""
        import aiohttp

        queue: asyncio.Queue[str | None] = asyncio.Queue(maxsize=args.workers * 2)
        received = 0

        async def worker(session: aiohttp.ClientSession) -> None:
            nonlocal received
            while (url := await queue.get()) is not None:
                async with session.get(url) as response:
                    async for piece in response.content.iter_chunked(1 << 20):
                        received += len(piece)

        connector = aiohttp.TCPConnector(limit=args.workers)
        async with aiohttp.ClientSession(connector=connector) as session:
            async with asyncio.TaskGroup() as group:
                for _ in range(args.workers):
                    group.create_task(worker(session))
                for url in spec["urls"]:
                    await queue.put(url)
                for _ in range(args.workers):
                    await queue.put(None)
        if received != spec["bytes"]:
            failures.append(f"received {received} bytes, {spec['bytes']} expected")

    async def harvest_all(client: VOClient) -> None:
        run = voharvest.harvest(
            client,
            spec["services"],
            [tuple(t) for t in spec["targets"]],
            size=spec["size"],
            format="image/fits",
            download_to=args.dir if args.mode == "harvest" else None,
            downloads=args.workers,
        )
        async for item in run:
            if not item.ok:
                failures.append(f"{item.kind} {item.target}: {item.error}")

    loop_cpu = 0.0

    async def main() -> tuple[float, float]:
        nonlocal loop_cpu
        cpu0, loop0 = _cpu_self(), time.thread_time()  # the loop runs in this thread
        start = time.perf_counter()
        if args.mode == "discard":
            await discard_all()
        else:
            async with VOClient(config) as client:
                if args.mode == "download":
                    await download_all(client)
                else:
                    await harvest_all(client)
        loop_cpu = time.thread_time() - loop0
        return time.perf_counter() - start, _cpu_self() - cpu0

    if args.profile is not None:
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
        wall, cpu = asyncio.run(main())
        profiler.disable()
        profiler.dump_stats(args.profile)
    else:
        wall, cpu = asyncio.run(main())
    print(
        json.dumps(
            {
                "wall": wall,
                "cpu": cpu,
                "loop_cpu": loop_cpu,
                "startup": imported - began,
                "rss_after_imports_kib": rss_after_imports,
                "failures": failures[:10],
                "failed": len(failures),
            }
        ),
        flush=True,
    )
    return 0 if not failures else 1


def _cpu_self() -> float:
    import resource

    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


# --- the contenders -----------------------------------------------------------------------


@dataclass
class Outcome:
    """One run of one contender."""

    name: str
    wall: float  # the clock throughput is computed from
    process_wall: float
    cpu: float  # CPU seconds of the transfer (voharvest: its phase; tools: the process)
    process_cpu: float
    maxrss_kib: int
    returncode: int
    check: dict[str, Any]
    extra: dict[str, Any] = field(default_factory=dict)
    farm_cpu: float | None = None  # CPU the farm spent serving this run

    def throughput(self, total: int) -> float:
        return total / MiB / self.wall if self.wall > 0 else 0.0

    def loop_busy(self) -> float | None:
        """Share of the transfer the event-loop thread was on a CPU (voharvest only)."""
        loop = self.extra.get("loop_cpu")
        return loop / self.wall if loop is not None and self.wall > 0 else None

    def busy(self) -> float | None:
        """Share of all CPUs the client and the farm used together while it ran."""
        if self.farm_cpu is None or self.wall <= 0:
            return None
        return (self.cpu + self.farm_cpu) / ((os.cpu_count() or 1) * self.wall)


def _voharvest(
    mode: str, plan: Plan, directory: Path, scratch: Path, timeout: float, options: Sequence[str]
) -> tuple[Measured, dict[str, Any]]:
    spec = scratch / f"spec-{mode}.json"
    spec.write_text(
        json.dumps(
            {
                "urls": [job.url for job in plan.jobs],
                "services": plan.sia1_urls,
                "targets": plan.targets,
                "size": 0.01,
                "bytes": plan.total_bytes,
            }
        )
    )
    command = [
        sys.executable,
        "-m",
        "benchmarks.downloads",
        "--child",
        mode,
        "--spec",
        str(spec),
        "--dir",
        str(directory),
        *options,
    ]
    measured = run_measured(command, timeout=timeout, cwd=REPO)
    try:
        inner = last_json(measured.stdout)
    except RuntimeError:
        inner = {"error": measured.stderr[-2000:]}
    return measured, inner


def _aria2c(plan: Plan, directory: Path, scratch: Path, timeout: float) -> Measured:
    listing = scratch / "urls.txt"
    listing.write_text("".join(f"{job.url}\n  out={job.name}\n" for job in plan.jobs))
    command = [
        "aria2c",
        "-j16",
        "-x1",
        "-i",
        str(listing),
        "-d",
        str(directory),
        "--file-allocation=none",
        "--auto-file-renaming=false",
        "--allow-overwrite=true",
        "--console-log-level=warn",
        "--summary-interval=0",
        "--download-result=hide",
        "--quiet=true",
    ]
    return run_measured(command, timeout=timeout)


def _curl_config(plan: Plan, directory: Path, scratch: Path, timeout: float) -> Measured:
    config = scratch / "curl.config"
    config.write_text(
        "".join(f'url = "{job.url}"\noutput = "{directory / job.name}"\n' for job in plan.jobs)
    )
    return run_measured(["curl", "-s", "-S", "-f", "-K", str(config)], timeout=timeout)


def _curl_each(plan: Plan, directory: Path, timeout: float) -> Measured:
    """One ``curl -s -o FILE URL`` process after another; the sums (RSS: the largest)."""
    began = time.perf_counter()
    cpu = 0.0
    rss = 0
    code = 0
    errors = ""
    for job in plan.jobs:
        one = run_measured(
            ["curl", "-s", "-S", "-f", "-o", str(directory / job.name), job.url], timeout=timeout
        )
        cpu += one.cpu
        rss = max(rss, one.maxrss_kib)
        if one.returncode and not code:
            code, errors = one.returncode, one.stderr
    return Measured(code, time.perf_counter() - began, rss, cpu, stderr=errors)


#: Variants of the voharvest child run by ``--diagnose``: label -> (mode, child options).
DIAGNOSES: dict[str, tuple[str, list[str]]] = {
    "harvest, searches only": ("searches", []),
    "aiohttp alone, 16 streams, bytes dropped": ("discard", []),
    "download, defaults (second series)": ("download", []),
    "download, chunk 256 KiB": ("download", ["--chunk-bytes", str(256 * 1024)]),
    "download, chunk 4 MiB": ("download", ["--chunk-bytes", str(4 * MiB)]),
    "download, file workers 1": ("download", ["--file-workers", "1"]),
    "download, file workers 4": ("download", ["--file-workers", "4"]),
    "download, file workers 16": ("download", ["--file-workers", "16"]),
    "download, fsync off": ("download", ["--no-fsync"]),
    "download, 8 workers": ("download", ["--workers", "8"]),
    "download, 1 worker": ("download", ["--workers", "1"]),
}

CONTENDERS = {
    "voharvest harvest": "harvest(download_to=...), 16 downloads, searches and journal included",
    "voharvest download": "VOClient.download under a 16-worker queue, same URL list",
    "aria2c -j16": "aria2c -j16 -x1 -i urls.txt --file-allocation=none",
    "curl sequential": "one curl -K process: one transfer after another, one connection",
    "curl per file": "curl -s -o FILE URL, one process per file, one after another",
}


def run_once(
    name: str,
    plan: Plan,
    scratch: Path,
    timeout: float,
    options: Sequence[str] = (),
    farm: FarmProcess | None = None,
) -> Outcome:
    """One contender, one fresh directory, verified, then deleted."""
    directory = Path(tempfile.mkdtemp(prefix="dl-", dir=scratch))
    sync_disk()
    farm_before = farm.cpu_seconds() if farm is not None else None
    try:
        extra: dict[str, Any] = {}
        if name.startswith("voharvest"):
            mode = name.split()[-1]
            measured, inner = _voharvest(mode, plan, directory, scratch, timeout, options)
            extra = inner
            wall = float(inner.get("wall", measured.wall))
            cpu = float(inner.get("cpu", measured.cpu))
        elif name == "aria2c -j16":
            measured = _aria2c(plan, directory, scratch, timeout)
            wall, cpu = measured.wall, measured.cpu
        elif name == "curl sequential":
            measured = _curl_config(plan, directory, scratch, timeout)
            wall, cpu = measured.wall, measured.cpu
        else:
            measured = _curl_each(plan, directory, timeout)
            wall, cpu = measured.wall, measured.cpu
        farm_after = farm.cpu_seconds() if farm is not None else None
        if measured.returncode:
            extra["stderr"] = measured.stderr[-2000:]
        if name in ("voharvest searches", "voharvest discard"):  # diagnoses that keep no files
            check = {"files": 0, "expected_files": 0, "ok": not extra.get("failed")}
        else:
            check = verify(directory, plan)
        return Outcome(
            name=name,
            wall=wall,
            process_wall=measured.wall,
            cpu=cpu,
            process_cpu=measured.cpu,
            maxrss_kib=measured.maxrss_kib,
            returncode=measured.returncode,
            check=check,
            extra=extra,
            farm_cpu=None
            if farm_before is None or farm_after is None
            else farm_after - farm_before,
        )
    finally:
        shutil.rmtree(directory, ignore_errors=True)
        sync_disk()


# --- tools ----------------------------------------------------------------------------------


def ensure_tools(install: bool) -> dict[str, str | None]:
    """Paths of aria2c and curl; with ``install``, apt-get the missing ones first (as root)."""
    found = {tool: shutil.which(tool) for tool in ("aria2c", "curl")}
    missing = [tool for tool, path in found.items() if path is None]
    apt = shutil.which("apt-get")
    if missing and install and apt and os.geteuid() == 0:
        packages = ["aria2" if tool == "aria2c" else tool for tool in missing]
        print(f"installing {' '.join(packages)} with apt-get", file=sys.stderr)
        with contextlib.suppress(subprocess.SubprocessError, OSError):
            subprocess.run([apt, "update", "-qq"], check=False, timeout=600)
            subprocess.run([apt, "install", "-y", "-qq", *packages], check=False, timeout=600)
        found = {tool: shutil.which(tool) for tool in ("aria2c", "curl")}
    for tool, path in found.items():
        if path is None:
            print(f"{tool} is not installed (apt-get install aria2 curl): skipped", file=sys.stderr)
    return found


# --- the benchmark ----------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.downloads",
        description="voharvest vs aria2c -j16 and sequential curl on the same FITS files.",
    )
    parser.add_argument("--gib", type=float, default=1.0, help="GiB to fetch (default 1.0)")
    parser.add_argument("--file-mib", type=float, default=8.0, help="MiB per file (default 8)")
    parser.add_argument("--files", type=int, default=None, help="number of files (overrides)")
    parser.add_argument("--hosts", type=int, default=1, help="farm hosts (default 1)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per contender (median)")
    parser.add_argument(
        "--diagnose",
        action="store_true",
        help="also run voharvest variants (chunk size, file workers, workers, fsync off)",
    )
    parser.add_argument("--smoke", action="store_true", help="8 files of 1 MiB, one run each")
    parser.add_argument("--no-install", action="store_true", help="never apt-get aria2/curl")
    parser.add_argument("--scratch", type=Path, default=None, help="where downloads land")
    parser.add_argument("--out", type=Path, default=None, help="results directory")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds per run")
    return parser


def _median_outcome(runs: list[Outcome]) -> Outcome:
    ordered = sorted(runs, key=lambda o: o.wall)
    return ordered[len(ordered) // 2]


@contextlib.contextmanager
def _scratch(where: Path | None) -> Iterator[Path]:
    base = Path(tempfile.mkdtemp(prefix="voharvest-bench-", dir=where))
    try:
        yield base
    finally:
        shutil.rmtree(base, ignore_errors=True)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = _parser().parse_args(argv)
    if args.smoke:
        args.file_mib, args.files, args.repeat = 1.0, 8, 1
    from benchmarks import _report

    out = args.out if args.out is not None else _report.RESULTS
    image_bytes = int(args.file_mib * MiB)
    files = args.files or max(1, round(args.gib * GiB / image_bytes))
    tools = ensure_tools(install=not (args.smoke or args.no_install))
    floor = rss_floor_kib()
    load_before = os.getloadavg()
    farm_options = [
        "--hosts",
        str(args.hosts),
        "--image-bytes",
        str(image_bytes),
        "--images-per-search",
        "1",
        "--formats",
        "image/fits",
    ]
    names = ["voharvest harvest", "voharvest download"]
    names += ["aria2c -j16"] if tools["aria2c"] else []
    names += ["curl sequential", "curl per file"] if tools["curl"] else []
    with _scratch(args.scratch) as scratch, FarmProcess(farm_options, duration=7200) as farm:
        same_disk = os.stat(scratch).st_dev == os.stat(tempfile.gettempdir()).st_dev
        plan = make_plan(farm.hosts, files, image_bytes, seed=0)
        total = plan.total_bytes
        print(f"{len(plan.jobs)} files, {total / GiB:.3f} GiB, in {scratch}", file=sys.stderr)
        # Every contender and every diagnosis once per round, in a different order each
        # round: no run always follows the same one, and slow drifts of the machine's
        # load touch them all alike.
        entries: list[tuple[str, str, Sequence[str]]] = [(name, name, ()) for name in names]
        if args.diagnose:
            entries += [
                (label, f"voharvest {mode}", options)
                for label, (mode, options) in DIAGNOSES.items()
            ]
        tries: dict[str, list[Outcome]] = {label: [] for label, _, _ in entries}
        for round_ in range(args.repeat):
            shift = round_ * max(1, len(entries) // args.repeat) % len(entries)
            for label, name, options in entries[shift:] + entries[:shift]:
                outcome = run_once(name, plan, scratch, args.timeout, options, farm)
                tries[label].append(outcome)
                print(
                    f"[{round_ + 1}/{args.repeat}] {label}: {outcome.throughput(total):.0f} "
                    f"MiB/s, {outcome.wall:.2f} s, rss {outcome.maxrss_kib / 1024:.0f} MiB,"
                    f" verified {outcome.check['ok']}",
                    file=sys.stderr,
                )
    runs = {name: tries[name] for name in names}
    diagnosis = {
        label: _median_outcome(outcomes) for label, outcomes in tries.items() if label not in runs
    }
    load = {"before": load_before, "after": os.getloadavg()}
    best = {name: _median_outcome(outcomes) for name, outcomes in runs.items()}
    return _summarise(args, best, runs, diagnosis, plan, farm, tools, same_disk, floor, load, out)


def _summarise(
    args: argparse.Namespace,
    best: dict[str, Outcome],
    runs: dict[str, list[Outcome]],
    diagnosis: dict[str, Outcome],
    plan: Plan,
    farm: FarmProcess,
    tools: dict[str, str | None],
    same_disk: bool,
    floor: int,
    load: dict[str, tuple[float, float, float]],
    out: Path,
) -> dict[str, Any]:
    from benchmarks import _report

    total = plan.total_bytes
    speed = {name: o.throughput(total) for name, o in best.items()}
    headline = best["voharvest harvest"]

    def ratio(name: str, against: str) -> float | None:
        if against not in speed or not speed[against]:
            return None
        return speed[name] / speed[against]

    figures = {
        "files": len(plan.jobs),
        "file_bytes": plan.expected[plan.jobs[0].tile].size,
        "total_bytes": total,
        "throughput_mib_s": speed,
        "harvest_vs_aria2c": ratio("voharvest harvest", "aria2c -j16"),
        "harvest_vs_curl": ratio("voharvest harvest", "curl sequential"),
        "download_vs_aria2c": ratio("voharvest download", "aria2c -j16"),
        "download_vs_curl": ratio("voharvest download", "curl sequential"),
        "harvest_peak_rss_bytes": headline.maxrss_kib * 1024,
        "download_peak_rss_bytes": best["voharvest download"].maxrss_kib * 1024,
        "cpu_s_per_gib": {name: o.cpu / (total / GiB) for name, o in best.items()},
        "all_verified": all(o.check["ok"] for outs in runs.values() for o in outs),
        "all_exit_zero": all(o.returncode == 0 for outs in runs.values() for o in outs),
        "aria2c": "available" if tools["aria2c"] else "unavailable",
        "curl": "available" if tools["curl"] else "unavailable",
    }
    targets = {
        which: _targets(
            ratio(f"voharvest {which}", "aria2c -j16"),
            ratio(f"voharvest {which}", "curl sequential"),
            best[f"voharvest {which}"].maxrss_kib * 1024,
        )
        for which in ("download", "harvest")
    }
    header = [
        "contender",
        "MiB/s",
        "wall s",
        "vs aria2c",
        "vs curl seq.",
        "peak RSS MiB",
        "CPU s/GiB",
        "CPUs busy",
        "files ok",
    ]
    rows = []
    for name, outcome in best.items():
        rows.append(
            [
                name,
                speed[name],
                outcome.wall,
                _fmt(ratio(name, "aria2c -j16")),
                _fmt(ratio(name, "curl sequential")),
                outcome.maxrss_kib / 1024,
                outcome.cpu / (total / GiB),
                _percent(outcome.busy()),
                f"{outcome.check['files']}/{len(plan.jobs)}"
                + ("" if outcome.check["ok"] else " FAILED"),
            ]
        )
    if not tools["aria2c"]:
        rows.append(["aria2c -j16", "unavailable", "", "", "", "", "", "", ""])
    for label, outcome in diagnosis.items():
        rows.append(
            [
                f"(diagnosis) {'' if label.startswith('aiohttp') else 'voharvest '}{label}",
                outcome.throughput(total),
                outcome.wall,
                _fmt(_safe_div(outcome.throughput(total), speed.get("aria2c -j16"))),
                _fmt(_safe_div(outcome.throughput(total), speed.get("curl sequential"))),
                outcome.maxrss_kib / 1024,
                outcome.cpu / (total / GiB),
                _percent(outcome.busy()),
                "no files (by design)"
                if outcome.name in ("voharvest searches", "voharvest discard")
                else f"{outcome.check['files']}/{len(plan.jobs)}",
            ]
        )
    summary = _summary_text(figures, targets, best, diagnosis, args, same_disk, floor, load)
    data = {
        "parameters": {
            "files": len(plan.jobs),
            "file_mib": args.file_mib,
            "hosts": args.hosts,
            "repeat": args.repeat,
            "smoke": args.smoke,
        },
        "contenders": CONTENDERS,
        "figures": figures,
        "targets": targets,
        "median_runs": {name: _outcome_dict(o, total) for name, o in best.items()},
        "all_runs": {name: [_outcome_dict(o, total) for o in outs] for name, outs in runs.items()},
        "diagnosis": {label: _outcome_dict(o, total) for label, o in diagnosis.items()},
        "farm": farm.stopped.get("totals", {}),
        "same_disk": same_disk,
        "rss_floor_bytes": floor * 1024,
        "load_average": load,
        "uncommitted_sources": dirty_sources(),
    }
    markdown = _report.write(
        "downloads",
        title="Downloads: voharvest vs aria2c -j16 and sequential curl",
        summary=summary,
        header=header,
        rows=rows,
        data=data,
        plot=(list(speed), list(speed.values()), "MiB/s (higher is better)"),
        directory=out,
    )
    data["markdown"] = str(markdown)
    data["json"] = str(out / "downloads.json")
    return data


def _targets(vs_aria2c: float | None, vs_curl: float | None, rss: int) -> dict[str, Any]:
    def entry(value: float | None, target: float, higher: bool) -> dict[str, Any]:
        met = None if value is None else (value >= target if higher else value <= target)
        return {"target": target, "value": value, "met": met}

    return {
        "vs_aria2c": entry(vs_aria2c, TARGET_VS_ARIA2C, True),
        "vs_curl": entry(vs_curl, TARGET_VS_CURL, True),
        "peak_rss_bytes": entry(rss, RSS_TARGET_BYTES, False),
    }


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.0f} %"


def _safe_div(a: float, b: float | None) -> float | None:
    return a / b if b else None


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _outcome_dict(outcome: Outcome, total: int) -> dict[str, Any]:
    return {
        "throughput_mib_s": outcome.throughput(total),
        "wall_s": outcome.wall,
        "process_wall_s": outcome.process_wall,
        "cpu_s": outcome.cpu,
        "process_cpu_s": outcome.process_cpu,
        "peak_rss_bytes": outcome.maxrss_kib * 1024,
        "farm_cpu_s": outcome.farm_cpu,
        "cpus_busy": outcome.busy(),
        "event_loop_busy": outcome.loop_busy(),
        "returncode": outcome.returncode,
        "check": outcome.check,
        "inner": outcome.extra,
    }


def _summary_text(
    figures: dict[str, Any],
    targets: dict[str, Any],
    best: dict[str, Outcome],
    diagnosis: dict[str, Outcome],
    args: argparse.Namespace,
    same_disk: bool,
    floor: int,
    load: dict[str, tuple[float, float, float]],
) -> str:
    def verdict(entry: dict[str, Any]) -> str:
        return {True: "met", False: "**missed**", None: "not measured"}[entry["met"]]

    def judged(which: str) -> str:
        t = targets[which]
        return (
            f"vs aria2c ≥ {TARGET_VS_ARIA2C}: {_fmt(t['vs_aria2c']['value'])} "
            f"({verdict(t['vs_aria2c'])}); vs sequential curl ≥ {TARGET_VS_CURL}: "
            f"{_fmt(t['vs_curl']['value'])} ({verdict(t['vs_curl'])}); peak RSS ≤ 100 MB: "
            f"{t['peak_rss_bytes']['value'] / 1e6:.0f} MB ({verdict(t['peak_rss_bytes'])})"
        )

    download = best["voharvest download"]
    startup = download.extra.get("startup")
    imported = download.extra.get("rss_after_imports_kib")
    lines = [
        f"{figures['files']} FITS files of {figures['file_bytes']:,} bytes "
        f"({figures['total_bytes'] / GiB:.2f} GiB) from a VOFarm of {args.hosts} host(s) in its "
        f"own process (no latency, no rate limit, Range on); median of {args.repeat} run(s) "
        "per contender, in a different order each round, each into a fresh directory"
        + (" on the same disk" if same_disk else "")
        + "; every file's size, tile and three 4 KiB windows checked"
        + (" (all verified)." if figures["all_verified"] else " (**some failed**)."),
        "",
        "`voharvest download`: `VOClient(ClientConfig(host=HostPolicy(rate=inf, "
        "concurrency=16)))`, `client.download` under 16 workers fed from a bounded queue, over "
        "the URL list the others get. `voharvest harvest`: `voharvest.harvest(...)` with "
        "`download_to`, 16 downloads, one target per file on the farm's SIA 1.0 service, so "
        "its time includes a search and journal entries per file. `curl sequential`: one "
        "`curl -K` process, transfers one after another on one connection; `curl per file`: "
        "`curl -s -o FILE URL` per file.",
        "",
        "voharvest's wall time and CPU are its transfer phase, client open to close, measured "
        "inside its process; interpreter start and imports "
        + (f"({startup:.2f} s) " if startup is not None else "")
        + "are left out. aria2c and curl are timed around their process. Peak RSS (whole "
        "process) and the tools' CPU come from `os.wait4` (curl per file: the largest RSS, the "
        f"CPU summed); an RSS reads at least {floor / 1024:.1f} MiB, the launcher's own. The "
        "farm serves from Python on the same 2 CPUs, so a client's CPU per GiB is taken from "
        "the server's share. Load average (other work on the machine) "
        f"{load['before'][0]:.2f} before, {load['after'][0]:.2f} after.",
        "",
        f"Targets, voharvest download: {judged('download')}.",
        f"Targets, voharvest harvest: {judged('harvest')}.",
    ]
    lines += _why(figures, targets, best, diagnosis, imported)
    if figures["aria2c"] == "unavailable":
        lines += ["", "aria2c -j16: unavailable (not installed: `apt-get install aria2`)."]
    return "\n".join(lines)


def _why(
    figures: dict[str, Any],
    targets: dict[str, Any],
    best: dict[str, Outcome],
    diagnosis: dict[str, Outcome],
    imported: int | None,
) -> list[str]:
    """Measured reasons for missed targets, from this run's figures and diagnoses."""
    missed = {
        name
        for entries in targets.values()
        for name, entry in entries.items()
        if entry["met"] is False
    }
    lines: list[str] = []
    if "peak_rss_bytes" in missed and imported:
        lines += ["", _why_memory(figures, best, diagnosis, imported)]
    if missed - {"peak_rss_bytes"}:
        lines += ["", _why_speed(figures, best, diagnosis)]
    return lines


def _why_memory(
    figures: dict[str, Any], best: dict[str, Outcome], diagnosis: dict[str, Outcome], imported: int
) -> str:
    rss = best["voharvest download"].maxrss_kib
    text = (
        f"**Peak RSS, why:** {imported / 1024:.0f} MiB are held after the imports, before "
        "any download (`import voharvest` loads astropy through `_config` -> "
        f"`protocol.regtap`); the 16 transfers add {(rss - imported) / 1024:.0f} MiB."
    )
    small = diagnosis.get("download, chunk 256 KiB")
    large = diagnosis.get("download, chunk 4 MiB")
    if small and large and figures["file_bytes"] >= 4 * MiB:  # else 4 MiB never fills
        slope = (large.maxrss_kib - small.maxrss_kib) / 16 / ((4 * MiB - 256 * 1024) / 1024)
        text += (
            f" With `chunk_bytes` at 256 KiB and 4 MiB the peak is "
            f"{small.maxrss_kib / 1024:.0f} and {large.maxrss_kib / 1024:.0f} MiB: each "
            f"stream holds about {slope:.1f} x `chunk_bytes` (the `bytearray` that gathers a "
            "chunk plus the `bytes()` copy handed to the write)."
        )
    one = diagnosis.get("download, 1 worker")
    if one:
        text += f" One stream alone peaks at {one.maxrss_kib / 1024:.0f} MiB."
    return text + (
        " **What would close it:** import astropy only where VOTables are parsed or "
        "positions resolved, and write each received piece as it comes (or a "
        "`memoryview` of one reused buffer) with a smaller default `chunk_bytes` "
        "(256 KiB), so a stream holds about one chunk, not two."
    )


def _why_speed(
    figures: dict[str, Any], best: dict[str, Outcome], diagnosis: dict[str, Outcome]
) -> str:
    total = figures["total_bytes"]
    gib = total / GiB
    cpu = figures["cpu_s_per_gib"]
    plain = best["voharvest download"]
    busy = {name: o.busy() for name, o in best.items() if o.busy() is not None}
    loop = plain.loop_busy()
    text = "**Throughput, why:**"
    if loop is not None:
        text += (
            f" voharvest's event-loop thread, through which every received byte passes in "
            f"Python, was on a CPU {_percent(loop)} of the transfer"
            + (
                ": that one thread is the bottleneck"
                if loop >= 0.85
                else ", so it is not saturated: the rest of the time it waits (for data, for the "
                "disk, or for a CPU the farm or the file threads hold)"
            )
        )
    if "voharvest download" in busy:
        text += (
            f" (both CPUs together, client and farm: {_percent(busy['voharvest download'])} "
            "busy"
            + "".join(
                f"; {name} and farm {_percent(busy[name])}"
                for name in ("curl sequential", "aria2c -j16")
                if name in busy
            )
            + ")"
        )
    text += (
        f". voharvest download spends {cpu['voharvest download']:.2f} CPU s per GiB in its "
        "transfer"
        + (f", curl {cpu['curl sequential']:.2f}" if "curl sequential" in cpu else "")
        + (f", aria2c {cpu['aria2c -j16']:.2f}" if "aria2c -j16" in cpu else "")
        + ": every byte is received into a fresh `bytes` per read by asyncio, appended to "
        "a `bytearray`, copied again by `bytes()` and handed to a thread, where curl "
        "writes from one buffer."
    )
    searches = diagnosis.get("harvest, searches only")
    harvest = best.get("voharvest harvest")
    if searches and harvest:
        text += (
            f" The harvest adds one SIA search per file: its searches alone take "
            f"{searches.wall:.2f} s and {searches.cpu / gib:.2f} CPU s per GiB of files "
            f"(astropy parses each answer on the event loop), against the harvest's "
            f"{harvest.wall - plain.wall:+.2f} s over the plain downloads."
        )
    settings = [
        (label.removeprefix("download, "), o)
        for label, o in diagnosis.items()
        if label.startswith("download, ")
    ]
    if settings:
        label, fastest = max(settings, key=lambda lo: lo[1].throughput(total))
        against = [
            f"{fastest.throughput(total) / best[tool].throughput(total):.2f}x {tool}"
            for tool in ("aria2c -j16", "curl sequential")
            if tool in best
        ]
        text += (
            f" Of the settings tried (table), the best, {label}, reached "
            f"{fastest.throughput(total):.0f} MiB/s ({', '.join(against)})."
        )
    ceiling = diagnosis.get("aiohttp alone, 16 streams, bytes dropped")
    if ceiling:
        text += (
            f" aiohttp alone, 16 streams dropping the bytes (no files, no voharvest), reached "
            f"{ceiling.throughput(total):.0f} MiB/s with its event loop on a CPU "
            f"{_percent(ceiling.loop_busy())} of the time: the ceiling of an asyncio client "
            "against this farm on this machine."
        )
    unsynced = diagnosis.get("download, fsync off")
    if unsynced:
        gain = unsynced.throughput(total) / plain.throughput(total) - 1
        text += (
            " voharvest fsyncs every file before renaming it (power-cut safety), which "
            f"aria2c and curl don't; without: {unsynced.throughput(total):.0f} MiB/s "
            f"({gain:+.0%} over the defaults) and {unsynced.cpu / gib:.2f} CPU s per GiB"
            + (
                ": part of the gap is that safety's price (`ClientConfig(fsync=False)` trades "
                "it away)."
                if gain >= 0.1
                else ", within the noise: the fsync is not what limits it."
            )
        )
    network_fine = ceiling is not None and ceiling.throughput(total) > max(
        o.throughput(total) for o in best.values()
    )
    return text + (
        " **What would close it:** "
        + ("the file path, not the network: " if network_fine else "")
        + "fewer copies and thread hops per byte (write the received pieces as they come, "
        "no gathering `bytearray` and `bytes()` copy), and a stream that keeps reading "
        "while its previous write is "
        "on a thread (today it awaits each write before reading on); and for the harvest a "
        "cheaper parse of small SIA answers (a streaming reader of "
        "the few columns used, instead of a full astropy `Table`), or more records per "
        "search: real services answer with many records, here every search yields one."
    )


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        sys.exit(_child(sys.argv[2:]))
    result = main()
    print(result["markdown"])
