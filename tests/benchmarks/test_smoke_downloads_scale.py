"""Smoke runs of benchmarks 3 (downloads) and 4 (scale) at tiny sizes.

They check that the benchmarks run end to end and write sane figures: every
file verified, every exit code 0, every RSS positive. No speed or memory
threshold is asserted (a benchmark is never a timed test).
"""

from __future__ import annotations

import json
import math
import os
import shutil
from pathlib import Path

import pytest

from benchmarks import downloads, scale


def _written(directory: Path, name: str) -> dict:
    for suffix in ("json", "md", "png"):
        path = directory / f"{name}.{suffix}"
        assert path.is_file() and path.stat().st_size > 0, path
    assert (directory / f"{name}.png").read_bytes().startswith(b"\x89PNG")
    assert (directory / f"{name}.md").read_text().startswith("## ")
    saved = json.loads((directory / f"{name}.json").read_text())
    assert saved["benchmark"] == name
    return saved


def _positive(value: object) -> bool:
    return isinstance(value, int | float) and math.isfinite(value) and value > 0


def _check_downloads(result: dict, *, aria2c: bool) -> None:
    figures = result["figures"]
    assert figures["files"] == 8
    assert figures["total_bytes"] == 8 * figures["file_bytes"]
    assert figures["all_verified"] and figures["all_exit_zero"]
    runs = result["median_runs"]
    expected = {"voharvest harvest", "voharvest download"}
    expected |= {"curl sequential", "curl per file"} if shutil.which("curl") else set()
    expected |= {"aria2c -j16"} if aria2c else set()
    assert set(runs) == expected
    for name, run in runs.items():
        assert run["returncode"] == 0, (name, run)
        assert run["check"]["ok"] and run["check"]["files"] == 8, (name, run["check"])
        assert _positive(run["throughput_mib_s"]), name
        assert _positive(run["wall_s"]), name
        assert _positive(run["peak_rss_bytes"]), name
    assert figures["aria2c"] == ("available" if aria2c else "not installed")
    assert _positive(figures["harvest_peak_rss_bytes"])
    # CPU per GiB for every contender, judged against aria2c's where it ran.
    assert set(figures["cpu_s_per_gib"]) == expected
    assert all(_positive(v) for v in figures["cpu_s_per_gib"].values())
    for which in ("harvest", "download"):
        judged = result["targets"][which]["cpu_s_per_gib_vs_aria2c"]
        assert (judged["met"] is None) == (not aria2c)
    if aria2c:
        assert _positive(figures["harvest_vs_aria2c"])
    else:
        assert figures["harvest_vs_aria2c"] is None
        assert result["targets"]["harvest"]["vs_aria2c"]["met"] is None
        assert result["targets"]["download"]["vs_aria2c"]["met"] is None
    farm = result["farm"]
    assert farm["rate_violations"] == 0
    assert farm["distinct_images_completed"] == 8


@pytest.mark.slow
def test_downloads_smoke(tmp_path: Path) -> None:
    result = downloads.main(["--smoke", "--out", str(tmp_path), "--scratch", str(tmp_path)])
    saved = _written(tmp_path, "downloads")
    assert saved["figures"] == json.loads(json.dumps(result["figures"]))
    _check_downloads(result, aria2c=shutil.which("aria2c") is not None)
    markdown = (tmp_path / "downloads.md").read_text()
    assert "| voharvest harvest |" in markdown
    # The command is shown as a module run, its paths hidden.
    assert "`python -m benchmarks.downloads --smoke --out DIR --scratch DIR`" in markdown
    assert str(tmp_path) not in markdown
    # Nothing left behind in the scratch directory but the results.
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "downloads.json",
        "downloads.md",
        "downloads.png",
    ]


@pytest.mark.slow
def test_downloads_smoke_without_aria2c(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Where aria2c is missing, voharvest and curl still run and aria2c is reported as such.

    Nothing is installed: the PATH holds no apt-get, and aria2c stays missing.
    """
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("curl", "true", "git"):
        found = shutil.which(tool)
        if found is not None:
            os.symlink(found, bin_dir / tool)
    monkeypatch.setenv("PATH", str(bin_dir))
    out = tmp_path / "results"
    result = downloads.main(["--smoke", "--out", str(out), "--scratch", str(tmp_path)])
    _written(out, "downloads")
    _check_downloads(result, aria2c=False)
    assert "aria2c: not installed" in (out / "downloads.md").read_text()
    assert shutil.which("aria2c", path=str(bin_dir)) is None


@pytest.mark.slow
def test_scale_smoke(tmp_path: Path) -> None:
    result = scale.main(["--smoke", "--out", str(tmp_path), "--scratch", str(tmp_path)])
    saved = _written(tmp_path, "scale")
    assert saved["figures"]["counts"] == [50, 200]
    figures = result["figures"]
    assert figures["all_exit_zero"] and figures["all_files_ok"]
    assert figures["fallback_from"] is None
    runs = [run for run in result["runs"] if run["mode"] == "cli"]
    assert [run["targets"] for run in runs] == [50, 200]
    for run in runs:
        assert run["returncode"] == 0, run["stderr_tail"]
        assert run["files"] == run["targets"] and run["files_ok"]
        assert _positive(run["peak_rss_bytes"])
        assert _positive(run["wall_s"])
        assert run["rss_profile_kib"], "the RSS sampler saw nothing"
    assert _positive(figures["cli_ms_per_target_at_largest"])
    assert figures["targets"]["ms_per_target_at_largest"]["value"] == pytest.approx(
        runs[-1]["per_target_ms"]
    )
    ratios = figures["rss_ratio_vs_smallest"]["cli"]
    assert ratios["50"] == 1.0 and _positive(ratios["200"])
    assert result["farm"]["completed_image_fetches"] == 250  # each run in a fresh directory
    assert result["farm"]["distinct_images_completed"] == 200
    assert "| 200 | CLI harvest | 0 |" in (tmp_path / "scale.md").read_text()
