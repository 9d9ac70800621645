"""Benchmark 4, scale: peak RSS of a harvest at 1,000, 10,000 and 100,000 targets.

::

    python -m benchmarks.scale [--targets 1000,10000,100000] [--smoke] [--out DIR]

A fast VOFarm in a process of its own (no latency, no rate limit, one host,
one image per search, 4 KiB FITS files). For each count, a file of that many
distinct positions (tile centres, so every target has a file of its own) and
a harvest in a child process through the command line::

    python -m voharvest harvest --service <sia1 url> --targets FILE --size 0.01 \\
        --format image/fits --out DIR --no-rate-limit --no-progress

reaped with ``os.wait4`` for its peak RSS (and sampled from /proc for a
profile over time), its wall time and exit code; the files written are
counted and their sizes checked. The counts run smallest first; a count whose
CLI harvest would take longer than ``--budget`` seconds (projected from the
largest count measured so far) is run as a searches-only harvest instead:
``voharvest.harvest(...)`` without ``download_to`` in a child (the CLI needs
``--out``), and so are all smaller counts, so the ratios compare like with
like. The "engine" rows (``--engine``) run the same harvest with downloads
through the Python API, without the CLI's progress and manifest.

The CLI writes its manifest (CSV and VOTable) after the harvest; the column
"harvesting" is the largest RSS sampled before that, up to the CLI's first
line on stderr (its per-host summary), so the harvest and the manifest can be
told apart.

``--diagnose [TARGETS]`` (10,000) runs a harvest through the Python API with
tracemalloc: snapshots after a tenth and after nine tenths of the searches
(the difference, by line, is what grows with the targets while harvesting),
then ``write_manifest`` with its peak allocation.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks import _harness, _report
from benchmarks._harness import REPO, Farm, MiB
from benchmarks._process import Measured, rss_floor_kib, run_measured

#: Targets of issue 13: peak RSS within 10 % of the smallest count's; time per target
#: at the largest count.
FLAT_WITHIN = 0.10
TARGET_MS_PER_TARGET = 3.5
SIZE = 0.01  # degrees: a search returns the tile under the position only
SAMPLE = 0.25  # seconds between two readings of a harvest's RSS
SMOKE = {"targets": "50,200"}
OPTIONS = {
    "scratch": _harness.SCRATCH,
    "targets": ("1000,10000,100000", "counts, comma-separated"),
    **_harness.workload(image_bytes=4096),
    "hosts": (1, "farm hosts (the first is searched)"),
    "budget": (1500.0, "longest projected CLI harvest (s) before searches only"),
    "engine": (False, "also run each count through the Python API"),
    "timeout": (3600.0, "seconds per harvest"),
}

# --- one run --------------------------------------------------------------------------------


@dataclass
class Run:
    """One harvest of one count."""

    targets: int
    mode: str  # "cli", "engine" or "searches"
    returncode: int
    wall: float
    peak_rss_kib: int
    cpu: float
    files: int
    files_ok: bool
    inner: dict[str, Any] = field(default_factory=dict)
    rss_profile: list[tuple[float, int]] = field(default_factory=list)
    stderr_tail: str = ""
    # Seconds into the run the harvest ended: the CLI's first stderr line, its per-host
    # summary, printed after the last item and before the manifest is read and written.
    manifest_at: float | None = None

    @property
    def harvest_rss_kib(self) -> int | None:
        """Largest sampled RSS before the harvest's end (CLI runs), None if unknown."""
        if self.manifest_at is None:
            return None
        # A sample taken in the same interval as the marker may already be the manifest's.
        before = [rss for at, rss in self.rss_profile if at < self.manifest_at - SAMPLE]
        return max(before) if before else None

    @property
    def per_target_ms(self) -> float:
        return 1000 * self.wall / self.targets

    def as_dict(self) -> dict[str, Any]:
        return {
            "targets": self.targets,
            "mode": self.mode,
            "returncode": self.returncode,
            "wall_s": self.wall,
            "per_target_ms": self.per_target_ms,
            "peak_rss_bytes": self.peak_rss_kib * 1024,
            "cpu_s": self.cpu,
            "files": self.files,
            "files_ok": self.files_ok,
            "inner": self.inner,
            "harvest_ended_s": self.manifest_at,
            "sampled_peak_rss_harvesting_bytes": (self.harvest_rss_kib or 0) * 1024 or None,
            "rss_profile_kib": _thin(self.rss_profile, 60),
            "stderr_tail": self.stderr_tail,
        }


