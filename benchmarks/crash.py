"""Crash safety: a CLI harvest killed with SIGKILL again and again, resumed each time.

``python -m benchmarks.crash [--runs 20] [--smoke] [--out DIR]``

A VOFarm runs in this process, its images paced by a bandwidth limit so that
a run of ``python -m voharvest harvest ... --out DIR`` (a subprocess) lasts a
few seconds. All runs share one output directory, so each resumes the one
before. Like a survey whose target list grows, each run's targets file has
``--targets-per-run`` more targets than the last run's: every run has new
searches and downloads to do as well as what the last kill interrupted, and
a kill always lands in a run with work in it.

Calibration first: one uninterrupted run of the first batch of targets in a
scratch directory measures the time to the first request (``s``, mostly
Python and astropy imports) and the time per file. Run ``k`` is then killed
with SIGKILL at a moment drawn uniformly (seeded RNG) from ``[0, E_k]``, its
expected run time: ``s`` plus the calibrated time per file times the files it
has to fetch (its new ones and those not yet final). A run that ends before
its moment is not killed, and runs go on until ``--runs`` of them were
killed. A last run, on the same target list, goes to the end.

After each kill: every file under a final name is compared byte for byte with
what the farm serves; each file found complete is remembered with the farm's
count of GETs for its path at that moment; the journal is opened with sqlite3
(``PRAGMA quick_check``) and ``voharvest status`` runs on the directory (the
command line's ``main()``, in a thread of this process: a status is a read of
the journal, and an interpreter per kill would only add its start-up). At
the end: every file is there and whole, no file complete at a kill was fetched
again, nothing partial sits under a final name, and the last run and
``voharvest status`` exit 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import random
import signal
import sqlite3
import sys
import time
import traceback
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from benchmarks import _harness, _report
from voharvest.cli import main as cli_main
from voharvest.harvesting import JOURNAL_NAME
from voharvest.testing import HostConfig, VOFarm, search_tiles

NOT_FINAL = (".part", ".part.json")
#: Files of the harvest itself at the top of its directory: the journal (with
#: its -wal and -shm, and anything else named after it) and the manifests.
JOURNAL_STEM = JOURNAL_NAME.removesuffix(".sqlite")
MANIFESTS = {"manifest.csv", "manifest.xml"}
SMOKE = {
    "runs": 3,
    "hosts": 2,
    "images_per_search": 2,
    "image_bytes": 640 * 1024,
    "bandwidth": 2 * 1024 * 1024,
    "downloads": 4,
}
OPTIONS = {
    **_harness.workload(hosts=4, images_per_search=3, image_bytes=3 * 1024 * 1024 // 2),
    **_harness.workload(concurrency=4, downloads=6, seed=0),
    "work": _harness.WORK,
    "runs": (20, "runs to kill before the last"),
    "targets_per_run": 1,
    "bandwidth": (3 * 1024 * 1024 / 2, "bytes/s"),
}


@dataclass(frozen=True)
class Settings:
    runs: int
    hosts: int
    targets_per_run: int
    images_per_search: int
    image_bytes: int
    bandwidth: float
    downloads: int
    concurrency: int
    seed: int
    size: float = 0.4

    @property
    def files_per_target(self) -> int:
        return self.hosts * self.images_per_search


# --- the harvest command -------------------------------------------------------------------


def target_positions(count: int, settings: Settings) -> list[tuple[float, float]]:
    """Targets far apart: no two searches of one host share a tile."""
    positions = [(20.0 + 7.0 * i, -60.0 + 2.5 * i) for i in range(count)]
    tiles = [
        t.id
        for ra, dec in positions
        for t in search_tiles(ra, dec, settings.size / 2, settings.images_per_search)
    ]
    if len(tiles) != len(set(tiles)) or len(tiles) != count * settings.images_per_search:
        raise SystemExit("targets share tiles or find too few: spread them differently")
    return positions


def write_targets(path: Path, positions: Sequence[tuple[float, float]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{ra} {dec}\n" for ra, dec in positions))
    return path


def command(farm: VOFarm, targets: Path, out: Path, settings: Settings) -> list[str]:
    services: list[str] = []
    for host in farm.hosts:  # even hosts SIA 1.0, odd hosts SIA 2.0
        if host.index % 2:
            services += ["--sia2", host.sia2_url]
        else:
            services += ["--service", host.sia1_url]
    return [
        sys.executable, "-m", "voharvest", "harvest", *services,
        "--targets", str(targets), "--size", str(settings.size), "--format", "image/fits",
        "--out", str(out), "--rate", "10", "--concurrency", str(settings.concurrency),
        "--searches", "4", "--downloads", str(settings.downloads), "--read-timeout", "20",
        "--no-progress",
    ]  # fmt: skip


async def spawn(argv: list[str], log: Path) -> asyncio.subprocess.Process:
    handle = await asyncio.to_thread(log.open, "ab")
    try:
        return await asyncio.create_subprocess_exec(
            *argv, stdin=asyncio.subprocess.DEVNULL, stdout=handle, stderr=handle
        )
    finally:
        handle.close()


def _status_here(out: Path) -> tuple[int, str]:
    """``voharvest status OUT`` through the CLI's main(): (exit code, stdout and stderr).

    An exception out of main() is what a process would die of: exit 1 and its
    traceback in the text, as the interpreter would print it.
    """
    text = io.StringIO()
    with contextlib.redirect_stdout(text), contextlib.redirect_stderr(text):
        try:
            code = cli_main(["status", str(out)])
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        except Exception:
            traceback.print_exc()
            code = 1
    return code, text.getvalue()


async def voharvest_status(out: Path) -> tuple[int, str]:
    return await asyncio.wait_for(asyncio.to_thread(_status_here, out), 120)


def status_failed(journal: str, code: int, text: str) -> bool:
    """Whether ``voharvest status`` failed on a directory whose journal is in this state.

    Exit 0 is a complete harvest, 1 an incomplete one (or, without a journal
    yet, "no harvest journal"); anything else, or a traceback, is a failure,
    and so is a readable journal that status can't summarise.
    """
    if code not in (0, 1) or "Traceback" in text:
        return True
    return journal == "ok" and "total:" not in text


# --- what is on disk ---------------------------------------------------------------------


def bookkeeping(relative: str) -> bool:
    return "/" not in relative and (relative.startswith(JOURNAL_STEM) or relative in MANIFESTS)


def final_files(out: Path) -> dict[str, Path]:
    """Files under final names (relative path -> path): not .part, not the bookkeeping."""
    found: dict[str, Path] = {}
    if not out.exists():
        return found
    for path in out.rglob("*"):
        relative = path.relative_to(out).as_posix()
        if path.is_file() and not bookkeeping(relative) and not path.name.endswith(NOT_FINAL):
            found[relative] = path
    return found


def partial_files(out: Path) -> int:
    return sum(1 for p in out.rglob("*.part") if p.is_file()) if out.exists() else 0


def check_journal(out: Path) -> tuple[str, str, dict[str, str]]:
    """("ok" | "absent" | "broken", detail, {relative path: url}) from the journal, via sqlite3."""
    path = out / JOURNAL_NAME
    if not path.exists():
        return "absent", "no journal yet", {}
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
        try:
            verdict = db.execute("PRAGMA quick_check").fetchone()[0]
            paths = {p: url for url, p in db.execute("SELECT url, path FROM records")}
            searches = db.execute("SELECT count(*) FROM searches").fetchone()[0]
        finally:
            db.close()
    except sqlite3.Error as exc:
        return "broken", f"{type(exc).__name__}: {exc}", {}
    if verdict != "ok":
        return "broken", f"quick_check: {verdict}", paths
    return "ok", f"{searches} searches, {len(paths)} records", paths


@dataclass
class Inspector:
    """Checks the files under final names against the farm's bytes, remembering what it saw."""

    farm: VOFarm
    settings: Settings
    verified: dict[str, tuple[int, int, int]] = field(default_factory=dict)  # path -> stat key
    urls: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.images = _harness.FarmImages(self.farm.sky, self.settings.image_bytes)

    def fetches(self, url: str) -> int:
        """GETs of this URL's path its host has seen (faulted, ranged and whole alike)."""
        return self.farm.host_of(url).counters.image_fetches[urlsplit(url).path]

    def inspect(self, out: Path, paths: dict[str, str]) -> tuple[dict[str, str], list[str]]:
        """Whole files under final names now ({relative: url}), and what is wrong."""
        self.urls.update(paths)
        problems: list[str] = []
        whole: dict[str, str] = {}
        for relative, path in sorted(final_files(out).items()):
            url = self.urls.get(relative)
            if url is None:
                problems.append(f"a file under a final name the journal never chose: {relative}")
                continue
            stat = path.stat()
            key = (stat.st_ino, stat.st_size, stat.st_mtime_ns)
            if self.verified.get(relative) != key:
                if path.read_bytes() != self.images.served(url):
                    problems.append(f"partial or corrupt under its final name: {relative}")
                    continue
                self.verified[relative] = key
            whole[relative] = url
        return whole, problems


