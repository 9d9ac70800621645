"""Start and question the farm of ``farm_server`` from a test (synchronous, bounded)."""

from __future__ import annotations

import contextlib
import json
import select
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


class FarmProcess:
    """``with FarmProcess(hosts=2, rate_limit=5) as farm:`` ... ``farm.counters()``."""

    def __init__(self, hosts: int = 2, duration: float = 300.0, **config: Any) -> None:
        self.command = [
            sys.executable, "-m", "tests.dask.farm_server",
            json.dumps(config), str(hosts), str(duration),
        ]  # fmt: skip
        self.process: subprocess.Popen[bytes] | None = None
        self.ready: dict[str, Any] = {}
        self.final: dict[str, Any] = {}

    def __enter__(self) -> FarmProcess:
        self.process = subprocess.Popen(
            self.command, cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE
        )
        self.ready = self._line(60)
        return self

    def __exit__(self, *exc_info: object) -> None:
        assert self.process is not None
        try:
            self._send("stop")
            self.final = self._line(30)
            self.process.wait(timeout=30)
        except Exception:
            self.process.kill()
            self.process.wait(timeout=10)
            raise
        finally:
            for stream in (self.process.stdin, self.process.stdout):
                if stream is not None:
                    with contextlib.suppress(OSError):  # a pipe the farm broke by dying
                        stream.close()

    def _send(self, command: str) -> None:
        assert self.process is not None and self.process.stdin is not None
        self.process.stdin.write(command.encode() + b"\n")
        self.process.stdin.flush()

    def _line(self, timeout: float) -> dict[str, Any]:
        assert self.process is not None and self.process.stdout is not None
        readable, _, _ = select.select([self.process.stdout], [], [], timeout)
        line = self.process.stdout.readline() if readable else b""
        if not line:
            self.process.kill()
            raise RuntimeError(f"the farm did not answer: {' '.join(self.command)}")
        return dict(json.loads(line))

    def counters(self) -> dict[str, Any]:
        """Per host index (a string): the farm's counters now."""
        self._send("counters")
        return self._line(30)

    @property
    def hosts(self) -> list[dict[str, Any]]:
        return list(self.ready["hosts"])
