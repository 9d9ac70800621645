"""Politeness on a fake clock: spacing at the wire, the adaptive rate, pauses.

Every time here is the fake clock's (tests/fakeclock.py); nothing waits for real.
"""

from __future__ import annotations

import itertools
import math

import pytest
from aiohttp import web

from tests.fakeclock import FakeClock
from tests.servers import LocalServer
from voharvest import ClientConfig, HostPolicy, RequestTimeoutError, RetryPolicy, VOClient
from voharvest._adaptive import AdaptiveRate
from voharvest._limiter import WIRE_CONFIRM, HostLimiter, HostPaused


async def send(limiter: HostLimiter, clock: FakeClock, delay: float, wire: list[float]) -> None:
    """One request: a slot, then ``delay`` before its headers are written (a connection
    being made, a busy event loop), then the wire."""
    async with limiter.slot(wire=True) as ticket:
        await clock.sleep(delay)
        ticket.sent_at = await limiter.at_wire(ticket)
        wire.append(ticket.sent_at)


def gaps(times: list[float]) -> list[float]:
    return [b - a for a, b in itertools.pairwise(sorted(times))]


# --- spacing at the wire ---------------------------------------------------------------


async def test_a_late_request_never_lets_the_next_go_early():
    clock = FakeClock()
    limiter = HostLimiter(HostPolicy(rate=10, concurrency=8, adaptive=False), clock)
    wire: list[float] = []
    # The first request reaches the wire 45 ms after its slot, the others at once:
    # spaced from the slots, the second would leave 55 ms after the first.
    delays = [0.045] + [0.0] * 9
    await clock.run(*(send(limiter, clock, d, wire) for d in delays))
    assert len(wire) == 10
    assert min(gaps(wire)) >= 0.1 - 1e-9
    assert wire[0] == pytest.approx(0.045)


async def test_spacing_holds_whatever_the_delays():
    clock = FakeClock()
    limiter = HostLimiter(HostPolicy(rate=20, concurrency=4, adaptive=False), clock)
    wire: list[float] = []
    delays = [0.0, 0.07, 0.01, 0.2, 0.0, 0.0, 0.13, 0.04, 0.0, 0.09, 0.0, 0.3]
    await clock.run(*(send(limiter, clock, d, wire) for d in delays))
    assert min(gaps(wire)) >= 0.05 - 1e-9


async def test_without_word_from_the_wire_the_slot_is_the_start():
    clock = FakeClock()
    limiter = HostLimiter(HostPolicy(rate=4, concurrency=1, adaptive=False), clock)
    starts = []

    async def three() -> None:
        for _ in range(3):
            async with limiter.slot() as ticket:
                starts.append(ticket.sent_at)

    await clock.run(three())
    assert starts == [0.0, 0.25, 0.5]


async def test_a_pause_holds_requests_at_the_wire_and_a_long_one_sends_them_back():
    clock = FakeClock()
    limiter = HostLimiter(HostPolicy(rate=10, concurrency=8, adaptive=False), clock)
    wire: list[float] = []
    await clock.run(send(limiter, clock, 0.0, wire))
    limiter.pause(1.0)  # at t=0: a short pause is waited out at the wire
    await clock.run(limiter.at_wire())
    assert clock.now() == pytest.approx(1.0)
    limiter.pause(30.0)  # a long one: the request goes back to wait without a connection
    with pytest.raises(HostPaused):
        await clock.run(limiter.at_wire())
    await clock.run(limiter.wait_ready())
    assert clock.now() == pytest.approx(31.0)


@pytest.mark.parametrize("stall", [0.0, 0.05])
async def test_a_stall_between_the_wire_time_and_the_write_pushes_the_next_request(stall):
    # The process stalls (a garbage collection, the scheduler) after the wire time
    # was noted and before the headers were written: the next request is spaced
    # from when the write is known to have happened.
    clock = FakeClock()
    limiter = HostLimiter(HostPolicy(rate=10, adaptive=False), clock)

    async def first() -> float:
        sent = await limiter.at_wire()
        clock.t += stall  # the write happens only now
        return sent

    assert await clock.run(first()) == [0.0]
    (second,) = await clock.run(limiter.at_wire())
    # At most WIRE_CONFIRM (5 ms) early for a write delayed by a stall; never for one on time.
    assert second == pytest.approx(max(0.0, stall - WIRE_CONFIRM) + 0.1)


