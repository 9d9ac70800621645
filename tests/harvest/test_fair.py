"""Fair scheduling across hosts, on a fake clock: a slow or paused host holds no worker
another host could use."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.fakeclock import FakeClock
from voharvest import HostPolicy
from voharvest._limiter import HostLimiter
from voharvest.harvesting._fair import FairQueue

STOP: Any = object()
LATENCY = {"slow": 2.0, "fast1": 0.02, "fast2": 0.02, "fast3": 0.02}
PER_HOST = 100
RATE = 10.0
WORKERS = 32


async def fan_out(clock: FakeClock, queue: Any, limiters: dict[str, HostLimiter]) -> dict:
    """Searches for every host, interleaved, through WORKERS workers; when each host ended."""
    finished: dict[str, float] = {}

    async def produce() -> None:
        for _ in range(PER_HOST):
            for host in LATENCY:
                await queue.put(host)
        for _ in range(WORKERS):
            await queue.put(STOP)

    async def worker() -> None:
        while (host := await queue.get()) is not STOP:
            limiter = limiters[host]
            async with limiter.slot(wire=True) as ticket:
                await limiter.at_wire(ticket)
                await clock.sleep(LATENCY[host])
            finished[host] = clock.now()

    await clock.run(produce(), *(worker() for _ in range(WORKERS)))
    return finished


def limiters_on(clock: FakeClock) -> dict[str, HostLimiter]:
    policy = HostPolicy(rate=RATE, concurrency=8)
    return {host: HostLimiter(policy, clock, origin=host) for host in LATENCY}


def fair_queue(clock: FakeClock, limiters: dict[str, HostLimiter]) -> FairQueue:
    return FairQueue(
        key=lambda job: job if isinstance(job, str) else None,
        room=lambda host: limiters[host].policy.concurrency,
        ready_at=lambda host: limiters[host].ready_at(),
        waiting=lambda host: limiters[host].waiting,
        listen=lambda host, poke: limiters[host].listen(poke),
        clock=clock,
        per_host=256,
    )


async def test_a_slow_host_does_not_hold_back_the_fast_ones():
    clock = FakeClock()
    limiters = limiters_on(clock)
    finished = await fan_out(clock, fair_queue(clock, limiters), limiters)
    bound = (PER_HOST - 1) / RATE + LATENCY["fast1"]
    for host in ("fast1", "fast2", "fast3"):
        assert finished[host] <= 1.05 * bound, (host, finished[host], bound)
    # The slow host gets its 8 places' worth: 8 answers per 2 s.
    assert finished["slow"] == pytest.approx(PER_HOST / 8 * 2.0, rel=0.1)


async def test_one_shared_queue_lets_the_slow_host_hold_every_worker():
    # The same work from one FIFO queue (the engine before): the check above fails.
    clock = FakeClock()
    limiters = limiters_on(clock)
    finished = await fan_out(clock, asyncio.Queue(), limiters)
    bound = (PER_HOST - 1) / RATE + LATENCY["fast1"]
    assert max(finished[h] for h in ("fast1", "fast2", "fast3")) > 1.3 * bound


async def test_a_paused_host_holds_no_worker():
    clock = FakeClock()
    limiters = limiters_on(clock)
    limiters["slow"].pause(60.0)
    queue = fair_queue(clock, limiters)
    seen: list[str] = []

    async def produce() -> None:
        for _ in range(20):
            for host in ("slow", "fast1"):
                await queue.put(host)
        await queue.put(STOP)
        await queue.put(STOP)

    async def worker() -> None:
        # Two workers only: if one sat in the paused host, fast1 would go at half speed.
        while (host := await queue.get()) is not STOP:
            seen.append(host)
            async with limiters[host].slot(wire=True) as ticket:
                await limiters[host].at_wire(ticket)
                if host == "fast1":
                    fast_done.append(clock.now())

    fast_done: list[float] = []
    await clock.run(produce(), worker(), worker())
    assert len(fast_done) == 20 and fast_done[-1] <= 19 / RATE + 1e-9
    assert seen[:20] == ["fast1"] * 20  # the paused host's work waited in its queue
    assert clock.now() >= 60.0


async def test_a_full_host_queue_makes_the_producer_wait():
    clock = FakeClock()
    limiters = limiters_on(clock)
    queue = FairQueue(
        key=lambda job: job,
        room=lambda host: 1,
        ready_at=lambda host: limiters[host].ready_at(),
        waiting=lambda host: limiters[host].waiting,
        listen=lambda host, poke: limiters[host].listen(poke),
        clock=clock,
        per_host=3,
    )
    for _ in range(3):
        await queue.put("fast1")
    blocked = asyncio.ensure_future(queue.put("fast1"))
    await asyncio.sleep(0)
    assert not blocked.done() and queue.qsize() == 3
    await queue.put("fast2")  # another host's queue has room
    assert await queue.get() == "fast1"
    for _ in range(10):
        await asyncio.sleep(0)
    assert blocked.done() and queue.qsize() == 4
