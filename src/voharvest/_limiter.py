"""Per-host politeness: a smooth request rate, a cap on concurrency, and pauses.

One :class:`HostLimiter` per origin (scheme, host, port). A request first
takes one of ``concurrency`` places, then waits for its start slot: slots are
``1 / rate`` seconds apart, handed out in arrival order, so requests never
burst. The slot only gets the request near the wire: the spacing that counts
is kept by :meth:`HostLimiter.at_wire`, which the transport calls right before
a request's headers are written (see there). :meth:`HostLimiter.pause` (a 429
or 503 with Retry-After) holds every request bound for the host until the
pause ends, including those that already had a slot. The rate itself adapts
to what the host answers (:mod:`voharvest._adaptive`).

A :class:`HostGate` extends this beyond the process: when the client's
configuration has one (``ClientConfig.gate``; ``voharvest.dask`` makes one per
cluster), each request also holds the gate's place and start slot for its
host, shared with every other process using the same gate, instead of the
local start slot; pauses are passed on to the gate.

Time comes from a :class:`~voharvest._clock.Clock`, so tests can run it on a fake one.
"""

from __future__ import annotations

import asyncio
import math
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from typing import Protocol

from ._adaptive import AdaptiveRate
from ._clock import Clock
from ._config import HostPolicy

__all__ = ["HostGate", "HostLimiter", "HostPaused", "HostStats", "Ticket"]

#: The longest a request waits at the wire for its turn; a longer wait (the host
#: was paused meanwhile) sends it back to wait for its slot without a connection.
WIRE_WAIT_MAX = 5.0
#: How early (seconds, at most a fifth of the interval) a request spaced at the wire
#: leaves its start slot: its connection and headers are made meanwhile, and the
#: wire, where it waits the rest, is the only place left where it can wake up late.
WIRE_LEAD = 0.02
#: How early (seconds) a request may go after a previous one whose write a stall
#: delayed: the write is confirmed on the next loop turn, and the wire time moves to
#: that confirmation less this much (the write happened at most that much earlier,
#: unless a loop turn as long ran after it: then the next waits too long, not short).
WIRE_CONFIRM = 0.005


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
    """What happened with one host so far (a live view; copy it to keep a snapshot).

    ``rate`` is the host's current rate (requests/s; where it ended, after a
    harvest), ``ceiling`` the highest it may reach, ``decreases`` how often
    the host's throttling lowered it.
    """

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
    rate: float = math.nan
    ceiling: float = math.nan
    decreases: int = 0

    @property
    def mean_latency(self) -> float | None:
        """Mean time to the response headers, in seconds, over the answers received."""
        return self.latency_total / self.responses if self.responses else None

    @property
    def throttled(self) -> int:
        """How many 429 and 503 answers the host gave."""
        return self.statuses.get(429, 0) + self.statuses.get(503, 0)


class HostPaused(Exception):
    """Raised at the wire when the host's turn is too far off (it was paused meanwhile).

    Internal: the transport catches it, waits with :meth:`HostLimiter.wait_ready`
    on :attr:`limiter` without holding a connection, and sends the request again.
    """

    def __init__(self, limiter: HostLimiter) -> None:
        super().__init__(f"host {limiter.origin} is paused")
        self.limiter = limiter


class Ticket:
    """One request's passage: when its headers went out (clock seconds)."""

    __slots__ = ("limiter", "sent_at", "waiting")

    def __init__(self, limiter: HostLimiter, sent_at: float, *, waiting: bool) -> None:
        self.limiter = limiter
        self.sent_at = sent_at
        self.waiting = waiting  # not on the wire yet


