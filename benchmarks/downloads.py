"""Benchmark 3, downloads: voharvest against aria2c -j16 and sequential curl on the same files.

::

    python -m benchmarks.downloads [--gib 1.0 --file-mib 8 --hosts 1] [--repeat 3]
        [--diagnose] [--smoke] [--scratch DIR] [--out DIR]

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

voharvest's children (``python -m benchmarks._downloads_child``) time the
transfer phase themselves (client open to close, interpreter start and imports
excluded and reported apart); the external tools are timed around their
process. Peak RSS is the process's own high-water mark, or, where it has child
processes, the larger of that and the summed RSS of its process tree sampled
every 50 ms. Every file is checked: its
size, the tile named in its FITS header, and three 4 KiB windows against the
farm's bytes. Between runs the directory is deleted and the disk synced,
outside the clocks. Each contender runs ``--repeat`` times (median); every
round runs every contender (and every diagnosis) once, in a different order.

``--diagnose`` adds voharvest variants, each a figure of its own: the
defaults again (a second series: the run-to-run noise), the harvest's
searches alone, aiohttp alone with the bytes dropped, ``chunk_bytes`` 256 KiB
and 4 MiB, ``file_workers`` 1, 4 and 16, 8 and 1 workers, and no fsync per
file. A missing aria2c or curl is reported ("aria2c: not installed") and the
others run; no benchmark installs anything.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks import _harness, _report
from benchmarks._download_files import Plan, make_plan, verify
from benchmarks._harness import REPO, Farm, GiB, MiB
from benchmarks._process import Measured, rss_floor_kib, run_measured, tools

#: Targets of issue 13 (peak RSS in decimal megabytes: 100 MB is 95.4 MiB).
RSS_TARGET_BYTES = 100 * 1000 * 1000
TARGET_VS_ARIA2C = {"harvest": 1.5, "download": 2.0}
TARGET_VS_CURL = 0.8
SAMPLE = 0.05  # seconds between two readings of a contender's process tree RSS
SMOKE = {"file_mib": 1.0, "files": 8, "repeat": 1}
OPTIONS = {
    **_harness.workload(hosts=1),
    "scratch": _harness.SCRATCH,
    "gib": (1.0, "GiB to fetch"),
    "file_mib": (8.0, "MiB per file"),
    "files": (None, "number of files, overriding --gib", int),
    "repeat": (3, "runs per contender (median)"),
    "diagnose": (False, "also run voharvest variants (chunk size, workers, fsync off)"),
    "timeout": (900.0, "seconds per run"),
}


def sync_disk() -> None:
    """Flush dirty pages so one run's writeback doesn't land in the next run's clock."""
    with contextlib.suppress(AttributeError, OSError):
        os.sync()


# --- the contenders -----------------------------------------------------------------------


@dataclass
class Outcome:
    """One run of one contender."""

    name: str
    wall: float  # the clock throughput is computed from
    process_wall: float
    cpu: float  # CPU seconds of the transfer (voharvest: its phase; tools: the process)
    process_cpu: float
    maxrss_kib: int  # os.wait4's high-water mark, or a process tree's sampled peak
    returncode: int
    check: dict[str, Any]
    extra: dict[str, Any] = field(default_factory=dict)
    farm_cpu: float | None = None  # CPU the farm spent serving this run

    def throughput(self, total: int) -> float:
        return total / MiB / self.wall if self.wall > 0 else 0.0

    def cpu_per_gib(self, total: int) -> float:
        return self.cpu / (total / GiB)

    def loop_busy(self) -> float | None:
        """Share of the transfer the event-loop thread was on a CPU (voharvest only)."""
        loop = self.extra.get("loop_cpu")
        return loop / self.wall if loop is not None and self.wall > 0 else None

    def busy(self) -> float | None:
        """Share of all CPUs the client and the farm used together while it ran."""
        if self.farm_cpu is None or self.wall <= 0:
            return None
        return (self.cpu + self.farm_cpu) / ((os.cpu_count() or 1) * self.wall)

    def as_dict(self, total: int) -> dict[str, Any]:
        return {
            "throughput_mib_s": self.throughput(total),
            "wall_s": self.wall,
            "process_wall_s": self.process_wall,
            "cpu_s": self.cpu,
            "cpu_s_per_gib": self.cpu_per_gib(total),
            "process_cpu_s": self.process_cpu,
            "peak_rss_bytes": self.maxrss_kib * 1024,
            "farm_cpu_s": self.farm_cpu,
            "cpus_busy": self.busy(),
            "event_loop_busy": self.loop_busy(),
            "returncode": self.returncode,
            "check": self.check,
            "inner": self.extra,
        }