# --- the benchmark -------------------------------------------------------------------------


@dataclass
class Run:
    run: int
    targets: int
    files_to_fetch: int
    expected: float
    planned: float
    killed: bool
    phase: str
    seconds: float
    final_files: int
    partial_files: int
    journal: str
    status_exit: int


async def wait_for_first_request(farm: VOFarm, process: asyncio.subprocess.Process) -> float:
    started = time.monotonic()
    while farm.totals().requests == 0 and process.returncode is None:  # noqa: ASYNC110
        await asyncio.sleep(0.01)  # (counters of a farm on this loop: nothing to wait on)
    return time.monotonic() - started


async def calibrate(
    farm: VOFarm, settings: Settings, scratch: Path, log: Path
) -> tuple[float, float]:
    """One uninterrupted run of the first batch: (time to first request, seconds per file)."""
    batch = target_positions(settings.targets_per_run, settings)
    targets = await asyncio.to_thread(write_targets, scratch / "calibration.txt", batch)
    started = time.monotonic()
    process = await spawn(command(farm, targets, scratch / "calibration", settings), log)
    startup = await wait_for_first_request(farm, process)
    code = await asyncio.wait_for(process.wait(), 600)
    seconds = time.monotonic() - started
    if code != 0:
        raise RuntimeError(f"the calibration run failed with exit {code}; see {log}")
    files = settings.targets_per_run * settings.files_per_target
    return startup, max(0.0, seconds - startup) / files


