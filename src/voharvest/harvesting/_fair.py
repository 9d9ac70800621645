"""Work queued per host, handed to workers only for hosts that have room.

A harvest's workers are shared by every host. Fed from one queue, they all
end up waiting on the slowest or a paused host (each takes the next job,
which is that host's, and sits in its limiter), and the fast hosts go idle.
:class:`FairQueue` keeps one queue per host instead, and hands a waiting
worker a job of a host that

- has fewer jobs being worked on than its places (``HostPolicy.concurrency``),
- has no request waiting for its start slot yet (at most one worker per host
  waits in its limiter: the one whose request goes next),
- and can start a request within :data:`SLACK` seconds: not paused, its next
  start slot near (``HostLimiter.ready_at``);

of those, the host whose next start is the earliest. Jobs are handed out
when one is added or finished, when a host's request goes on the wire, and
when a host's next slot comes near (one timer for the earliest). So a worker
never waits for a host while another host has work it could do now, and
each host's next request is already waiting in its limiter when its slot
comes (on a busy event loop, a worker sent only then would be late).

It has the ``put``/``get`` of :class:`asyncio.Queue` so the engine's workers
need not change: a worker's call to :meth:`FairQueue.get` also says its
previous job is finished. Each host's queue holds at most ``per_host`` jobs
(``put`` waits beyond): memory stays bounded, and fast hosts can run that
many jobs ahead of the slowest one before the reader of the targets waits.
Anything ``key`` can't place (the engine's stop marks) is handed out only
once every host's queue is empty.
"""

from __future__ import annotations

import asyncio
import contextlib
import weakref
from collections import deque
from collections.abc import Callable
from typing import Any

from .._clock import Clock

__all__ = ["SLACK", "FairQueue"]

#: How far ahead of a host's next start slot a worker may take its job (seconds).
SLACK = 0.5
#: A job handed out whose request was not seen at its host's limiter within this
#: long (it failed before, or went elsewhere first) no longer holds the host back.
FRESH = 1.0

_NOTHING: Any = object()