def _measure(command: Sequence[str], timeout: float) -> Measured:
    return run_measured(command, timeout=timeout, cwd=REPO, sample=SAMPLE)


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
    command = [sys.executable, "-m", "benchmarks._downloads_child", mode]
    command += ["--spec", str(spec), "--dir", str(directory), *options]
    measured = _measure(command, timeout)
    try:
        inner = _harness.last_json(measured.stdout)
    except RuntimeError:
        inner = {"error": measured.stderr[-2000:]}
    return measured, inner


def _aria2c(plan: Plan, directory: Path, scratch: Path, timeout: float) -> Measured:
    listing = scratch / "urls.txt"
    listing.write_text("".join(f"{job.url}\n  out={job.name}\n" for job in plan.jobs))
    command = ["aria2c", "-j16", "-x1", "-i", str(listing), "-d", str(directory)]
    command += [
        "--file-allocation=none",
        "--auto-file-renaming=false",
        "--allow-overwrite=true",
        "--console-log-level=warn",
        "--summary-interval=0",
        "--download-result=hide",
        "--quiet=true",
    ]
    return _measure(command, timeout)


def _curl_config(plan: Plan, directory: Path, scratch: Path, timeout: float) -> Measured:
    config = scratch / "curl.config"
    config.write_text(
        "".join(f'url = "{job.url}"\noutput = "{directory / job.name}"\n' for job in plan.jobs)
    )
    return _measure(["curl", "-s", "-S", "-f", "-K", str(config)], timeout)


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
NO_FILES = ("voharvest searches", "voharvest discard")  # diagnoses that keep no files

CONTENDERS = {
    "voharvest harvest": "harvest(download_to=...), 16 downloads, searches and journal included",
    "voharvest download": "VOClient.download under a 16-worker queue, same URL list",
    "aria2c -j16": "aria2c -j16 -x1 -i urls.txt --file-allocation=none",
    "curl sequential": "one curl -K process: one transfer after another, one connection",
    "curl per file": "curl -s -o FILE URL, one process per file, one after another",
}


def run_once(
    name: str, plan: Plan, scratch: Path, timeout: float, options: Sequence[str], farm: Farm
) -> Outcome:
    """One contender, one fresh directory, verified, then deleted."""
    with _harness.scratch("dl-", scratch) as directory:
        sync_disk()
        farm_before = farm.cpu_seconds()
        extra: dict[str, Any] = {}
        if name.startswith("voharvest"):
            measured, extra = _voharvest(
                name.split()[-1], plan, directory, scratch, timeout, options
            )
            wall = float(extra.get("wall", measured.wall))
            cpu = float(extra.get("cpu", measured.cpu))
        else:
            if name == "aria2c -j16":
                measured = _aria2c(plan, directory, scratch, timeout)
            elif name == "curl sequential":
                measured = _curl_config(plan, directory, scratch, timeout)
            else:
                measured = _curl_each(plan, directory, timeout)
            wall, cpu = measured.wall, measured.cpu
        farm_after = farm.cpu_seconds()
        if measured.returncode:
            extra["stderr"] = measured.stderr[-2000:]
        if name in NO_FILES:
            check = {"files": 0, "expected_files": 0, "ok": not extra.get("failed")}
        else:
            check = verify(directory, plan)
    sync_disk()
    return Outcome(
        name=name,
        wall=wall,
        process_wall=measured.wall,
        cpu=cpu,
        process_cpu=measured.cpu,
        maxrss_kib=measured.peak_kib,
        returncode=measured.returncode,
        check=check,
        extra=extra,
        farm_cpu=None if farm_before is None or farm_after is None else farm_after - farm_before,
    )


# --- the benchmark ----------------------------------------------------------------------------