async def test_a_request_leaves_its_slot_early_and_waits_the_rest_at_the_wire():
    clock = FakeClock()
    limiter = HostLimiter(HostPolicy(rate=10, concurrency=2, adaptive=False), clock)
    left: list[float] = []
    wire: list[float] = []

    async def one() -> None:
        async with limiter.slot(wire=True) as ticket:
            left.append(clock.now())
            ticket.sent_at = await limiter.at_wire(ticket)
            wire.append(ticket.sent_at)

    await clock.run(one(), one(), one())
    assert wire == pytest.approx([0.0, 0.1, 0.2])
    assert left == pytest.approx([0.0, 0.08, 0.18])  # WIRE_LEAD (at most interval / 5) early


# --- the adaptive rate -------------------------------------------------------------------


def test_a_throttle_halves_the_rate_once_per_burst():
    rate = AdaptiveRate(10, ceiling=10, floor=0.05)
    assert rate.throttled(sent_at=1.0, now=1.2)
    assert rate.rate == 5 and rate.target == pytest.approx(9)
    # The other requests in flight, sent before the decrease, answer 429 too: one signal.
    assert not rate.throttled(sent_at=1.1, now=1.25)
    assert rate.rate == 5 and rate.decreases == 1
    # A request sent after the decrease that is throttled again lowers it again.
    assert rate.throttled(sent_at=1.3, now=1.4)
    assert rate.rate == 2.5 and rate.target == pytest.approx(4.5)


def test_clean_answers_recover_fast_to_the_target_then_probe_slowly():
    rate = AdaptiveRate(10, ceiling=10, floor=0.05)
    rate.throttled(sent_at=0.0, now=0.0)
    answers = 0
    while rate.rate < rate.target:
        rate.clean(sent_at=1.0)
        answers += 1
    assert rate.rate == pytest.approx(9)
    assert answers <= 13  # 5 -> 9 at +5 % per answer
    for _ in range(100):
        rate.clean(sent_at=1.0)
    assert rate.rate == pytest.approx(9 + 100 * AdaptiveRate.STEP)
    # Answers to requests sent before the decrease don't count.
    rate.throttled(sent_at=2.0, now=2.0)
    before = rate.rate
    rate.clean(sent_at=1.9)
    assert rate.rate == before


def test_the_rate_never_passes_its_ceiling_nor_its_floor():
    rate = AdaptiveRate(10, ceiling=10, floor=0.05)
    for _ in range(10_000):
        rate.clean(sent_at=0.0)
    assert rate.rate == 10  # the configured rate is the ceiling by default
    raised = AdaptiveRate(10, ceiling=50, floor=0.05)
    for _ in range(10_000):
        raised.clean(sent_at=0.0)
    assert raised.rate == 50
    for t in range(100):
        raised.throttled(sent_at=float(t), now=float(t))
    assert raised.rate == 0.05


def test_a_fixed_rate_stays_fixed():
    rate = AdaptiveRate(10, ceiling=10, floor=0.05, adaptive=False)
    assert not rate.throttled(sent_at=0.0, now=0.0)
    rate.clean(sent_at=1.0)
    assert rate.rate == 10


def test_an_unlimited_rate_is_halved_from_what_really_went_out():
    rate = AdaptiveRate(math.inf, ceiling=math.inf, floor=0.05)
    rate.throttled(sent_at=0.0, now=0.0, observed=40.0)
    assert rate.rate == 20 and rate.target == 36