class HostLimiter:
    """Rate, concurrency and pause for one host."""

    __slots__ = (
        "_clock",
        "_gate",
        "_listeners",
        "_next",
        "_paused_until",
        "_places",
        "_rate",
        "_recent",
        "_waiting",
        "_wire",
        "_wire_lock",
        "origin",
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
        start_rate: float | None = None,
    ) -> None:
        self.policy = policy
        self._gate = gate
        self.origin = origin
        self.stats = HostStats()
        self._clock = clock
        self._rate = AdaptiveRate(
            policy.rate if start_rate is None else start_rate,
            ceiling=policy.ceiling,
            floor=policy.min_rate,
            adaptive=policy.adaptive,
        )
        self._next = -math.inf  # the next start slot handed out
        self._wire = -math.inf  # when the last request's headers were written
        self._recent: deque[float] = deque(maxlen=8)  # the last wire times
        self._paused_until = -math.inf
        self._places = asyncio.Semaphore(policy.concurrency)
        self._wire_lock = asyncio.Lock()
        self._waiting = 0
        self._listeners: list[Callable[[], None]] = []
        self.stats.rate = self._rate.rate
        self.stats.ceiling = self._rate.ceiling

    @property
    def paused_until(self) -> float:
        return self._paused_until

    @property
    def rate(self) -> float:
        """The current rate, requests/s."""
        return self._rate.rate

    @property
    def interval(self) -> float:
        return self._rate.interval

    @property
    def waiting(self) -> int:
        """Requests that hold a slot or wait for one and are not on the wire yet."""
        return self._waiting

    def listen(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` whenever a request leaves the waiting ones (on the wire, or gone)."""
        self._listeners.append(callback)

    def _left(self, ticket: Ticket) -> None:
        if ticket.waiting:
            ticket.waiting = False
            self._waiting -= 1
            for callback in self._listeners:
                callback()

    def ready_at(self) -> float:
        """The earliest a new request could start (clock seconds): pauses and slots given."""
        return max(self._paused_until, self._next, self._wire + self.interval)

    def pause(self, seconds: float) -> None:
        """Hold every request to this host for ``seconds`` from now."""
        until = self._clock.now() + max(0.0, seconds)
        if until > self._paused_until:
            self.stats.pauses += 1
            self.stats.paused_seconds += until - max(self._paused_until, self._clock.now())
            self._paused_until = until
        if self._gate is not None:
            self._gate.pause(self.origin, max(0.0, seconds))

    def answered(self, status: int, sent_at: float, *, retry_after: float | None) -> None:
        """What the host answered to a request sent at ``sent_at``: the rate adapts.

        A 429, or a 503 without Retry-After, lowers the rate; any answer
        below 500 is clean and lets it climb (see :mod:`voharvest._adaptive`).
        """
        if status == 429 or (status == 503 and retry_after is None):
            if self._rate.throttled(sent_at, self._clock.now(), self._observed()):
                self.stats.decreases += 1
        elif status < 500:
            self._rate.clean(sent_at)
        self.stats.rate = self._rate.rate

    def _observed(self) -> float | None:
        """The rate the last few requests really went out at."""
        if len(self._recent) < 2 or self._recent[-1] <= self._recent[0]:
            return None
        return (len(self._recent) - 1) / (self._recent[-1] - self._recent[0])

    def _mark_wire(self, now: float) -> None:
        self._wire = now
        self._recent.append(now)

    async def _start_slot(self, *, wire: bool) -> None:
        while True:
            now = self._clock.now()
            start = max(now, self._next, self._paused_until, self._wire + self.interval)
            self._next = start + self.interval
            lead = min(WIRE_LEAD, 0.2 * self.interval) if wire else 0.0
            if start - lead > now:
                await self._clock.sleep(start - lead - now)
            if not wire:
                # No word from the wire: the slot is the start. A late wake-up (a
                # busy event loop) must not send missed slots out together.
                while (early := self._wire + self.interval - self._clock.now()) > 0:
                    await self._clock.sleep(early)
            now = self._clock.now()
            if now + lead >= self._paused_until:
                if not wire:
                    self._mark_wire(now)
                return

    async def wait_ready(self) -> None:
        """Sleep until the host's pause is over."""
        while (left := self._paused_until - self._clock.now()) > 0:
            await self._clock.sleep(left)

    async def at_wire(self, ticket: Ticket | None = None) -> float:
        """Wait for this request's turn at the wire; return the time its headers go out.

        Where the spacing is measured, and why here: the transport calls this
        from aiohttp's ``on_request_headers_sent`` hook, which aiohttp awaits
        right before it writes the request line and headers, with no other
        await in between for a request without a body. A start slot handed
        out earlier is not enough: between the slot and the write lie a
        connection from the pool (or a new one) and any stall of a busy event
        loop, so two requests with slots 100 ms apart could leave 40 ms apart
        (the first late, the second on time). Here, one request at a time
        (the lock, first come first served) waits until ``1 / rate`` after
        the *previous request's own write time* and after any pause, and
        notes its write time: a late request only pushes the next one later,
        never lets it go early. The rate read is the current one, so requests
        released after a pause go out spaced at the rate the pause left.

        The write itself follows this method's return with no await, but a
        stall of the whole process (a garbage collection, the scheduler) can
        still fall in between. So the lock is released only on the next loop
        turn, by :meth:`_written`, which runs after the write whatever
        happened: the write time becomes that confirmation less
        :data:`WIRE_CONFIRM`, if that is later than the noted time, before the
        next request looks at it.
        """
        await self._wire_lock.acquire()
        try:
            while True:
                now = self._clock.now()
                start = max(self._wire + self.interval, self._paused_until)
                if start <= now:
                    break
                if start - now > WIRE_WAIT_MAX:
                    raise HostPaused(self)
                await self._clock.sleep(start - now)
            self._mark_wire(now)
        except BaseException:
            self._wire_lock.release()
            raise
        asyncio.get_running_loop().call_soon(self._written, now)
        if ticket is not None:
            self._left(ticket)
        return now

    def _written(self, marked: float) -> None:
        """The request marked at ``marked`` has been written: confirm its time, free the wire."""
        confirmed = self._clock.now() - WIRE_CONFIRM
        if confirmed > marked and self._wire == marked:
            self._wire = confirmed
            self._recent[-1] = confirmed
        self._wire_lock.release()

    @asynccontextmanager
    async def _local_slot(self, wire: bool) -> AsyncIterator[None]:
        await self._start_slot(wire=wire)
        yield

    @asynccontextmanager
    async def slot(self, *, wire: bool = False) -> AsyncIterator[Ticket]:
        """Hold a place and a start slot for one request, for the request's lifetime.

        ``wire``: the caller will call :meth:`at_wire` when the request's
        headers are about to be written (the transport does, through aiohttp's
        trace hooks); without it the slot's own time counts as the start.
        """
        ticket = Ticket(self, -math.inf, waiting=True)
        self._waiting += 1
        try:
            async with self._places:
                async with self._started(ticket, wire):
                    yield ticket
        finally:
            self._left(ticket)

    @asynccontextmanager
    async def _started(self, ticket: Ticket, wire: bool) -> AsyncIterator[None]:
        gated = self._gate is not None
        start = (
            self._gate.hold(self.origin, self.policy)
            if self._gate is not None
            else self._local_slot(wire)
        )
        async with start:
            if gated and self._clock.now() < self._paused_until:
                # The gate knows the pauses of every process; ours too, but a
                # Retry-After seen here may not have reached it yet.
                await self._clock.sleep(self._paused_until - self._clock.now())
            if gated and not wire:
                self._mark_wire(self._clock.now())
            self.stats.in_flight += 1
            self.stats.max_in_flight = max(self.stats.max_in_flight, self.stats.in_flight)
            ticket.sent_at = self._clock.now()
            if not wire:
                self._left(ticket)
            try:
                yield
            finally:
                self.stats.in_flight -= 1