def _median_outcome(runs: list[Outcome]) -> Outcome:
    ordered = sorted(runs, key=lambda o: o.wall)
    return ordered[len(ordered) // 2]


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = _harness.arguments(__file__, __doc__, argv, OPTIONS, SMOKE)
    image_bytes = int(args.file_mib * MiB)
    files = args.files or max(1, round(args.gib * GiB / image_bytes))
    found = tools("aria2c", "curl")
    floor = rss_floor_kib()
    farm_options = ["--hosts", str(args.hosts), "--image-bytes", str(image_bytes)]
    farm_options += ["--images-per-search", "1", "--formats", "image/fits"]
    names = ["voharvest harvest", "voharvest download"]
    names += ["aria2c -j16"] if found["aria2c"] else []
    names += ["curl sequential", "curl per file"] if found["curl"] else []
    with (
        _harness.scratch("voharvest-bench-", args.scratch) as scratch,
        Farm(*farm_options, duration=7200) as farm,
    ):
        same_disk = os.stat(scratch).st_dev == os.stat(tempfile.gettempdir()).st_dev
        plan = make_plan(farm.hosts, files, image_bytes, seed=0)
        total = plan.total_bytes
        print(f"{len(plan.jobs)} files, {total / GiB:.3f} GiB", file=sys.stderr)
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
    best = {name: _median_outcome(outcomes) for name, outcomes in runs.items()}
    diagnosis = {
        label: _median_outcome(outcomes) for label, outcomes in tries.items() if label not in runs
    }
    data = _figures(args, best, runs, diagnosis, plan, found)
    data["farm"] = farm.totals
    data["same_disk"] = same_disk
    data["rss_floor_bytes"] = floor * 1024
    data["uncommitted_sources"] = _harness.dirty_sources()
    _write(data, best, diagnosis, plan, args)
    return data


def _figures(
    args: Any,
    best: dict[str, Outcome],
    runs: dict[str, list[Outcome]],
    diagnosis: dict[str, Outcome],
    plan: Plan,
    found: dict[str, str | None],
) -> dict[str, Any]:
    total = plan.total_bytes
    speed = {name: o.throughput(total) for name, o in best.items()}

    def ratio(name: str, against: str) -> float | None:
        return speed[name] / speed[against] if speed.get(against) else None

    aria2c_cpu = best["aria2c -j16"].cpu_per_gib(total) if "aria2c -j16" in best else None
    figures = {
        "files": len(plan.jobs),
        "file_bytes": plan.expected[plan.jobs[0].tile].size,
        "total_bytes": total,
        "throughput_mib_s": speed,
        "harvest_vs_aria2c": ratio("voharvest harvest", "aria2c -j16"),
        "harvest_vs_curl": ratio("voharvest harvest", "curl sequential"),
        "download_vs_aria2c": ratio("voharvest download", "aria2c -j16"),
        "download_vs_curl": ratio("voharvest download", "curl sequential"),
        "harvest_peak_rss_bytes": best["voharvest harvest"].maxrss_kib * 1024,
        "download_peak_rss_bytes": best["voharvest download"].maxrss_kib * 1024,
        "cpu_s_per_gib": {name: o.cpu_per_gib(total) for name, o in best.items()},
        "all_verified": all(o.check["ok"] for outs in runs.values() for o in outs),
        "all_exit_zero": all(o.returncode == 0 for outs in runs.values() for o in outs),
        "aria2c": "available" if found["aria2c"] else "not installed",
        "curl": "available" if found["curl"] else "not installed",
    }
    targets = {
        which: {
            "vs_aria2c": _report.target(
                ratio(f"voharvest {which}", "aria2c -j16"), TARGET_VS_ARIA2C[which]
            ),
            "vs_curl": _report.target(
                ratio(f"voharvest {which}", "curl sequential"), TARGET_VS_CURL
            ),
            "peak_rss_bytes": _report.target(
                best[f"voharvest {which}"].maxrss_kib * 1024, RSS_TARGET_BYTES, at_most=True
            ),
            "cpu_s_per_gib_vs_aria2c": _report.target(
                best[f"voharvest {which}"].cpu_per_gib(total) if aria2c_cpu else None,
                aria2c_cpu or math.nan,
                at_most=True,
            ),
        }
        for which in ("download", "harvest")
    }
    return {
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
        "median_runs": {name: o.as_dict(total) for name, o in best.items()},
        "all_runs": {name: [o.as_dict(total) for o in outs] for name, outs in runs.items()},
        "diagnosis": {label: o.as_dict(total) for label, o in diagnosis.items()},
    }


def _row(
    label: str, outcome: Outcome, total: int, speed: dict[str, float], files: str
) -> list[Any]:
    def against(tool: str) -> float | None:
        return outcome.throughput(total) / speed[tool] if speed.get(tool) else None

    busy = outcome.busy()
    return [
        label,
        outcome.throughput(total),
        outcome.wall,
        against("aria2c -j16"),
        against("curl sequential"),
        outcome.maxrss_kib / 1024,
        outcome.cpu_per_gib(total),
        None if busy is None else f"{100 * busy:.0f} %",
        files,
    ]


def _write(
    data: dict[str, Any],
    best: dict[str, Outcome],
    diagnosis: dict[str, Outcome],
    plan: Plan,
    args: Any,
) -> Path:
    figures = data["figures"]
    total = plan.total_bytes
    speed = figures["throughput_mib_s"]
    header = ["contender", "MiB/s", "wall s", "vs aria2c", "vs curl seq.", "peak RSS MiB"]
    header += ["CPU s/GiB", "CPUs busy", "files ok"]
    rows = [
        _row(
            name,
            outcome,
            total,
            speed,
            f"{outcome.check['files']}/{len(plan.jobs)}"
            + ("" if outcome.check["ok"] else " FAILED"),
        )
        for name, outcome in best.items()
    ]
    for tool, name in (("aria2c", "aria2c -j16"), ("curl", "curl sequential")):
        if figures[tool] == "not installed":
            rows.append([name, f"{tool}: not installed", *[""] * 7])
    for label, outcome in diagnosis.items():
        prefix = "" if label.startswith("aiohttp") else "voharvest "
        files = (
            "no files (by design)"
            if outcome.name in NO_FILES
            else f"{outcome.check['files']}/{len(plan.jobs)}"
        )
        rows.append(_row(f"(diagnosis) {prefix}{label}", outcome, total, speed, files))
    return _report.write(
        args,
        "downloads",
        "Downloads: voharvest vs aria2c -j16 and sequential curl",
        summary=_summary(data, best, diagnosis, args),
        table=(header, rows),
        data=data,
        plot=("MiB/s (higher is better)", speed),
    )


def _summary(
    data: dict[str, Any], best: dict[str, Outcome], diagnosis: dict[str, Outcome], args: Any
) -> str:
    figures, targets = data["figures"], data["targets"]

    def fmt(value: float | None, unit: str = "") -> str:
        return "-" if value is None or math.isnan(value) else f"{value:.2f}{unit}"

    def judged(which: str) -> str:
        t = targets[which]
        return (
            f"vs aria2c ≥ {TARGET_VS_ARIA2C[which]}: {fmt(t['vs_aria2c']['value'])} "
            f"({_report.verdict(t['vs_aria2c'])}); vs sequential curl ≥ {TARGET_VS_CURL}: "
            f"{fmt(t['vs_curl']['value'])} ({_report.verdict(t['vs_curl'])}); peak RSS ≤ "
            f"100 MB: {t['peak_rss_bytes']['value'] / 1e6:.0f} MB "
            f"({_report.verdict(t['peak_rss_bytes'])}); CPU per GiB ≤ aria2c's "
            f"({fmt(t['cpu_s_per_gib_vs_aria2c']['target'], ' s')}): "
            f"{fmt(t['cpu_s_per_gib_vs_aria2c']['value'], ' s')} "
            f"({_report.verdict(t['cpu_s_per_gib_vs_aria2c'])})"
        )

    download = best["voharvest download"]
    startup = download.extra.get("startup")
    imported = download.extra.get("rss_after_imports_kib")
    loops = ", ".join(
        f"{name} {100 * busy:.0f} %"
        for name, o in {**best, **diagnosis}.items()
        if (busy := o.loop_busy()) is not None
    )
    lines = [
        f"{figures['files']} FITS files of {figures['file_bytes']:,} bytes "
        f"({figures['total_bytes'] / GiB:.2f} GiB) from a VOFarm of {args.hosts} host(s) in its "
        f"own process (no latency, no rate limit, Range on); median of {args.repeat} run(s) "
        "per contender, in a different order each round, each into a fresh directory"
        + (" on the same disk" if data["same_disk"] else "")
        + "; every file's size, tile and three 4 KiB windows checked"
        + (" (all verified)." if figures["all_verified"] else " (**some failed**)."),
        "",
        "`voharvest download`: `VOClient(ClientConfig(host=HostPolicy(rate=inf, "
        "concurrency=16)))`, `client.download` under 16 workers fed from a bounded queue, over "
        "the URL list the others get. `voharvest harvest`: `voharvest.harvest(...)` with "
        "`download_to`, 16 downloads, one target per file on the farm's SIA 1.0 service: its "
        "time includes a search and journal entries per file. `curl sequential`: one "
        "`curl -K` process, transfers one after another on one connection; `curl per file`: "
        "`curl -s -o FILE URL` per file.",
        "",
        "voharvest's wall time and CPU are its transfer phase, client open to close, measured "
        "inside its process (CPU: the process and its ended children); interpreter start and "
        "imports "
        + (f"({startup:.2f} s) " if startup is not None else "")
        + "are left out. aria2c and curl are timed around their process. Peak RSS: the "
        "process's high-water mark (`os.wait4`), or where it had child processes the larger "
        "of that and its process tree's summed RSS sampled every "
        f"{SAMPLE * 1000:.0f} ms (curl per file: the largest, its CPU summed); an "
        f"RSS reads at least {data['rss_floor_bytes'] / MiB:.1f} MiB, the launcher's own. "
        "\"CPUs busy\": the client's and the farm's CPU over the run, as a share of all CPUs.",
        "",
        f"Targets, voharvest download: {judged('download')}.",
        f"Targets, voharvest harvest: {judged('harvest')}.",
    ]
    if imported:
        lines += [
            "",
            f"voharvest's RSS after its imports, before any download: {imported / 1024:.0f} MiB.",
        ]
    if loops:
        lines.append(f"Share of the transfer voharvest's event-loop thread was on a CPU: {loops}.")
    for tool in ("aria2c", "curl"):
        if figures[tool] == "not installed":
            lines += ["", f"{tool}: not installed; its rows are not measured."]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
