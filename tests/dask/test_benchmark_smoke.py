"""The Dask fan-out benchmark at a tiny size: it runs end to end and writes sane figures.

No speed is asserted (a benchmark is never a timed test).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks import dask_fanout

pytest.importorskip("distributed")


@pytest.mark.slow
def test_dask_fanout_smoke(tmp_path: Path) -> None:
    figures = dask_fanout.main(["--smoke", "--out", str(tmp_path)])
    for suffix in ("json", "md", "png"):
        assert (tmp_path / f"dask_fanout.{suffix}").stat().st_size > 0
    saved = json.loads((tmp_path / "dask_fanout.json").read_text())
    assert saved["benchmark"] == "dask_fanout"
    rows = figures["rows"]
    assert [(r["series"], r["workers"], r["gate"]) for r in rows] == [
        ("scaling", 1, True),
        ("scaling", 2, True),
        ("gate cost", 2, False),
        ("gate cost", 0, False),
        ("limited", 1, True),
        ("limited", 2, True),
    ]
    for row in rows:
        assert row["searches"] == 40 and row["failures"] == 0, row
        assert row["throughput"] > 0 and row["makespan_s"] > 0
        assert row["farm"]["rate_violations"] == 0, row
    assert [r["partition_workers"] for r in rows if r["workers"] == 2] == [2, 2, 2]
    assert "Scaling, 1" in figures["summary"]