def _thin(samples: list[tuple[float, int]], keep: int) -> list[tuple[float, int]]:
    """At most ``keep`` samples, evenly spaced, the highest always kept."""
    if len(samples) <= keep:
        return samples
    step = len(samples) / keep
    chosen = {int(i * step) for i in range(keep)}
    chosen.add(max(range(len(samples)), key=lambda i: samples[i][1]))
    return [(round(samples[i][0], 2), samples[i][1]) for i in sorted(chosen)]


def write_targets(path: Path, count: int) -> None:
    """``count`` distinct positions, one per tile centre, as ``ra dec`` lines."""
    from voharvest.testing import tile_by_id

    with path.open("w") as handle:
        for tile_id in _harness.tile_ids(count):
            tile = tile_by_id(tile_id)
            assert tile is not None
            handle.write(f"{tile.ra:.7f} {tile.dec:+.7f}\n")


def count_files(directory: Path, size: int | None) -> tuple[int, bool]:
    """FITS files under ``directory`` (no ``.part``), and whether all have ``size`` bytes."""
    files = 0
    sizes_ok = True
    for root, _, names in os.walk(directory):
        for name in names:
            if name.endswith(".fits"):
                files += 1
                if size is not None and os.stat(os.path.join(root, name)).st_size != size:
                    sizes_ok = False
    return files, sizes_ok


def run_count(
    count: int,
    mode: str,
    service: str,
    targets: Path,
    scratch: Path,
    file_size: int,
    timeout: float,
) -> Run:
    with _harness.scratch(f"scale-{count}-", scratch) as out:
        if mode == "cli":
            command = [
                sys.executable,
                "-m",
                "voharvest",
                "harvest",
                "--service",
                service,
                "--targets",
                str(targets),
                "--size",
                str(SIZE),
                "--format",
                "image/fits",
                "--out",
                str(out),
                "--no-rate-limit",
                "--no-progress",
            ]
        else:
            command = [
                sys.executable,
                "-m",
                "benchmarks._scale_child",
                mode,
                "--service",
                service,
                "--targets",
                str(targets),
                "--count",
                str(count),
                *(["--out", str(out)] if mode != "searches" else []),
            ]
        measured: Measured = run_measured(command, timeout=timeout, cwd=REPO, sample=SAMPLE)
        inner: dict[str, Any] = {}
        if mode != "cli":
            with contextlib.suppress(RuntimeError):
                inner = _harness.last_json(measured.stdout)
        files, sizes_ok = count_files(out, file_size)
        expected = 0 if mode == "searches" else count
        return Run(
            targets=count,
            mode=mode,
            returncode=measured.returncode,
            wall=measured.wall,
            peak_rss_kib=measured.peak_kib,
            cpu=measured.cpu,
            files=files,
            files_ok=files == expected and sizes_ok,
            inner=inner,
            rss_profile=measured.samples,
            stderr_tail=measured.stderr[-1500:] if measured.returncode else "",
            manifest_at=measured.appeared.get("stderr") if mode == "cli" else None,
        )


# --- the benchmark ----------------------------------------------------------------------------


def _parser() -> Any:
    parser = _harness.parser(__file__, __doc__, OPTIONS, SMOKE)
    parser.add_argument(
        "--diagnose",
        type=int,
        nargs="?",
        const=10000,
        default=None,
        metavar="TARGETS",
        help="tracemalloc in a harvest of TARGETS (10000): what grows between 10 %% and 90 %%",
    )
    return parser


