"""The cluster's politeness ledger: places, start slots and pauses per host, in one place.

One :class:`Ledger` lives in the Dask scheduler (see ``_coordinator``) and
every partition's gate asks it before each request. Per origin it keeps:

- **places**: at most ``concurrency`` leases at once over the whole cluster;
  the rest wait, first come first served;
- **start slots**: ``1 / rate`` seconds apart over the whole cluster, handed
  out in the order places are granted; a slot nobody used is not saved up;
- **pauses**: a Retry-After seen by any worker moves every slot not yet handed
  out past the pause. Slots are handed out *just in time*, ``lead`` seconds
  before they start, so a pause also catches requests already waiting.

Time is wall-clock seconds (``time.time``), the one clock that the scheduler
and the workers share; both are injectable for tests. Holders (one per
partition run) refresh themselves; a holder not heard from for
``lease_timeout`` seconds, or whose worker left, loses its leases.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["HostLedger", "LeaseLost", "Ledger"]


class LeaseLost(Exception):
    """A lease was dropped (its holder timed out or its worker left) while it waited."""


@dataclass
class HostLedger:
    """What the ledger knows of one origin; the counters are for reports."""

    concurrency: int
    interval: float
    next_slot: float = -math.inf
    paused_until: float = -math.inf
    leases: dict[int, str] = field(default_factory=dict)
    waiters: deque[tuple[asyncio.Future[int], str]] = field(default_factory=deque)
    granted: int = 0
    max_in_use: int = 0
    waited: int = 0
    pauses: int = 0
    reslots: int = 0

    def report(self) -> dict[str, Any]:
        return {
            "concurrency": self.concurrency,
            "rate": 1 / self.interval if self.interval > 0 else math.inf,
            "granted": self.granted,
            "in_use": len(self.leases),
            "max_in_use": self.max_in_use,
            "waited": self.waited,
            "pauses": self.pauses,
            "reslots": self.reslots,
            "paused_until": self.paused_until,
        }


@dataclass
class _Holder:
    worker: str
    seen: float


class Ledger:
    """Cluster-wide places, start slots and pauses per origin; see the module doc."""

    def __init__(
        self,
        *,
        lead: float = 0.05,
        lease_timeout: float = 60.0,
        now: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.lead = lead
        self.lease_timeout = lease_timeout
        self._now = now
        self._sleep = sleep
        self.hosts: dict[str, HostLedger] = {}
        self._holders: dict[str, _Holder] = {}
        self._lease_origin: dict[int, str] = {}
        self._ids = itertools.count(1)

    # --- holders --------------------------------------------------------------

    def touch(self, holder: str, worker: str = "") -> None:
        """``holder`` is alive (every call from it says so)."""
        known = self._holders.get(holder)
        if known is None:
            self._holders[holder] = _Holder(worker, self._now())
        else:
            known.seen = self._now()

    def drop_holder(self, holder: str) -> int:
        """Release every lease of ``holder`` and fail its waiters; how many leases went."""
        return self._drop({holder})

    def drop_worker(self, worker: str) -> int:
        """A worker left: drop every holder it ran."""
        return self._drop({h for h, info in self._holders.items() if info.worker == worker})

    def expire(self) -> int:
        """Drop holders not heard from for ``lease_timeout`` seconds."""
        limit = self._now() - self.lease_timeout
        return self._drop({h for h, info in self._holders.items() if info.seen < limit})

    def _drop(self, holders: set[str]) -> int:
        for holder in holders:
            self._holders.pop(holder, None)
        # Waiters first, so that no place freed below goes to one of them.
        for host in self.hosts.values():
            for future, who in list(host.waiters):
                if who in holders and not future.done():
                    future.set_exception(LeaseLost(f"{who} was dropped"))
        dropped = 0
        for origin, host in self.hosts.items():
            for lease in [k for k, who in host.leases.items() if who in holders]:
                self.release(origin, lease)
                dropped += 1
        return dropped

    # --- places and slots -----------------------------------------------------

    def _host(self, origin: str, concurrency: int, rate: float) -> HostLedger:
        interval = 0.0 if math.isinf(rate) or rate <= 0 else 1.0 / rate
        host = self.hosts.get(origin)
        if host is None:
            host = self.hosts[origin] = HostLedger(max(1, int(concurrency)), interval)
        else:
            # Partitions share one configuration; should two differ, the stricter wins.
            host.concurrency = min(host.concurrency, max(1, int(concurrency)))
            host.interval = max(host.interval, interval)
        return host

    def _grant(self, origin: str, host: HostLedger, holder: str) -> int:
        lease = next(self._ids)
        host.leases[lease] = holder
        self._lease_origin[lease] = origin
        host.granted += 1
        host.max_in_use = max(host.max_in_use, len(host.leases))
        return lease

    def _slot(self, host: HostLedger) -> float:
        start = max(self._now(), host.next_slot, host.paused_until)
        host.next_slot = start + host.interval
        return start

    async def acquire(
        self, origin: str, concurrency: int, rate: float, holder: str, worker: str = ""
    ) -> dict[str, Any]:
        """A place and a start slot: ``{"lease", "start", "paused_until"}``.

        Waits for a place, then answers ``lead`` seconds before the slot starts
        (or at once if it starts sooner); a pause that arrives meanwhile moves
        the slot past it.
        """
        self.touch(holder, worker)
        host = self._host(origin, concurrency, rate)
        if len(host.leases) < host.concurrency and not host.waiters:
            lease = self._grant(origin, host, holder)
        else:
            host.waited += 1
            future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
            entry = (future, holder)
            host.waiters.append(entry)
            try:
                lease = await future
            except asyncio.CancelledError:
                if entry in host.waiters:
                    host.waiters.remove(entry)
                if future.done() and not future.cancelled() and future.exception() is None:
                    self.release(origin, future.result())
                raise
        try:
            return await self._timed(origin, host, lease)
        except BaseException:
            self.release(origin, lease)
            raise

    async def reslot(self, origin: str, lease: int, holder: str = "") -> dict[str, Any]:
        """A new start slot for a lease whose slot was missed (its holder woke too late)."""
        if holder:
            self.touch(holder)
        host = self.hosts.get(origin)
        if host is None or lease not in host.leases:
            raise LeaseLost(f"lease {lease} for {origin} is not held")
        host.reslots += 1
        return await self._timed(origin, host, lease)

    async def _timed(self, origin: str, host: HostLedger, lease: int) -> dict[str, Any]:
        while True:
            start = self._slot(host)
            early = start - self._now() - self.lead
            if early > 0:
                await self._sleep(early)
            if lease not in host.leases:
                raise LeaseLost(f"lease {lease} for {origin} was dropped while it waited")
            if start >= host.paused_until:
                return {"lease": lease, "start": start, "paused_until": host.paused_until}
            # A pause came in after this slot was given: the next slot after it.

    def release(self, origin: str, lease: int) -> None:
        """Give a place back; the next waiter (if any) gets it."""
        host = self.hosts.get(origin)
        self._lease_origin.pop(lease, None)
        if host is None or host.leases.pop(lease, None) is None:
            return
        while host.waiters and len(host.leases) < host.concurrency:
            future, holder = host.waiters.popleft()
            if future.done():
                continue
            future.set_result(self._grant(origin, host, holder))

    def release_lease(self, lease: int) -> None:
        """:meth:`release` by lease alone."""
        origin = self._lease_origin.get(lease)
        if origin is not None:
            self.release(origin, lease)

    def pause(self, origin: str, until: float) -> None:
        """No slot of ``origin`` starts before ``until`` (wall-clock seconds)."""
        host = self.hosts.get(origin)
        if host is None:
            host = self.hosts[origin] = HostLedger(1_000_000, 0.0)
        if until > host.paused_until:
            host.paused_until = until
            host.pauses += 1

    def report(self) -> dict[str, dict[str, Any]]:
        return {origin: host.report() for origin, host in self.hosts.items()}