def phase_of(farm: VOFarm, before: tuple[int, int], fetched_all: bool) -> str:
    """Where a run was when it died, from what the farm saw during the run."""
    totals = farm.totals()
    if totals.requests == before[0]:
        return "starting (no request yet)"
    if sum(totals.image_fetches.values()) == before[1]:
        return "searching"
    return "after the last download" if fetched_all else "downloading"


async def crash(settings: Settings, work: Path) -> dict[str, Any]:
    rng = random.Random(settings.seed)
    config = HostConfig(
        latency=0.01,
        image_bytes=settings.image_bytes,
        bandwidth=settings.bandwidth,
        images_per_search=settings.images_per_search,
        formats=("image/fits",),
    )
    positions = target_positions(3 * settings.runs * settings.targets_per_run, settings)
    log = work / "harvest.log"
    out = work / "out"
    targets = work / "targets.txt"

    async with VOFarm(hosts=settings.hosts, config=config, seed=settings.seed) as farm:
        startup, per_file = await calibrate(farm, settings, work, log)
        print(f"crash: first request after {startup:.2f} s, {per_file:.2f} s/file", file=sys.stderr)
        farm.reset_counters()
        inspector = Inspector(farm, settings)
        protected: dict[str, int] = {}  # whole at a kill -> farm GETs of its path then
        ever_whole: set[str] = set()
        problems: list[str] = []
        journal_failures: list[str] = []
        status_failures: list[str] = []
        runs: list[Run] = []

        run = 0
        while sum(r.killed for r in runs) < settings.runs and run < 3 * settings.runs:
            run += 1
            count = run * settings.targets_per_run
            await asyncio.to_thread(write_targets, targets, positions[:count])
            to_fetch = count * settings.files_per_target - len(ever_whole)
            expected = startup + per_file * to_fetch
            planned = rng.uniform(0.0, expected)
            totals = farm.totals()
            before = (totals.requests, sum(totals.image_fetches.values()))
            started = time.monotonic()
            process = await spawn(command(farm, targets, out, settings), log)
            try:
                await asyncio.wait_for(process.wait(), planned)
                killed = False
            except TimeoutError:
                process.send_signal(signal.SIGKILL)
                await process.wait()
                killed = True
            seconds = time.monotonic() - started

            journal, detail, paths = check_journal(out)
            if journal == "broken":
                journal_failures.append(f"run {run}: {detail}")
            whole, bad = inspector.inspect(out, paths)
            problems += [f"run {run}: {p}" for p in bad]
            for relative, url in whole.items():
                protected.setdefault(relative, inspector.fetches(url))
            ever_whole |= set(whole)
            code, text = await voharvest_status(out)
            if status_failed(journal, code, text):
                status_failures.append(f"run {run}: exit {code}: {text.strip()[-300:]}")
            fetched_all = len(whole) == count * settings.files_per_target
            record = Run(
                run=run,
                targets=count,
                files_to_fetch=to_fetch,
                expected=round(expected, 2),
                planned=round(planned, 2),
                killed=killed,
                phase=phase_of(farm, before, fetched_all)
                if killed
                else f"finished first (exit {process.returncode})",
                seconds=round(seconds, 2),
                final_files=len(whole),
                partial_files=partial_files(out),
                journal=f"{journal}: {detail}",
                status_exit=code,
            )
            runs.append(record)
            print(f"crash: {record}", file=sys.stderr)

        expected_files = run * settings.targets_per_run * settings.files_per_target
        started = time.monotonic()
        process = await spawn(command(farm, targets, out, settings), log)
        final_exit = await asyncio.wait_for(process.wait(), 900)
        final_seconds = time.monotonic() - started
        journal, detail, paths = check_journal(out)
        if journal != "ok":
            journal_failures.append(f"final: {detail}")
        whole, bad = inspector.inspect(out, paths)
        problems += [f"final: {p}" for p in bad]
        fetched_again = {
            relative: inspector.fetches(inspector.urls[relative]) - count
            for relative, count in protected.items()
            if inspector.fetches(inspector.urls[relative]) != count
        }
        lost = sorted(ever_whole - set(whole))
        missing = expected_files - len(whole)
        status_exit, status_text = await voharvest_status(out)
        leftovers = sorted(
            p.relative_to(out).as_posix() for p in out.rglob("*.part*") if p.is_file()
        )
        totals = farm.totals()
        whole_twice = sum(
            1
            for host in farm.hosts
            for n in host.counters.completed_image_fetches.values()
            if n > 1
        )

    return {
        "settings": asdict(settings),
        "calibration": {
            "first_request_seconds": round(startup, 2),
            "seconds_per_file": round(per_file, 3),
        },
        "runs": [asdict(r) for r in runs],
        "kills": sum(r.killed for r in runs),
        "kill_phases": dict(Counter(r.phase for r in runs)),
        "final_run": {
            "targets": run * settings.targets_per_run,
            "exit": final_exit,
            "seconds": round(final_seconds, 2),
            "status_exit": status_exit,
            "status": status_text.strip().splitlines()[-1:],
        },
        "files_expected": expected_files,
        "files_final_and_verified": len(whole),
        "files_lost": len(lost) + max(0, missing),
        "lost": lost[:20],
        "files_complete_at_a_kill": len(protected),
        "files_downloaded_twice_after_completion": len(fetched_again),
        "fetched_again": fetched_again,
        "partial_or_corrupt_under_final_names": len(problems),
        "problems": problems[:20],
        "journal_failures": journal_failures,
        "status_failures": status_failures,
        "leftover_part_files_at_the_end": leftovers,
        "farm": {
            "image_gets": sum(totals.image_fetches.values()),
            "completed_image_fetches": sum(totals.completed_image_fetches.values()),
            "images_sent_whole_more_than_once": whole_twice,
            "range_requests": totals.range_requests,
            "partial_responses": totals.partial_responses,
            "statuses": {str(k): v for k, v in sorted(totals.statuses.items())},
        },
    }


