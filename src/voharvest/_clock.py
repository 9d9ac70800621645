"""Where time comes from: one :class:`Clock` protocol, injected wherever time is read.

Everything that spaces, waits or measures time in seconds — the per-host
limiters, the retry policy's waits and deadlines, the fair queues of a harvest,
the UWS job polls, the cluster ledger of ``voharvest.dask`` — takes a clock
with ``now()`` and ``sleep()``, so that tests can run it on a fake one: exact,
and as fast as the code (aiolimiter's tests patch the loop clock the same way).

- :class:`LoopClock`: the running event loop's monotonic clock (the default);
- :class:`WallClock`: wall-clock seconds (``time.time``), for times that other
  processes and machines must read the same way.
"""

from __future__ import annotations

import asyncio
import time
from typing import Protocol

__all__ = ["Clock", "LoopClock", "WallClock"]


class Clock(Protocol):
    """Where time comes from: ``now()`` in seconds (monotonic) and ``sleep()``."""

    def now(self) -> float: ...

    async def sleep(self, seconds: float) -> None: ...


class LoopClock:
    """The running event loop's clock."""

    def now(self) -> float:
        return asyncio.get_running_loop().time()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


class WallClock:
    """Wall-clock seconds since the epoch: a time other processes read the same way."""

    def now(self) -> float:
        return time.time()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)
