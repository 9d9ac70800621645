"""A budget of work per event-loop turn: heavy steps spread over turns, never piled into one.

An asyncio loop runs, in one turn, every callback that was ready when the turn
began. When 32 searches are answered at once, 32 tasks wake in the same turn,
and if each parses its answer inline the turn lasts as long as all 32 parses:
a ticker on the same loop (or a web handler of the service embedding
voharvest) waits for all of them. :class:`TurnBudget` bounds that: before a
step of heavy work a task asks :meth:`TurnBudget.wait`; while the current
turn's window is within its budget it goes on at once, and once the window is
spent it yields to the next turn (``asyncio.sleep(0)``), where a new window
opens. A turn then holds about one budget of voharvest's work plus one step,
whatever the number of tasks; the work done is the same, only spread out.

The window closes with a callback scheduled when it opens (``call_soon``): it
runs at the start of the next turn's callbacks, before the tasks that yielded
in this one, so they find a fresh window.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

__all__ = ["TurnBudget"]


class TurnBudget:
    """At most ``seconds`` of gated work per event-loop turn (then the rest waits a turn)."""

    __slots__ = ("_clock", "_opened", "seconds", "yields")

    def __init__(self, seconds: float, *, clock: Callable[[], float] = time.perf_counter) -> None:
        self.seconds = seconds
        self._clock = clock
        self._opened: float | None = None
        #: How often a task waited for the next turn (for tests and statistics).
        self.yields = 0

    def _close(self) -> None:
        self._opened = None

    async def wait(self) -> None:
        """Return when the current turn has budget left (at once, or a turn or more later)."""
        while True:
            now = self._clock()
            if self._opened is None:
                self._opened = now
                asyncio.get_running_loop().call_soon(self._close)
                return
            if now - self._opened < self.seconds:
                return
            self.yields += 1
            await asyncio.sleep(0)
