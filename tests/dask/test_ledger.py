"""The cluster's politeness ledger on its own: places, slots, pauses, lost holders.

Time is a fake clock that only moves when the ledger sleeps, so every figure
here is exact and nothing waits for real.
"""

from __future__ import annotations

import asyncio
import itertools
import math

import pytest

from voharvest.dask import Ledger
from voharvest.dask._ledger import LeaseLost

ORIGIN = "http://127.0.0.2:8000"


class FakeTime:
    def __init__(self) -> None:
        self.now = 1000.0

    def time(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += max(0.0, seconds)
        await asyncio.sleep(0)


def ledger(clock: FakeTime, **kwargs: float) -> Ledger:
    return Ledger(now=clock.time, sleep=clock.sleep, **kwargs)


async def test_slots_are_one_interval_apart_over_every_holder():
    clock = FakeTime()
    book = ledger(clock, lead=0.0)
    starts = []
    for n in range(6):
        grant = await book.acquire(ORIGIN, 10, 5.0, holder=f"h{n % 2}", worker=f"w{n % 2}")
        starts.append(grant["start"])
        book.release(ORIGIN, grant["lease"])
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    assert gaps == pytest.approx([0.2] * 5)
    assert book.hosts[ORIGIN].granted == 6


async def test_an_answer_comes_lead_seconds_before_its_slot():
    clock = FakeTime()
    book = ledger(clock, lead=0.05)
    first = await book.acquire(ORIGIN, 10, 2.0, holder="a")
    second = await book.acquire(ORIGIN, 10, 2.0, holder="b")
    assert first["start"] == 1000.0
    assert second["start"] == pytest.approx(1000.5)
    assert clock.now == pytest.approx(1000.45)  # answered just before the slot


async def test_places_are_capped_and_the_next_waiter_gets_a_released_one():
    clock = FakeTime()
    book = ledger(clock, lead=0.0)
    held = [await book.acquire(ORIGIN, 2, math.inf, holder="a") for _ in range(2)]
    third = asyncio.create_task(book.acquire(ORIGIN, 2, math.inf, holder="b"))
    await asyncio.sleep(0)
    assert not third.done()
    assert book.hosts[ORIGIN].waited == 1
    book.release(ORIGIN, held[0]["lease"])
    grant = await asyncio.wait_for(third, 1)
    assert grant["lease"] not in {h["lease"] for h in held}
    assert book.hosts[ORIGIN].max_in_use == 2


async def test_a_pause_moves_slots_not_yet_answered_past_it():
    clock = FakeTime()
    book = ledger(clock, lead=0.05)
    await book.acquire(ORIGIN, 10, 1.0, holder="a")  # slot 1000.0
    # The next slot (1001.0) is answered at 1000.95; a pause arrives first.
    waiting = asyncio.create_task(book.acquire(ORIGIN, 10, 1.0, holder="b"))
    await asyncio.sleep(0)
    book.pause(ORIGIN, until=1005.0)
    grant = await asyncio.wait_for(waiting, 1)
    assert grant["start"] >= 1005.0
    assert grant["paused_until"] == 1005.0
    later = await book.acquire(ORIGIN, 10, 1.0, holder="c")
    assert later["start"] >= grant["start"] + 1.0
    assert book.hosts[ORIGIN].pauses == 1


async def test_a_lost_worker_frees_its_places_and_fails_its_waiters():
    clock = FakeTime()
    book = ledger(clock, lead=0.0)
    await book.acquire(ORIGIN, 1, math.inf, holder="dead/1", worker="tcp://dead")
    waiting = asyncio.create_task(
        book.acquire(ORIGIN, 1, math.inf, holder="dead/2", worker="tcp://dead")
    )
    other = asyncio.create_task(
        book.acquire(ORIGIN, 1, math.inf, holder="live/1", worker="tcp://live")
    )
    await asyncio.sleep(0)
    assert book.drop_worker("tcp://dead") == 1
    with pytest.raises(LeaseLost):
        await asyncio.wait_for(waiting, 1)
    grant = await asyncio.wait_for(other, 1)
    assert book.hosts[ORIGIN].leases == {grant["lease"]: "live/1"}


async def test_holders_that_stop_refreshing_lose_their_places():
    clock = FakeTime()
    book = ledger(clock, lead=0.0, lease_timeout=30.0)
    await book.acquire(ORIGIN, 4, math.inf, holder="quiet")
    await book.acquire(ORIGIN, 4, math.inf, holder="chatty")
    clock.now += 20
    book.touch("chatty")
    clock.now += 20
    assert book.expire() == 1
    assert list(book.hosts[ORIGIN].leases.values()) == ["chatty"]


async def test_the_stricter_policy_wins_when_two_partitions_disagree():
    clock = FakeTime()
    book = ledger(clock)
    await book.acquire(ORIGIN, 8, 10.0, holder="a")
    await book.acquire(ORIGIN, 2, 4.0, holder="b")
    report = book.report()[ORIGIN]
    assert report["concurrency"] == 2 and report["rate"] == pytest.approx(4.0)


def test_a_partition_broken_by_a_lost_scheduler_says_so_whatever_broke_first() -> None:
    """The cluster died: the error a partition met first may be a worker's connection
    (distributed's CommClosedError, an OSError); once the client has noticed its
    scheduler is gone, the partition's error says the scheduler is lost."""
    import threading
    import types

    from voharvest.dask._driver import DaskHarvest

    client = types.SimpleNamespace(status="running")
    harvest = DaskHarvest.__new__(DaskHarvest)
    harvest.client = client
    assert not harvest._scheduler_lost(ValueError("not a connection"))
    later = threading.Timer(0.2, lambda: setattr(client, "status", "connecting"))
    later.start()
    assert harvest._scheduler_lost(ConnectionResetError("stream is closed"))
    later.join()
    client.status = "running"
    assert not harvest._scheduler_lost(KeyError("x"))
