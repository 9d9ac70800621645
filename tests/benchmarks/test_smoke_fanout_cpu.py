"""Smoke runs of benchmarks 1 (fan-out) and 2 (CPU per search) at tiny sizes.

They check that the benchmarks still run end to end and write sane figures;
no speed is asserted (a benchmark is never a timed test). The fan-out farm
here enforces 5 requests/s with a bucket of 3 (the full run: 10/s, bucket 2),
so that a stall of this busy machine's CPUs doesn't decide whether voharvest
stays within the limit; the full run is where violations are measured.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from benchmarks import cpu, fanout


def _written(directory: Path, name: str) -> dict:
    for suffix in ("json", "md", "png"):
        path = directory / f"{name}.{suffix}"
        assert path.is_file() and path.stat().st_size > 0, path
    assert (directory / f"{name}.png").read_bytes().startswith(b"\x89PNG")
    markdown = (directory / f"{name}.md").read_text()
    assert markdown.startswith("## ") and "| contender |" in markdown
    return json.loads((directory / f"{name}.json").read_text())


def _positive(value: object) -> bool:
    return isinstance(value, int | float) and math.isfinite(value) and value > 0


@pytest.mark.slow
def test_fanout_smoke(tmp_path: Path) -> None:
    figures = fanout.main(
        [
            "--smoke",  # these sizes (spelled out here), and the farms started at once
            "--searches", "20", "--hosts", "4", "--latency", "0.01", "--rate", "5",
            "--burst", "3", "--pyvo-sequential", "5", "--threads", "8", "--out", str(tmp_path),
        ]
    )  # fmt: skip
    saved = _written(tmp_path, "fanout")
    assert saved["benchmark"] == "fanout"
    assert saved["workload"]["searches"] == figures["workload"]["searches"] == 20
    assert figures["workload"]["bound_s"] == pytest.approx(5 / 5)

    ours = figures["voharvest"]
    assert ours["searches"] == ours["ok"] == 20
    assert ours["failures"] == 0
    assert ours["farm"]["rate_violations"] == 0
    assert ours["farm"]["searches"] == 20
    assert ours["http_429"] == 0 and ours["retries"] == 0

    control = figures["voharvest_transport_only"]
    assert control["searches"] == control["ok"] == 20
    assert control["farm"]["rate_violations"] == 0

    sequential = figures["pyvo_sequential"]
    assert sequential["searches"] == sequential["scaled_from"] == 5
    assert sequential["failures"] == 0
    threads = figures["pyvo_threads"]
    assert threads["searches"] == 20 and threads["threads"] == 8
    assert threads["ok"] + threads["failures"] == 20
    for result in (ours, control, sequential, threads):
        assert _positive(result["makespan_s"])
        assert _positive(result["makespan_over_bound"])
        assert result["throughput"] >= 0
    assert _positive(ours["throughput"]) and _positive(sequential["throughput"])
    for result in (ours, control, sequential, threads):
        assert result["client_cpu_ms_per_search"] == pytest.approx(
            1000 * result["client_cpu_s"] / result["searches"]
        )
    assert figures["targets"]["voharvest_client_cpu_ms_per_search"]["value"] == pytest.approx(
        ours["client_cpu_ms_per_search"]
    )
    assert "| client CPU ms per search |" in (tmp_path / "fanout.md").read_text()
    assert "voharvest:" in figures["summary"]


@pytest.mark.slow
def test_cpu_smoke(tmp_path: Path) -> None:
    figures = cpu.main(
        ["--searches", "100", "--hosts", "4", "--sample", "10", "--profile-searches", "20",
         "--probe-workers", "2", "--out", str(tmp_path)]
    )  # fmt: skip
    saved = _written(tmp_path, "cpu")
    assert saved["benchmark"] == "cpu"

    ours = figures["voharvest"]
    assert ours["searches"] == ours["ok"] == 100
    assert ours["failures"] == 0
    assert ours["records"] > 0
    assert _positive(ours["searches_per_s"]) and _positive(ours["cpu_ms_per_search"])
    bound = figures["astropy_bound"]
    assert bound["answers"] == 100 and bound["rows_per_answer"] >= 1
    assert _positive(bound["answers_per_s"])
    assert _positive(figures["ratio_to_astropy"])
    lag = ours["loop_lag_ms"]
    assert lag["ticks"] > 0 and 0 <= lag["p50"] <= lag["p99"] <= lag["max"]
    assert figures["targets"]["loop_lag_max_ms"]["value"] == lag["max"]
    assert "loop lag max ≤ 50 ms" in figures["summary"]
    assert figures["profile"]["searches"] == 20
    assert _positive(figures["profile"]["profiled_seconds"])
    probe = figures["probe_fewer_workers"]
    assert probe["harvest_workers"] == 2 and probe["searches"] == 20 and probe["failures"] == 0
