"""The benchmarks' shared harness: the command a report shows, missing tools, process trees."""

from __future__ import annotations

import argparse
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from benchmarks import _harness, _process, _report

OPTIONS = {
    **_harness.workload(hosts=3),
    "scratch": _harness.SCRATCH,
    "rate": (10.0, "requests/s"),
    "diagnose": (False, "more"),
}


def _parser() -> argparse.ArgumentParser:
    return _harness.parser("benchmarks/example.py", "An example.\n\nMore.", OPTIONS, {"hosts": 1})


def test_command_shows_the_module_and_hides_paths(tmp_path: Path) -> None:
    words = ["--hosts", "5", "--out", str(tmp_path), f"--scratch={tmp_path}", "--diagnose"]
    args = _harness.parse(_parser(), words)
    assert args.command == (
        "python -m benchmarks.example --hosts 5 --out DIR --scratch=DIR --diagnose"
    )
    assert args.out == tmp_path and args.scratch == tmp_path
    assert args.hosts == 5 and args.rate == 10.0 and args.diagnose is True


def test_smoke_sets_its_values() -> None:
    args = _harness.parse(_parser(), ["--smoke"], {"hosts": 1})
    assert args.hosts == 1 and args.smoke
    assert _harness.parse(_parser(), []).hosts == 3
    assert "--hosts 1" in _parser().format_help()  # --smoke says what it sets


def test_a_missing_tool_is_reported_not_installed(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    assert _process.tools("aria2c", "curl") == {"aria2c": None, "curl": None}
    assert capsys.readouterr().err.splitlines() == ["aria2c: not installed", "curl: not installed"]


def test_a_process_tree_is_sampled_whole() -> None:
    """A parent holding little with a child holding 64 MiB: the tree's peak counts the child."""
    child = "import time; b = bytearray(64 << 20); b[::4096] = b'x' * len(b[::4096]); time.sleep(1)"
    parent = f"import subprocess, sys; subprocess.run([sys.executable, '-c', {child!r}])"
    # Both at once (each is reaped by its own pid, os.wait4): a second each, mostly asleep.
    with ThreadPoolExecutor(2) as pool:
        tree = pool.submit(_process.run_measured, [sys.executable, "-c", parent], timeout=60,
                           sample=0.05)  # fmt: skip
        alone = pool.submit(_process.run_measured, [sys.executable, "-c", child], timeout=60,
                            sample=0.05)  # fmt: skip
        measured, single = tree.result(), alone.result()
    assert measured.returncode == 0
    assert measured.tree_processes == 2
    assert measured.tree_peak_kib > 64 * 1024
    assert measured.peak_kib >= measured.tree_peak_kib
    assert single.tree_processes == 1 and single.peak_kib == single.maxrss_kib


def test_targets_and_verdicts() -> None:
    assert _report.verdict(_report.target(1.3, 1.2)) == "met"
    assert _report.verdict(_report.target(60.0, 50.0, at_most=True)) == "**missed**"
    assert _report.verdict(_report.target(None, 1.5)) == "not measured"


def test_scratch_is_deleted_even_on_error(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError), _harness.scratch("x-", tmp_path) as made:
        (made / "file").write_text("x")
        raise RuntimeError
    assert list(tmp_path.iterdir()) == []
