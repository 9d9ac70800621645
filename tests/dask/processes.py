"""A Dask cluster of plain processes (``dask scheduler`` + ``dask worker``), to be killed.

A ``LocalCluster`` keeps its scheduler in the test process, where it can't be
SIGKILLed. Here the scheduler and each worker are processes of their own,
started with this Python (``-m distributed.cli.dask_...``), on 127.0.0.1,
ports chosen by the system. They stop by themselves if the test goes away:
the scheduler after ``idle`` seconds without work, each worker ``death``
seconds after it lost its scheduler; a test calls :meth:`kill` or leaves the
``with`` block, which SIGKILLs whatever is still running (by the pids it
started, nothing else).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tests.dask.farm import ROOT


class ProcessCluster:
    """``with ProcessCluster(tmp_path, workers=2) as cluster:`` ... ``cluster.client``."""

    def __init__(
        self, folder: Path, *, workers: int = 2, idle: float = 60.0, death: float = 10.0
    ) -> None:
        self.folder = folder
        self.workers = workers
        self.idle = idle
        self.death = death
        self.scheduler_file = folder / "scheduler.json"
        self.scheduler: subprocess.Popen[bytes] | None = None
        self.worker_processes: list[subprocess.Popen[bytes]] = []
        self.client: Any = None

    def _start(self, name: str, *arguments: str) -> subprocess.Popen[bytes]:
        log = (self.folder / f"{name}.log").open("wb")
        try:
            return subprocess.Popen(
                [sys.executable, "-m", *arguments],
                cwd=ROOT,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        finally:
            log.close()

    def __enter__(self) -> ProcessCluster:
        import distributed

        self.folder.mkdir(parents=True, exist_ok=True)
        try:
            self.scheduler = self._start(
                "scheduler", "distributed.cli.dask_scheduler",
                "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
                "--scheduler-file", str(self.scheduler_file),
                "--idle-timeout", f"{self.idle}s",
            )  # fmt: skip
            address = self._address(timeout=60)
            for index in range(self.workers):
                worker = self._start(
                    f"worker-{index}", "distributed.cli.dask_worker", address,
                    "--host", "127.0.0.1", "--no-nanny", "--nthreads", "1",
                    "--no-dashboard", "--name", f"worker-{index}",
                    "--death-timeout", f"{self.death}s",
                )  # fmt: skip
                self.worker_processes.append(worker)
            self.client = distributed.Client(address, timeout=30, set_as_default=False)
            self.client.wait_for_workers(self.workers, timeout=60)
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def _address(self, timeout: float) -> str:
        """The scheduler's address, once it has written its file."""
        assert self.scheduler is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.scheduler.poll() is not None:
                break
            try:
                return str(json.loads(self.scheduler_file.read_text())["address"])
            except (FileNotFoundError, json.JSONDecodeError, KeyError):
                time.sleep(0.05)
        log = (self.folder / "scheduler.log").read_text(errors="replace")
        raise RuntimeError(f"the scheduler did not start:\n{log[-2000:]}")

    @property
    def pids(self) -> dict[str, int]:
        named = {"scheduler": self.scheduler} if self.scheduler is not None else {}
        named.update({f"worker-{i}": p for i, p in enumerate(self.worker_processes)})
        return {name: process.pid for name, process in named.items()}

    def kill_scheduler(self) -> None:
        """SIGKILL the scheduler (its workers go on until they notice, or are killed)."""
        assert self.scheduler is not None
        self.scheduler.kill()
        self.scheduler.wait(timeout=30)

    def kill(self) -> None:
        """SIGKILL every process of the cluster still running: a lost cluster."""
        for process in [self.scheduler, *self.worker_processes]:
            if process is not None and process.poll() is None:
                process.kill()
        for process in [self.scheduler, *self.worker_processes]:
            if process is not None:
                process.wait(timeout=30)

    def __exit__(self, *exc_info: object) -> None:
        try:
            if self.client is not None:
                self.client.close(timeout=10)
        finally:
            self.kill()
