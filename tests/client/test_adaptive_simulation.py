"""The adaptive rate against simulated token-bucket hosts, on a simulated clock.

Deterministic: no event loop and no sleeping. A client sends as fast as its
:class:`~voharvest._adaptive.AdaptiveRate` allows (requests ``1 / rate`` apart,
at most ``concurrency`` in flight, held while a Retry-After pause lasts) to a
host that takes requests from a token bucket; the host's refusals are
counted where the host counts them, as the benchmark's farm does
(``python -m benchmarks.politeness --only unknown``).
"""

from __future__ import annotations

import heapq
import itertools
import math
from dataclasses import dataclass

import pytest

from voharvest._adaptive import AdaptiveRate


@dataclass
class Outcome:
    refusals: list[float]
    accepted: list[float]
    rate: AdaptiveRate

    def refusals_before(self, t: float) -> int:
        return sum(1 for r in self.refusals if r < t)

    def refusals_per_minute_after(self, t: float, end: float) -> float:
        return 60.0 * sum(1 for r in self.refusals if r >= t) / (end - t)

    def throughput_after(self, t: float, end: float) -> float:
        return sum(1 for a in self.accepted if a >= t) / (end - t)


def simulate(
    limit: float,
    burst: float,
    retry_after: str,
    *,
    start: float = 10.0,
    ceiling: float = 10.0,
    seconds: float = 600.0,
    latency: float = 0.02,
    concurrency: int = 8,
    wall_offset: float = 0.37,
) -> Outcome:
    """``seconds`` of a client with endless work against one host.

    The host: a bucket of ``burst`` tokens refilled at ``limit`` per second;
    a request that finds no token is refused at once, with Retry-After
    ``retry_after``: "seconds" (1 s), "date" (an HTTP date one second ahead,
    rounded up to the second of a wall clock ``wall_offset`` s off), or
    "none" (no pause; the client only slows down). Accepted requests are
    answered after ``latency`` seconds.
    """
    rate = AdaptiveRate(start, ceiling=ceiling, floor=0.05)
    tokens, refilled = burst, 0.0
    now, last_sent, paused = 0.0, -math.inf, -math.inf
    answers: list[tuple[float, float, bool]] = []  # (when, sent at, accepted)
    refusals: list[float] = []
    accepted: list[float] = []
    while True:
        send_at = max(now, last_sent + rate.interval, paused)
        if len(answers) >= concurrency:
            send_at = math.inf
        if answers and answers[0][0] <= send_at:
            now, sent, ok = heapq.heappop(answers)
            if ok:
                rate.clean(sent)
            else:
                rate.throttled(sent, now)
                if retry_after == "seconds":
                    paused = max(paused, now + 1.0)
                elif retry_after == "date":
                    paused = max(paused, math.ceil(now + wall_offset + 1.0) - wall_offset)
            continue
        if send_at >= seconds:
            return Outcome(refusals, accepted, rate)
        now = last_sent = send_at
        tokens, refilled = min(burst, tokens + (now - refilled) * limit), now
        ok = tokens >= 1.0
        if ok:
            tokens -= 1.0
            accepted.append(now)
        else:
            refusals.append(now)
        heapq.heappush(answers, (now + (latency if ok else 0.001), now, ok))


#: The hosts of issue 14 that voharvest is not told about: limit/s, bucket,
#: Retry-After, and the ceiling (the configured rate 10, or a user's 50).
ISSUE_HOSTS = [(1.0, 2.0, "date", 10.0), (3.0, 1.0, "none", 10.0), (3.0, 2.0, "seconds", 10.0)]
ISSUE_HOSTS.append((20.0, 2.0, "seconds", 50.0))


@pytest.mark.parametrize(("limit", "burst", "retry_after", "ceiling"), ISSUE_HOSTS)
@pytest.mark.parametrize("seconds", [120.0, 600.0])
def test_unannounced_limits_are_found_and_kept(limit, burst, retry_after, ceiling, seconds):
    # From the default start (10/s), 2 and 10 minutes of endless work.
    outcome = simulate(limit, burst, retry_after, ceiling=ceiling, seconds=seconds)
    assert outcome.refusals_before(30.0) <= 4
    assert outcome.refusals_per_minute_after(30.0, seconds) <= 1.0
    assert outcome.throughput_after(30.0, seconds) >= 0.85 * limit
    assert 0.85 * limit <= outcome.rate.rate <= 1.1 * limit


