"""Smoke run of the discovery benchmark at a tiny size: it runs end to end and its figures
hold together. No speed is asserted (the full run measures); the farm processes of the
three contenders start together."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks import discover


@pytest.mark.slow
def test_discover_smoke(tmp_path: Path) -> None:
    figures = discover.main(
        [
            "--targets", "120", "--latency", "0.01", "--rate", "20", "--burst", "3",
            "--pyvo-sample", "2", "--harvest-sample", "4", "--out", str(tmp_path),
        ]
    )  # fmt: skip
    for suffix in ("json", "md", "png"):
        assert (tmp_path / f"discover.{suffix}").stat().st_size > 0
    saved = json.loads((tmp_path / "discover.json").read_text())
    assert saved["benchmark"] == "discover"
    assert "python -m benchmarks.discover" in (tmp_path / "discover.md").read_text()

    work = figures["workload"]
    assert work["targets"] == 120 and work["services"] == 20 and work["hosts"] == 18
    assert work["service_kinds"] == {"obscore": 4, "sia2": 8, "sia1": 8}

    plain = figures["plain_harvest"]
    assert plain["requests"] == 120 * 20  # N x S, exactly
    assert plain["requests_measured"] == 4 * 20  # the sample: one request per (service, target)
    assert plain["sample_matches_computation"] is True
    assert plain["failures"] == 0 and plain["farm"]["rate_violations"] == 0
    assert plain["datasets"] > 0

    pyvo = figures["pyvo_discover"]
    assert pyvo["sample_targets"] == 2 and pyvo["requests_measured"] > 0
    assert pyvo["requests"] == pytest.approx(pyvo["requests_measured"] * 60)
    assert pyvo["farm"]["rate_violations"] == 0

    ours = figures["voharvest_discover"]
    assert ours is not None  # always measured: the client has discover
    assert "voharvest discover (120 targets)" in (tmp_path / "discover.md").read_text()
    assert ours["same_datasets"] is True and ours["datasets"] == plain["datasets"]
    assert ours["farm"]["rate_violations"] == 0 and ours["failures"] == 0
    assert ours["requests"] <= plain["requests"] / 20
    assert figures["targets"]["requests_over_plain"]["met"] is True