@dataclass
class Setup:
    """What every run of one benchmark shares: the service, the target files, where to write."""

    service: str
    scratch: Path
    file_size: int
    timeout: float
    files: dict[int, Path] = field(default_factory=dict)

    def targets(self, count: int) -> Path:
        """The file of ``count`` targets, written the first time it is asked for."""
        if count not in self.files:
            self.files[count] = self.scratch / f"targets-{count}.txt"
            write_targets(self.files[count], count)
        return self.files[count]

    def run(self, count: int, mode: str) -> Run:
        one = run_count(
            count, mode, self.service, self.targets(count), self.scratch, self.file_size,
            self.timeout,
        )  # fmt: skip
        print(
            f"{mode} {count} targets: exit {one.returncode}, {one.wall:.1f} s "
            f"({one.per_target_ms:.2f} ms/target), peak RSS {one.peak_rss_kib / 1024:.1f} MiB, "
            f"{one.files} files{'' if one.files_ok else ' (WRONG)'}",
            file=sys.stderr,
        )
        return one


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = _harness.parse(_parser(), argv, SMOKE)
    counts = sorted({int(c) for c in args.targets.split(",") if c.strip()})
    if not counts or counts[0] < 1:
        raise SystemExit("--targets: give positive counts")
    floor = rss_floor_kib()
    farm_options = ["--hosts", str(args.hosts), "--image-bytes", str(args.image_bytes)]
    farm_options += ["--images-per-search", "1", "--formats", "image/fits"]
    runs: list[Run] = []
    diagnosis: dict[str, Any] = {}
    dirty_before = _harness.dirty_sources()
    with (
        _harness.scratch("voharvest-scale-", args.scratch) as scratch,
        Farm(*farm_options, duration=14400) as farm,
    ):
        from voharvest.testing import HostConfig, VOFarm, tile_by_id

        sky = VOFarm(hosts=1, config=HostConfig(image_bytes=args.image_bytes)).sky
        tile = tile_by_id("450-0000")
        assert tile is not None
        setup = Setup(
            farm.hosts[0]["sia1_url"], scratch, sky.fits(tile, args.image_bytes, 16).size,
            args.timeout,
        )  # fmt: skip
        for count in counts:
            setup.targets(count)
        fallback_from: int | None = None
        for count in counts:
            done = [r for r in runs if r.mode == "cli" and r.returncode == 0]
            if done:
                projected = done[-1].wall / done[-1].targets * count
                if projected > args.budget:
                    fallback_from = count
                    print(
                        f"{count} targets: a CLI harvest would take ~{projected:.0f} s "
                        f"(> {args.budget:.0f} s); searches only from here",
                        file=sys.stderr,
                    )
                    break
            runs.append(setup.run(count, "cli"))
        if fallback_from is not None:
            runs += [setup.run(count, "searches") for count in counts]
        if args.engine:
            limit = math.inf if fallback_from is None else fallback_from
            runs += [setup.run(count, "engine") for count in counts if count < limit]
        if args.diagnose:
            traced = setup.run(args.diagnose, "trace")
            diagnosis[str(args.diagnose)] = {
                **traced.inner,
                "peak_rss_bytes": traced.peak_rss_kib * 1024,
            }
    return _summarise(args, counts, runs, diagnosis, fallback_from, farm, floor, dirty_before)