def must_be_zero(figures: dict[str, Any]) -> dict[str, int]:
    return {
        "files_lost": figures["files_lost"],
        "files_downloaded_twice_after_completion": figures[
            "files_downloaded_twice_after_completion"
        ],
        "partial_or_corrupt_under_final_names": figures["partial_or_corrupt_under_final_names"],
        "journal_failures": len(figures["journal_failures"]),
        "status_failures": len(figures["status_failures"]),
        "final_run_exit": figures["final_run"]["exit"],
        "final_status_exit": figures["final_run"]["status_exit"],
        "leftover_part_files_at_the_end": len(figures["leftover_part_files_at_the_end"]),
    }


def report(figures: dict[str, Any], args: Any) -> Path:
    s = figures["settings"]
    zero = figures["must_be_zero"]
    farm = figures["farm"]
    calibration = figures["calibration"]
    phases = ", ".join(f"{phase}: {n}" for phase, n in sorted(figures["kill_phases"].items()))
    rows = [
        ["runs killed with SIGKILL / runs that finished before their moment",
         f"{figures['kills']} / {len(figures['runs']) - figures['kills']}", ""],
        ["where each run was when it ended", phases, ""],
        ["files expected / final and verified at the end",
         f"{figures['files_expected']} / {figures['files_final_and_verified']}", ""],
        ["files lost", zero["files_lost"], "0"],
        ["files complete under their final names at a kill",
         figures["files_complete_at_a_kill"], ""],
        ["of those, fetched again afterwards", zero["files_downloaded_twice_after_completion"],
         "0"],
        ["partial or corrupt files under final names (after every kill)",
         zero["partial_or_corrupt_under_final_names"], "0"],
        ["journal failed to open (sqlite3 `quick_check` after every kill)",
         zero["journal_failures"], "0"],
        ["`voharvest status` failed (after every kill)", zero["status_failures"], "0"],
        ["last run exit code / `voharvest status` exit code",
         f"{figures['final_run']['exit']} / {figures['final_run']['status_exit']}", "0 / 0"],
        [".part files left at the end", zero["leftover_part_files_at_the_end"], "0"],
        ["image GETs / sent whole / with Range (all runs)",
         f"{farm['image_gets']} / {farm['completed_image_fetches']} / {farm['range_requests']}",
         ""],
        ["images the farm sent whole more than once",
         farm["images_sent_whole_more_than_once"], ""],
    ]  # fmt: skip
    summary = f"""
{"**Smoke size.** " if args.smoke else ""}A VOFarm of {s["hosts"]} hosts in the benchmark's
process (even hosts SIA 1.0, odd SIA 2.0), {s["images_per_search"]} FITS tiles of
{s["image_bytes"]} bytes per search, each image sent at {s["bandwidth"]:g} bytes/s. The
harvest is the CLI in a subprocess, `python -m voharvest harvest --service/--sia2 ...
--targets FILE --size {s["size"]} --format image/fits --out DIR --downloads
{s["downloads"]} --concurrency {s["concurrency"]} --rate 10 --read-timeout 20`, on one
output directory throughout. Run k's targets file holds {s["targets_per_run"]} x k
targets ({figures["settings"]["hosts"] * s["images_per_search"]} files per target), so
each run resumes what the last kill interrupted and has new work too. Calibration (one
uninterrupted run of the first batch): first request after
{calibration["first_request_seconds"]} s, {calibration["seconds_per_file"]} s per file.
Run k was killed with SIGKILL at a moment drawn uniformly (seed {s["seed"]}) from 0 to
its expected run time, that startup plus the calibrated time per file times the files
it had to fetch. A run that finished before its moment was not killed, and runs went on
until {s["runs"]} had been killed. Then one last run to the
end ({figures["final_run"]["seconds"]} s). After every kill: each file under a final
name compared byte for byte with the farm's, the journal opened with sqlite3, and
`voharvest status` run (the CLI's main(), in the benchmark's process). "Fetched again"
compares the farm's count of GETs for a path at the first kill that found the file
complete with the count at the end.
"""
    return _report.write(
        args,
        "crash",
        "Crash safety: SIGKILL at random moments, then resume",
        summary=summary,
        table=(["figure", "value", "must be"], rows),
        data=figures,
    )


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = _harness.arguments(__file__, __doc__, argv, OPTIONS, SMOKE)
    settings = _harness.settings(Settings, args)
    with _harness.workdir(args.work, "voharvest-crash-") as work:
        figures = asyncio.run(crash(settings, work))
    figures["must_be_zero"] = must_be_zero(figures)
    report(figures, args)
    return figures


if __name__ == "__main__":
    result = main()
    print(json.dumps({"must_be_zero": result["must_be_zero"]}), file=sys.stderr)
    sys.exit(1 if any(result["must_be_zero"].values()) else 0)
