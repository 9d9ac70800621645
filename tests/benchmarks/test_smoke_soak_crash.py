"""Smoke runs of the fault soak and the crash benchmark at tiny sizes.

They check that both still run end to end, write their results, and that every
figure that must be zero is zero. No speed is asserted.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks import crash, soak


def _written(directory: Path, name: str) -> dict:
    for suffix in ("json", "md"):
        path = directory / f"{name}.{suffix}"
        assert path.is_file() and path.stat().st_size > 0, path
    markdown = (directory / f"{name}.md").read_text()
    assert markdown.startswith("## ") and "| must be |" in markdown
    saved = json.loads((directory / f"{name}.json").read_text())
    assert saved["benchmark"] == name
    return saved


@pytest.mark.slow
def test_soak_smoke(tmp_path: Path) -> None:
    figures = soak.main(["--smoke", "--out", str(tmp_path)])
    saved = _written(tmp_path, "soak")
    assert saved["must_be_zero"] == figures["must_be_zero"]
    assert figures["must_be_zero"] == dict.fromkeys(figures["must_be_zero"], 0)
    assert set(figures["must_be_zero"]) == {
        "escaped_exceptions",
        "unexpected_errors",
        "corrupt_or_partial_final_files",
        "done_but_missing",
        "rate_violations",
    }

    expected = figures["expected"]
    assert expected["searches"] + expected["downloads"] == expected["tasks"] == 100
    first, files = figures["first_run"], figures["first_run_files"]
    assert first["attempted"] == first["succeeded"] + first["failed"] > 0
    assert first["by_kind"]["search"] == expected["searches"]
    assert sum(first["failures_by_class"].values()) == first["failed"]
    assert 0.0 <= first["transient_success_rate"] <= 1.0
    # Every file the journal calls done was found and compared with the farm's bytes.
    assert files["final_files_verified"] == files["files_done"] > 0
    # The farm did inject faults, and the resume left at most the permanent ones.
    assert sum(figures["farm"]["faults"].values()) > 0
    final = figures["resume_files"]
    assert final["searches_done"] >= files["searches_done"]
    assert final["files_done"] >= files["files_done"]


@pytest.mark.slow
def test_crash_smoke(tmp_path: Path) -> None:
    figures = crash.main(["--smoke", "--out", str(tmp_path)])
    saved = _written(tmp_path, "crash")
    assert saved["must_be_zero"] == figures["must_be_zero"]
    assert figures["must_be_zero"] == dict.fromkeys(figures["must_be_zero"], 0)
    assert {"files_lost", "files_downloaded_twice_after_completion"} <= set(figures["must_be_zero"])

    assert figures["kills"] == 3 <= len(figures["runs"])
    files = 2 * 2 * len(figures["runs"])  # a target per run, 2 hosts x 2 images each
    assert figures["files_expected"] == figures["files_final_and_verified"] == files
    assert all(run["journal"].startswith(("ok", "absent")) for run in figures["runs"])
    assert figures["final_run"]["exit"] == 0 and figures["final_run"]["status_exit"] == 0