def test_a_one_per_second_host_over_ten_minutes():
    outcome = simulate(1.0, 2.0, "date", seconds=600.0)
    after = [r for r in outcome.refusals if r >= 30.0]
    assert len(after) <= (600 - 30) / 60
    assert all(b - a >= 60.0 for a, b in itertools.pairwise(after))  # never two in a minute
    assert outcome.throughput_after(30.0, 600.0) >= 0.95
    assert outcome.rate.level == pytest.approx(1.0, abs=0.05)  # the level it learned


@pytest.mark.parametrize("limit", [0.5, 1.0, 3.0, 8.0, 20.0])
@pytest.mark.parametrize("burst", [1.0, 2.0, 3.0])
@pytest.mark.parametrize("retry_after", ["seconds", "date", "none"])
@pytest.mark.parametrize("latency", [0.02, 0.3])
def test_any_bucket_any_latency(limit, burst, retry_after, latency):
    ceiling = 50.0 if limit > 10 else 10.0
    outcome = simulate(limit, burst, retry_after, ceiling=ceiling, latency=latency)
    assert outcome.refusals_before(30.0) <= 5
    assert outcome.refusals_per_minute_after(30.0, 600.0) <= 1.0
    assert outcome.throughput_after(30.0, 600.0) >= 0.8 * limit


def test_a_host_that_never_refuses_is_asked_at_the_ceiling():
    outcome = simulate(100.0, 2.0, "seconds", seconds=60.0)
    assert outcome.refusals == []
    assert outcome.rate.rate == 10.0  # the configured rate: never pushed harder
    raised = simulate(100.0, 2.0, "seconds", ceiling=40.0, seconds=60.0)
    assert raised.refusals == [] and raised.rate.rate == 40.0


# --- the rule, step by step ------------------------------------------------------------


def test_the_level_is_measured_from_the_answers_and_the_rate_set_just_below():
    rate = AdaptiveRate(10, ceiling=10, floor=0.05)
    for i in range(40):  # 2/s accepted for 20 s
        rate.clean(sent_at=i * 0.5)
    assert rate.accepted() == pytest.approx((40 - AdaptiveRate.BURST) / 19.5)
    assert rate.throttled(sent_at=20.0, now=20.0)
    assert rate.level == pytest.approx((40 - AdaptiveRate.BURST) / 19.5)
    assert rate.rate == pytest.approx(AdaptiveRate.GENTLE * rate.level)


def test_a_refusal_near_the_known_level_is_a_gentle_decrease():
    rate = AdaptiveRate(10, ceiling=10, floor=0.05)
    rate.throttled(sent_at=0.0, now=0.0)  # 10 -> 5: nothing known, halved
    assert rate.rate == 5 and rate.level == pytest.approx(9.5)
    rate.rate = 9.0  # climbed back meanwhile
    rate.throttled(sent_at=1.0, now=1.0)  # 9 >= 80 % of 9.5: near the level
    assert rate.rate == pytest.approx(0.85 * 0.95 * 9.0)


def test_after_a_gentle_decrease_the_rate_plateaus_at_the_level_then_probes():
    rate = AdaptiveRate(10, ceiling=10, floor=0.05)
    for i in range(60):
        rate.clean(sent_at=i / 3)  # 3/s
    rate.throttled(sent_at=20.0, now=20.0)
    level, low = rate.level, rate.rate
    assert level is not None and low < level
    seen = {}
    for i in range(1, 400):  # a clean answer every half second
        rate.clean(sent_at=20.0 + i / 2)
        seen[i / 2] = rate.rate
    assert seen[10.0] > low  # climbs fast at first
    assert seen[60.0] == pytest.approx(level, rel=0.02)  # flat near the level
    assert seen[90.0] == pytest.approx(level, rel=0.002)  # at it after PLATEAU seconds
    assert seen[180.0] > 1.1 * level  # then probes above