async def test_limiter_reads_statuses_and_keeps_its_stats():
    clock = FakeClock()
    limiter = HostLimiter(HostPolicy(rate=10, max_rate=20), clock)
    assert limiter.stats.rate == 10 and limiter.stats.ceiling == 20
    limiter.answered(503, 0.0, retry_after=1.0)  # a pause, not a decrease
    assert limiter.rate == 10
    limiter.answered(200, 0.0, retry_after=None)
    assert limiter.rate > 10  # below the raised ceiling it climbs
    limiter.answered(503, 0.0, retry_after=None)  # overloaded, no word on when: decrease
    assert limiter.rate < 10 and limiter.stats.decreases == 1
    limiter.answered(429, 1.0, retry_after=2.0)
    assert limiter.stats.decreases == 2 and limiter.stats.rate == limiter.rate


async def test_requests_released_after_a_pause_go_out_at_the_new_rate():
    clock = FakeClock()
    limiter = HostLimiter(HostPolicy(rate=10, concurrency=8), clock)
    wire: list[float] = []
    await clock.run(send(limiter, clock, 0.0, wire))
    # The host answers that request 429 with Retry-After: 2 (at t=0.05).
    clock.t = 0.05
    limiter.pause(2.0)
    limiter.answered(429, wire[0], retry_after=2.0)
    assert limiter.rate == 5
    queued: list[float] = []
    await clock.run(*(send(limiter, clock, 0.0, queued) for _ in range(6)))
    assert min(queued) == pytest.approx(2.05)
    assert min(gaps(queued)) >= 0.2 - 1e-9  # spaced at 5/s, not released together
    assert max(queued) == pytest.approx(2.05 + 5 * 0.2)


async def test_a_learned_rate_is_where_a_host_starts():
    clock = FakeClock()
    limiter = HostLimiter(HostPolicy(rate=10), clock, start_rate=2.5)
    assert limiter.rate == 2.5
    over = HostLimiter(HostPolicy(rate=10), clock, start_rate=40.0)
    assert over.rate == 10  # never above the ceiling


# --- through the transport, measured by the server ------------------------------------------


def throttled_then_ok(throttles: int, retry_after: str):
    state = {"calls": 0}

    async def handler(request: web.Request) -> web.Response:
        state["calls"] += 1
        if state["calls"] <= throttles:
            return web.Response(status=429, headers={"Retry-After": retry_after}, text="slow down")
        return web.Response(text="ok")

    return handler


async def test_honoured_retry_afters_cost_time_not_attempts(server: LocalServer):
    server.route("GET", "/t", throttled_then_ok(5, "0"))
    config = ClientConfig(
        retry=RetryPolicy(attempts=3, initial=0.01, jitter=0.0),
        host=HostPolicy(rate=200),
    )
    async with VOClient(config) as client:
        answer = await client.transport.request("GET", server.url("/t"))
        stats = client.stats[f"http://127.0.0.1:{server.port}"]
    assert answer.body == b"ok"
    assert len(server.hits_for("/t")) == 6
    assert stats.decreases == 5 and stats.rate < 200


async def test_a_host_that_never_lets_through_ends_in_a_deadline_error(server: LocalServer):
    server.route("GET", "/t", throttled_then_ok(10_000, "0.2"))
    config = ClientConfig(
        retry=RetryPolicy(attempts=3, initial=0.01, jitter=0.0, deadline=0.5),
        host=HostPolicy(rate=math.inf),
    )
    async with VOClient(config) as client:
        with pytest.raises(RequestTimeoutError) as caught:
            await client.transport.request("GET", server.url("/t"))
    assert "deadline" in str(caught.value) and "429" in str(caught.value)
    assert caught.value.attempts >= 3


async def test_a_redirect_to_the_same_host_is_spaced_at_the_wire(server: LocalServer):
    async def hop(request: web.Request) -> web.Response:
        raise web.HTTPFound("/ok")

    async def ok(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    server.route("GET", "/hop", hop)
    server.route("GET", "/ok", ok)
    config = ClientConfig(host=HostPolicy(rate=5, adaptive=False))
    async with VOClient(config) as client:
        await client.transport.request("GET", server.url("/hop"))
    first, second = (hit.at for hit in server.hits)
    # One slot, two requests on the wire: the second waits its turn there (0.2 s).
    assert second - first >= 0.8 * 0.2
