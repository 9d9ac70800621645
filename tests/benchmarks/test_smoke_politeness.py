"""Smoke run of the politeness benchmark at tiny sizes (STILTS left out: a JVM per host).

It checks that every run still goes end to end and writes sane figures; no speed
is asserted (a benchmark is never a timed test).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from benchmarks import politeness


@pytest.mark.slow
def test_politeness_smoke(tmp_path: Path) -> None:
    figures = politeness.main(["--smoke", "--no-stilts", "--out", str(tmp_path)])
    saved = json.loads((tmp_path / "politeness.json").read_text())
    assert saved["noburst"] == figures["noburst"]
    markdown = (tmp_path / "politeness.md").read_text()
    assert markdown.startswith("## Politeness")
    assert len(figures["noburst"]) == 3
    for run in figures["noburst"]:
        assert run["searches"] > 0 and run["failed"] == 0
        assert math.isfinite(run["makespan_over_bound"]) and run["bound_s"] > 0
    assert all(math.isfinite(v) for v in figures["fair"]["fast_finish_over_bound"].values())
    contenders = {row["contender"]: row for row in figures["unknown"]}
    assert len(contenders) == 4
    for name, row in contenders.items():
        assert [h["limit"] for h in row["hosts"]] == [1.0, 3.0, 3.0, 20.0]
        if name.startswith("voharvest"):
            # voharvest retries what the hosts refused until it gets through.
            assert all(h["succeeded_pct"] == 100.0 for h in row["hosts"]), row
