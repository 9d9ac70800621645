"""A fake :class:`~voharvest._clock.Clock` for politeness tests: exact and instant.

Sleeps wait on timers; whenever every task has run as far as it can, time
jumps to the earliest timer and wakes its sleeper (one at a time, so the
order is deterministic). Time never moves on its own.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import Awaitable
from typing import Any


class FakeClock:
    def __init__(self) -> None:
        self.t = 0.0
        self._timers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._order = itertools.count()

    def now(self) -> float:
        return self.t

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._timers, (self.t + seconds, next(self._order), future))
        await future

    async def run(self, *work: Awaitable[Any]) -> list[Any]:
        """Run ``work`` to the end on this clock; their results in order."""
        tasks = [asyncio.ensure_future(w) for w in work]
        while True:
            for _ in range(50):  # let every runnable task run until it sleeps
                await asyncio.sleep(0)
            if all(task.done() for task in tasks):
                return [task.result() for task in tasks]
            while self._timers:
                when, _, future = heapq.heappop(self._timers)
                if not future.cancelled():
                    self.t = max(self.t, when)
                    future.set_result(None)
                    break
            else:
                raise RuntimeError("every task waits and no timer is set: a deadlock")