def _summarise(
    args: argparse.Namespace,
    counts: list[int],
    runs: list[Run],
    diagnosis: dict[str, Any],
    fallback_from: int | None,
    farm: Farm,
    floor: int,
    dirty_before: list[str],
) -> dict[str, Any]:
    base: dict[str, Run] = {}
    ratios: dict[str, dict[str, float]] = {}
    phase_ratios: dict[str, float] = {}  # CLI: sampled peak while harvesting (no manifest)
    rows = []
    for run in runs:
        if run.mode == "trace":
            continue
        first = base.setdefault(run.mode, run)
        ratio = run.peak_rss_kib / first.peak_rss_kib if first.peak_rss_kib else math.nan
        ratios.setdefault(run.mode, {})[str(run.targets)] = ratio
        before, before_ratio = run.harvest_rss_kib, ""
        if before and first.harvest_rss_kib:
            before_ratio = f"{before / first.harvest_rss_kib:.3f}"
            phase_ratios[str(run.targets)] = before / first.harvest_rss_kib
        rows.append(
            [
                f"{run.targets:,}",
                {"cli": "CLI harvest", "engine": "API harvest", "searches": "searches only"}[
                    run.mode
                ],
                run.returncode,
                run.wall,
                run.per_target_ms,
                f"{run.files:,}" + ("" if run.files_ok else " (wrong)"),
                run.peak_rss_kib / 1024,
                f"{ratio:.3f}",
                f"{before / 1024:.1f}" if before else "-",
                before_ratio or "-",
            ]
        )
    header = [
        "targets",
        "run",
        "exit",
        "wall s",
        "ms/target",
        "files",
        "peak RSS MiB",
        f"vs {counts[0]:,}",
        "harvesting MiB",
        f"vs {counts[0]:,}",
    ]
    cli = [r for r in runs if r.mode == "cli"]
    headline_mode = "cli" if len(cli) == len(counts) else "searches"
    worst = max((v for v in ratios.get(headline_mode, {}).values()), default=math.nan)
    cli_worst = max((v for v in ratios.get("cli", {}).values()), default=math.nan)
    time_10k = next((r.wall for r in cli if r.targets == 10000), None)
    largest = max(cli, key=lambda r: r.targets) if len(cli) == len(counts) else None
    figures = {
        "counts": counts,
        "peak_rss_bytes": {
            mode: {str(r.targets): r.peak_rss_kib * 1024 for r in runs if r.mode == mode}
            for mode in ("cli", "engine", "searches")
            if any(r.mode == mode for r in runs)
        },
        "rss_ratio_vs_smallest": ratios,
        "headline_mode": headline_mode,
        "worst_ratio": worst,
        "flat_within_10_percent": bool(worst <= 1 + FLAT_WITHIN),
        "cli_worst_ratio": cli_worst,
        "cli_flat_within_10_percent": bool(cli_worst <= 1 + FLAT_WITHIN) if cli else None,
        "cli_seconds_at_10000": time_10k,
        "cli_harvesting_ratio_vs_smallest": phase_ratios,
        "all_exit_zero": all(r.returncode == 0 for r in runs if r.mode != "trace"),
        "all_files_ok": all(r.files_ok for r in runs if r.mode != "trace"),
        "fallback_from": fallback_from,
        "cli_ms_per_target_at_largest": largest.per_target_ms if largest else None,
        "targets": {
            "peak_rss_flat": _report.target(worst, 1 + FLAT_WITHIN, at_most=True),
            "ms_per_target_at_largest": _report.target(
                largest.per_target_ms if largest else None, TARGET_MS_PER_TARGET, at_most=True
            ),
        },
    }
    summary = _summary_text(args, counts, runs, figures, fallback_from, floor, diagnosis)
    data = {
        "parameters": {
            "targets": counts,
            "image_bytes": args.image_bytes,
            "hosts": args.hosts,
            "budget_s": args.budget,
            "smoke": args.smoke,
        },
        "figures": figures,
        "runs": [r.as_dict() for r in runs],
        "diagnosis": diagnosis,
        "farm": farm.totals,
        "rss_floor_bytes": floor * 1024,
        "uncommitted_sources": {"before": dirty_before, "after": _harness.dirty_sources()},
    }
    shown = [r for r in runs if r.mode == headline_mode]
    _report.write(
        args,
        "scale",
        "Scale: peak RSS of a harvest against the number of targets",
        summary=summary,
        table=(header, rows),
        data=data,
        plot=(
            "peak RSS, MiB",
            {f"{r.targets:,} {r.mode}": r.peak_rss_kib / 1024 for r in runs if r.mode != "trace"},
        )
        if shown
        else None,
    )
    return data