class FairQueue:
    """Per-host queues of jobs; see the module doc."""

    def __init__(
        self,
        *,
        key: Callable[[Any], str | None],
        room: Callable[[str], int],
        ready_at: Callable[[str], float],
        waiting: Callable[[str], int],
        listen: Callable[[str, Callable[[], None]], None],
        clock: Clock,
        per_host: int,
    ) -> None:
        self._key = key
        self._room = room
        self._ready_at = ready_at
        self._waiting = waiting
        self._listen = listen
        self._clock = clock
        self._per_host = per_host
        self._queues: dict[str, deque[Any]] = {}
        self._others: deque[Any] = deque()  # unplaced items (stop marks): last
        self._active: dict[str, int] = {}
        self._fresh: dict[str, float] = {}  # handed out, not yet seen at the limiter: when
        self._holding: dict[asyncio.Task[Any], str] = {}
        self._order: list[str] = []
        self._turn = 0
        self._getters: deque[asyncio.Future[tuple[str | None, Any]]] = deque()
        self._putters: dict[str, deque[asyncio.Future[None]]] = {}
        self._timer: asyncio.Task[None] | None = None
        self._timer_at = 0.0

    # --- putting --------------------------------------------------------------

    async def put(self, item: Any) -> None:
        """Queue ``item`` under its host; wait while that host's queue is full."""
        key = self._key(item)
        if key is None:
            self._others.append(item)
            self._hand_out()
            return
        queue = self._queues.get(key)
        if queue is None:
            queue = self._queues[key] = deque()
            self._active[key] = 0
            self._order.append(key)
            self._listen(key, _poker(weakref.ref(self), key))
        while len(queue) >= self._per_host:
            room: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._putters.setdefault(key, deque()).append(room)
            await room
        queue.append(item)
        self._hand_out()

    # --- getting --------------------------------------------------------------

    async def get(self) -> Any:
        """The next job of a host with room; the caller's previous job is finished."""
        task = asyncio.current_task()
        if task is not None and (done := self._holding.pop(task, None)) is not None:
            self._active[done] -= 1
            self._fresh.pop(done, None)
        waiter: asyncio.Future[tuple[str | None, Any]] = asyncio.get_running_loop().create_future()
        self._getters.append(waiter)
        self._hand_out()
        try:
            key, item = await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self._give_back(*waiter.result())
            with contextlib.suppress(ValueError):
                self._getters.remove(waiter)
            raise
        if key is not None and task is not None:
            self._holding[task] = key
        return item

    def _give_back(self, key: str | None, item: Any) -> None:
        if key is None:
            self._others.appendleft(item)
        else:
            self._queues[key].appendleft(item)
            self._active[key] -= 1
        self._hand_out()

    # --- handing out ----------------------------------------------------------

    def _poke(self, key: str) -> None:
        """A request of ``key`` left its limiter's waiting ones: the next may go."""
        self._fresh.pop(key, None)
        self._hand_out()

    def _hand_out(self) -> None:
        """Give waiting workers the jobs that can go now; set the timer for the rest."""
        while self._getters:
            if self._getters[0].done():  # cancelled meanwhile
                self._getters.popleft()
                continue
            key, item, wake_at = self._take()
            if item is _NOTHING:
                if wake_at is not None:
                    self._alarm(wake_at)
                break
            self._getters.popleft().set_result((key, item))
        if self._timer is not None and not any(self._queues.values()):
            self._timer.cancel()  # nothing left that waits for a host's time
            self._timer = None

    def _take(self) -> tuple[str | None, Any, float | None]:
        """(host, job, None), or (None, nothing, when to look again: None for "when told").

        Of the hosts that can take a job, the one whose next start is the
        earliest (the most urgent); among equals, the next in turn.
        """
        now = self._clock.now()
        best: str | None = None
        best_ready = 0.0
        wake_at: float | None = None
        count = len(self._order)
        for step in range(count):
            key = self._order[(self._turn + step) % count]
            if not self._queues[key] or self._active[key] >= self._room(key):
                continue
            if self._waiting(key):  # its next request already waits in the limiter
                self._fresh.pop(key, None)
                continue
            fresh = self._fresh.get(key)
            if fresh is not None:
                if now < fresh + FRESH:  # the one handed out is on its way there
                    wake_at = fresh + FRESH if wake_at is None else min(wake_at, fresh + FRESH)
                    continue
                del self._fresh[key]
            ready = max(self._ready_at(key), now)
            if ready > now + SLACK:
                wake_at = ready - SLACK if wake_at is None else min(wake_at, ready - SLACK)
            elif best is None or ready < best_ready:
                best, best_ready = key, ready
        if best is not None:
            self._turn = (self._order.index(best) + 1) % count
            self._active[best] += 1
            self._fresh[best] = now
            item = self._queues[best].popleft()
            putters = self._putters.get(best)
            while putters:
                room = putters.popleft()
                if not room.done():
                    room.set_result(None)
                    break
            return best, item, None
        if self._others and not any(self._queues.values()):
            return None, self._others.popleft(), None
        return None, _NOTHING, wake_at

    def _alarm(self, when: float) -> None:
        """Hand out again at ``when`` (clock seconds); one timer, the earliest."""
        if self._timer is not None and not self._timer.done():
            if self._timer_at <= when:
                return
            self._timer.cancel()
        self._timer_at = when
        self._timer = asyncio.ensure_future(self._ring(max(0.0, when - self._clock.now())))

    async def _ring(self, seconds: float) -> None:
        await self._clock.sleep(seconds)
        self._timer = None
        self._hand_out()

    # --- looking --------------------------------------------------------------

    def qsize(self) -> int:
        """Jobs waiting, over every host."""
        return sum(map(len, self._queues.values())) + len(self._others)

    def active(self) -> dict[str, int]:
        """Jobs being worked on, by host."""
        return {key: count for key, count in self._active.items() if count}


def _poker(queue: weakref.ref[FairQueue], key: str) -> Callable[[], None]:
    """A limiter's callback that pokes the queue while it lives (a limiter outlives a harvest)."""

    def poke() -> None:
        alive = queue()
        if alive is not None:
            alive._poke(key)

    return poke
