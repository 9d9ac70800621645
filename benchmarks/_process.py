"""A command run to its end in a process of its own: exit code, wall time, peak RSS and CPU.

:func:`run_measured` forks the command from a small launcher that reaps it with
``os.wait4``; with ``sample`` it also reads the RSS of the command's whole
process tree from /proc while it runs. :func:`tool` says whether an external
tool is installed (none is ever installed by a benchmark).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Measured:
    """One child process, reaped with os.wait4: exit code, wall time, peak RSS, CPU.

    ``maxrss_kib`` is the kernel's high-water mark of the command's process (its
    reaped children's if one was larger); ``cpu`` includes its reaped children's
    CPU. ``tree_peak_kib`` is the largest sum of VmRSS over the command's process
    tree seen by the sampler (0 when not sampled), ``tree_processes`` the most
    processes it saw in that tree at once.
    """

    returncode: int
    wall: float
    maxrss_kib: int
    cpu: float
    stdout: str = ""
    stderr: str = ""
    timed_out: bool = False
    samples: list[tuple[float, int]] = field(default_factory=list)  # (seconds, tree VmRSS KiB)
    appeared: dict[str, float] = field(default_factory=dict)  # watched path -> seconds
    tree_peak_kib: int = 0
    tree_processes: int = 0

    @property
    def peak_kib(self) -> int:
        """The process's high-water mark, or the sampled tree's peak if it was a tree and larger."""
        return max(self.maxrss_kib, self.tree_peak_kib if self.tree_processes > 1 else 0)


# Runs the measured command as its own child and reports the command's rusage alone.
# A child's ru_maxrss starts from the RSS of the process it was forked (or vforked)
# from: Linux keeps the old image's high-water mark across exec. So a command
# launched straight from a benchmark (a large process) would report at least the
# benchmark's RSS; from this small launcher, at least the launcher's (rss_floor_kib).
_LAUNCHER = """
import json, os, sys, time
report, command = sys.argv[1], sys.argv[2:]
began = time.perf_counter()
pid = os.fork()
if pid == 0:
    try:
        os.execvp(command[0], command)
    finally:
        os._exit(127)
_, status, usage = os.wait4(pid, 0)
wall = time.perf_counter() - began
with open(report, "w") as handle:
    json.dump({"code": os.waitstatus_to_exitcode(status), "wall": wall,
               "maxrss_kib": usage.ru_maxrss, "cpu": usage.ru_utime + usage.ru_stime}, handle)
"""


def run_measured(
    command: Sequence[str],
    *,
    timeout: float,
    cwd: Path | None = None,
    sample: float | None = None,
    watch: Sequence[Path] = (),
) -> Measured:
    """Run ``command`` to its end: exit code, wall time, its own peak RSS and CPU.

    The command is timed from fork to exit (the launcher's own start is not
    counted). Output goes to temporary files. The whole process group is killed
    if it outlives ``timeout``. With ``sample`` (seconds), the RSS of the
    command's process tree is also read from /proc that often, for a profile of
    memory over time, and the time each of the ``watch`` paths first exists is
    noted (same clock), as is the time the command first wrote to stderr (key
    ``"stderr"``).
    """
    with (
        tempfile.TemporaryFile() as out,
        tempfile.TemporaryFile() as err,
        tempfile.TemporaryDirectory() as where,
    ):
        report = Path(where) / "usage.json"
        process = subprocess.Popen(
            [sys.executable, "-I", "-S", "-c", _LAUNCHER, str(report), *command],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            cwd=cwd,
            start_new_session=True,
        )
        sampler = _Sampler(process, sample, list(watch), err.fileno()) if sample else None
        try:
            process.wait(timeout=timeout)
            timed_out = False
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            timed_out = True
        if sampler is not None:
            sampler.join(timeout=5)
        out.seek(0)
        err.seek(0)
        try:
            usage = json.loads(report.read_text())
        except (OSError, ValueError):
            usage = {"code": process.returncode or -1, "wall": 0.0, "maxrss_kib": 0, "cpu": 0.0}
        return Measured(
            returncode=int(usage["code"]),
            wall=float(usage["wall"]),
            maxrss_kib=int(usage["maxrss_kib"]),
            cpu=float(usage["cpu"]),
            stdout=out.read().decode("utf-8", "replace"),
            stderr=err.read().decode("utf-8", "replace"),
            timed_out=timed_out,
            samples=sampler.samples if sampler else [],
            appeared=sampler.appeared if sampler else {},
            tree_peak_kib=max((kib for _, kib in sampler.samples), default=0) if sampler else 0,
            tree_processes=sampler.processes if sampler else 0,
        )


def _children(pid: int) -> list[int]:
    try:
        return [int(x) for x in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except (OSError, ValueError):
        return []


def _rss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def tree_rss_kib(pid: int) -> tuple[int, int]:
    """The summed VmRSS of ``pid``'s descendants (not ``pid`` itself), and how many, from /proc."""
    total, count, pending = 0, 0, _children(pid)
    while pending:
        one = pending.pop()
        total += _rss_kib(one)
        count += 1
        pending += _children(one)
    return total, count


class _Sampler(threading.Thread):
    """Appends (seconds, tree VmRSS KiB) of the launcher's command until the launcher ends."""

    def __init__(
        self, launcher: subprocess.Popen[bytes], every: float, watch: list[Path], stderr: int
    ) -> None:
        super().__init__(daemon=True)
        self.launcher, self.every, self.watch, self.stderr = launcher, every, watch, stderr
        self.samples: list[tuple[float, int]] = []
        self.appeared: dict[str, float] = {}
        self.processes = 0
        self.start()

    def run(self) -> None:
        began = time.perf_counter()
        while self.launcher.poll() is None:
            rss, count = tree_rss_kib(self.launcher.pid)
            self.processes = max(self.processes, count)
            if rss:
                self.samples.append((time.perf_counter() - began, rss))
            for path in self.watch:
                if str(path) not in self.appeared and path.exists():
                    self.appeared[str(path)] = time.perf_counter() - began
            if "stderr" not in self.appeared and os.fstat(self.stderr).st_size:
                self.appeared["stderr"] = time.perf_counter() - began
            time.sleep(self.every)


def rss_floor_kib() -> int:
    """The peak RSS the launcher reports for a command that does nothing (``true``)."""
    return run_measured(["true"], timeout=60).maxrss_kib


def tools(*names: str) -> dict[str, str | None]:
    """Where each external tool is (None: not installed), said on stderr for the missing ones."""
    found = {name: shutil.which(name) for name in names}
    for name, path in found.items():
        if path is None:
            print(f"{name}: not installed", file=sys.stderr)
    return found