def _summary_text(
    args: argparse.Namespace,
    counts: list[int],
    runs: list[Run],
    figures: dict[str, Any],
    fallback_from: int | None,
    floor: int,
    diagnosis: dict[str, Any],
) -> str:
    lines = [
        f"A VOFarm of {args.hosts} host(s) in its own process: no latency, no rate limit, "
        f"one {args.image_bytes:,}-byte FITS image per search. Targets are distinct tile "
        "centres, so every target has a file of its own. `CLI harvest`: "
        "`python -m voharvest harvest --service <sia1> --targets FILE --size 0.01 "
        "--format image/fits --out DIR --no-rate-limit --no-progress` (the CLI's defaults "
        "otherwise), manifest included. Peak RSS and wall time from `os.wait4` on the "
        "harvest's process (where it had child processes, the larger of that and its process "
        "tree's summed RSS sampled every 0.25 s; an RSS reads at least "
        f"{floor / 1024:.1f} MiB, the launcher's own); files counted and their sizes "
        "checked after each run.",
        "",
    ]
    if fallback_from is not None:
        lines += [
            f"{fallback_from:,} targets with downloads would have exceeded the "
            f"{args.budget:.0f} s budget (projected from the largest CLI run), so every count "
            "was also run **searches only** (`voharvest.harvest(...)` without `download_to`, "
            "in a child process, no journal, no files), and the flatness target is judged on "
            "that series.",
            "",
        ]
    targets = figures["targets"]
    ratios = figures["rss_ratio_vs_smallest"].get(figures["headline_mode"], {})
    shown = ", ".join(f"{int(k):,}: {v:.3f}" for k, v in ratios.items())
    lines.append(
        f"Target, peak RSS flat within 10 % of {counts[0]:,} targets ({figures['headline_mode']}"
        f" runs): {shown} ({_report.verdict(targets['peak_rss_flat'])})."
    )
    per_target = targets["ms_per_target_at_largest"]
    if per_target["value"] is not None:
        lines.append(
            f"Target, ≤ {TARGET_MS_PER_TARGET:g} ms per target at {counts[-1]:,} targets (CLI "
            f"harvest): {per_target['value']:.2f} ms ({_report.verdict(per_target)})."
        )
    phase = figures["cli_harvesting_ratio_vs_smallest"]
    if phase:
        worst = max(phase.values())
        lines.append(
            "While harvesting (the largest RSS sampled every 0.25 s up to the CLI's first "
            "stderr line, its per-host summary: before the manifest is read and written): "
            + ", ".join(f"{int(k):,}: {v:.3f}" for k, v in phase.items())
            + f" ({'met' if worst <= 1 + FLAT_WITHIN else '**missed**'})."
        )
    if figures["cli_seconds_at_10000"] is not None:
        lines.append(
            f"A CLI harvest of 10,000 targets took {figures['cli_seconds_at_10000']:.1f} s."
        )
    for count, traced in diagnosis.items():
        growth = traced.get("growth", [])[:3]
        if growth:
            first, last = traced["growth_between"]
            where = "; ".join(
                f"{g['where']} {g['size_diff_bytes'] / 1024:+.0f} KiB" for g in growth
            )
            lines += [
                "",
                f"tracemalloc, {int(count):,} targets, live memory from search {first:,} to "
                f"{last:,}: {traced['traced_growth_bytes'] / 1024:+.0f} KiB in all; "
                f"largest lines: {where}.",
            ]
        if "manifest_peak_bytes" in traced:
            per_record = traced["manifest_peak_bytes"] / int(count)
            lines.append(
                f"The manifest of {int(count):,} records (`write_manifest`, run by the CLI after "
                f"the harvest): {traced['manifest_peak_bytes'] / MiB:.1f} MiB allocated at its "
                f"peak, {per_record / 1024:.2f} KiB per record."
            )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
