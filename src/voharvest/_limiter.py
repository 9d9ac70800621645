"""Per-host politeness: a smooth request rate, a cap on concurrency, and pauses.

One :class:`HostLimiter` per origin (scheme, host, port). A request first
takes one of ``concurrency`` places, then waits for its start slot: slots are
``1 / rate`` seconds apart, handed out in arrival order, so requests never
burst. :meth:`HostLimiter.pause` (a 429 or 503 with Retry-After) holds every
request bound for the host until the pause ends, including those that already
had a slot.

A :class:`HostGate` extends this beyond the process: when the client's
configuration has one (``ClientConfig.gate``; ``voharvest.dask`` makes one per
cluster), each request also holds the gate's place and start slot for its
host, shared with every other process using the same gate, instead of the
local start slot; pauses are passed on to the gate.

Time comes from a :class:`Clock`, so tests can run it on a fake one.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from typing import Protocol

from ._config import HostPolicy

__all__ = ["Clock", "HostGate", "HostLimiter", "HostStats", "LoopClock"]


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


class HostGate(Protocol):
    """Politeness shared with other processes: a host's places, start slots and pauses.

    ``hold(origin, policy)`` is entered once per request, after the limiter's
    own place was taken, and held for the request's lifetime: it waits for a
    place among all the gate's users (at most ``policy.concurrency`` at once)
    and for a start slot (``1 / policy.rate`` apart over all of them), and
    honours pauses. ``pause(origin, seconds)`` must not block: it tells the
    other users that the host asked to be left alone (Retry-After). A gate
    that can't reach its peers raises a :class:`~voharvest.TransportError`.
    """

    def hold(self, origin: str, policy: HostPolicy) -> AbstractAsyncContextManager[None]: ...

    def pause(self, origin: str, seconds: float) -> None: ...


@dataclass
class HostStats:
    """What happened with one host so far (a live view; copy it to keep a snapshot)."""

    requests: int = 0
    responses: int = 0
    retries: int = 0
    failures: int = 0
    bytes: int = 0
    statuses: dict[int, int] = field(default_factory=dict)
    pauses: int = 0
    paused_seconds: float = 0.0
    latency_total: float = 0.0
    in_flight: int = 0
    max_in_flight: int = 0

    @property
    def mean_latency(self) -> float | None:
        """Mean time to the response headers, in seconds, over the answers received."""
        return self.latency_total / self.responses if self.responses else None

    @property
    def throttled(self) -> int:
        """How many 429 and 503 answers the host gave."""
        return self.statuses.get(429, 0) + self.statuses.get(503, 0)


class HostLimiter:
    """Rate, concurrency and pause for one host."""

    __slots__ = (
        "_clock",
        "_gate",
        "_interval",
        "_last",
        "_next",
        "_origin",
        "_paused_until",
        "_places",
        "policy",
        "stats",
    )

    def __init__(
        self,
        policy: HostPolicy,
        clock: Clock,
        *,
        gate: HostGate | None = None,
        origin: str = "",
    ) -> None:
        self.policy = policy
        self._gate = gate
        self._origin = origin
        self.stats = HostStats()
        self._clock = clock
        self._interval = 0.0 if math.isinf(policy.rate) else 1.0 / policy.rate
        self._next = -math.inf
        self._last = -math.inf  # when the last request really started
        self._paused_until = -math.inf
        self._places = asyncio.Semaphore(policy.concurrency)

    @property
    def paused_until(self) -> float:
        return self._paused_until

    def pause(self, seconds: float) -> None:
        """Hold every request to this host for ``seconds`` from now."""
        until = self._clock.now() + max(0.0, seconds)
        if until > self._paused_until:
            self.stats.pauses += 1
            self.stats.paused_seconds += until - max(self._paused_until, self._clock.now())
            self._paused_until = until
        if self._gate is not None:
            self._gate.pause(self._origin, max(0.0, seconds))

    async def _start_slot(self) -> None:
        while True:
            now = self._clock.now()
            start = max(now, self._next, self._paused_until)
            self._next = start + self._interval
            if start > now:
                await self._clock.sleep(start - now)
            # A late wake-up (a busy event loop) must not send missed slots out together.
            while (early := self._last + self._interval - self._clock.now()) > 0:
                await self._clock.sleep(early)
            now = self._clock.now()
            if now >= self._paused_until:
                self._last = now
                return

    @asynccontextmanager
    async def _local_slot(self) -> AsyncIterator[None]:
        await self._start_slot()
        yield

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Hold a place and a start slot for one request, for the request's lifetime."""
        async with self._places:
            gated = self._gate is not None
            start = (
                self._gate.hold(self._origin, self.policy)
                if self._gate is not None
                else self._local_slot()
            )
            async with start:
                if gated and self._clock.now() < self._paused_until:
                    # The gate knows the pauses of every process; ours too, but a
                    # Retry-After seen here may not have reached it yet.
                    await self._clock.sleep(self._paused_until - self._clock.now())
                self.stats.in_flight += 1
                self.stats.max_in_flight = max(self.stats.max_in_flight, self.stats.in_flight)
                try:
                    yield
                finally:
                    self.stats.in_flight -= 1
