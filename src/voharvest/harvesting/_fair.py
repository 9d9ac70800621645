"""Work queued per host, handed to workers only for hosts that have room.

A harvest's workers are shared by every host. Fed from one queue, they all
end up waiting on the slowest or a paused host (each takes the next job,
which is that host's, and sits in its limiter), and the fast hosts go idle.
:class:`FairQueue` keeps one queue per host instead, and a worker asking for
work gets the next job of a host (round robin) that

- has fewer jobs being worked on than its places (``HostPolicy.concurrency``),
- and can start a request now or within :data:`SLACK` seconds: not paused,
  its next start slot near (``HostLimiter.ready_at``).

Otherwise the worker waits, and wakes when a job is added or finished, or
when a host's slot comes near. So a worker never waits for a host while
another host has work it could do now.

It has the ``put``/``get`` of :class:`asyncio.Queue` so the engine's workers
need not change: a worker's call to :meth:`FairQueue.get` also says its
previous job is finished. Each host's queue holds at most ``per_host`` jobs
(``put`` waits beyond): memory stays bounded, and fast hosts can run that
many jobs ahead of the slowest one before the reader of the targets waits.
Anything :func:`key` can't place (the engine's stop marks) is handed out
only once every host's queue is empty.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from typing import Any

from .._limiter import Clock

__all__ = ["SLACK", "FairQueue"]

#: How far ahead of a host's next start slot a worker may take its job (seconds).
SLACK = 0.05


class FairQueue:
    """Per-host queues of jobs; see the module doc."""

    def __init__(
        self,
        *,
        key: Callable[[Any], str | None],
        room: Callable[[str], int],
        ready_at: Callable[[str], float],
        clock: Clock,
        per_host: int,
    ) -> None:
        self._key = key
        self._room = room
        self._ready_at = ready_at
        self._clock = clock
        self._now = clock.now
        self._per_host = per_host
        self._queues: dict[str, deque[Any]] = {}
        self._others: deque[Any] = deque()  # unplaced items (stop marks): last
        self._active: dict[str, int] = {}
        self._holding: dict[asyncio.Task[Any], str] = {}
        self._order: list[str] = []
        self._turn = 0
        self._changed: set[asyncio.Future[None]] = set()

    # --- putting --------------------------------------------------------------

    async def put(self, item: Any) -> None:
        """Queue ``item`` under its host; wait while that host's queue is full."""
        key = self._key(item)
        if key is None:
            self._others.append(item)
            self._wake()
            return
        queue = self._queues.get(key)
        if queue is None:
            queue = self._queues[key] = deque()
            self._active.setdefault(key, 0)
            self._order.append(key)
        while len(queue) >= self._per_host:
            await self._wait(None)
        queue.append(item)
        self._wake()

    # --- getting --------------------------------------------------------------

    async def get(self) -> Any:
        """The next job of a host with room; the caller's previous job is finished."""
        self._finished(asyncio.current_task())
        while True:
            item, wake_at = self._take()
            if item is not _NOTHING:
                return item
            await self._wait(None if wake_at is None else max(0.0, wake_at - self._now()))

    def _finished(self, task: asyncio.Task[Any] | None) -> None:
        if task is None:
            return
        key = self._holding.pop(task, None)
        if key is not None:
            self._active[key] -= 1
            self._wake()

    def _take(self) -> tuple[Any, float | None]:
        """(a job, None), or (nothing, when to look again: None for "when told")."""
        now = self._now()
        wake_at: float | None = None
        count = len(self._order)
        for step in range(count):
            index = (self._turn + step) % count
            key = self._order[index]
            queue = self._queues[key]
            if not queue or self._active[key] >= self._room(key):
                continue
            ready = self._ready_at(key)
            if ready > now + SLACK:
                wake_at = ready - SLACK if wake_at is None else min(wake_at, ready - SLACK)
                continue
            self._turn = index + 1
            self._active[key] += 1
            task = asyncio.current_task()
            if task is not None:
                self._holding[task] = key
            item = queue.popleft()
            self._wake()  # a putter may wait for room in this queue
            return item, None
        if self._others and not any(self._queues.values()):
            return self._others.popleft(), None
        return _NOTHING, wake_at

    # --- waking ---------------------------------------------------------------

    def _wake(self) -> None:
        for future in self._changed:
            if not future.done():
                future.set_result(None)
        self._changed.clear()

    async def _wait(self, seconds: float | None) -> None:
        """Until something changes, or ``seconds`` (on the clock) have passed."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._changed.add(future)
        timer = None if seconds is None else asyncio.ensure_future(self._clock.sleep(seconds))
        try:
            await asyncio.wait(
                {future} if timer is None else {future, timer}, return_when="FIRST_COMPLETED"
            )
        finally:
            self._changed.discard(future)
            future.cancel()
            if timer is not None:
                timer.cancel()

    # --- looking --------------------------------------------------------------

    def qsize(self) -> int:
        """Jobs waiting, over every host."""
        return sum(map(len, self._queues.values())) + len(self._others)

    def active(self) -> dict[str, int]:
        """Jobs being worked on, by host."""
        return {key: count for key, count in self._active.items() if count}


_NOTHING: Any = object()
