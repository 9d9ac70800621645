"""Retries: which failures are tried again, after how long, and when to give up.

:func:`with_retries` runs one operation's attempts under the client's
:class:`~voharvest.RetryPolicy`:

- **worth retrying**: a :class:`~voharvest.TransportError` marked retryable
  (the transport decides: timeouts, resets, a body cut short, the policy's
  statuses); never anything else, so cancellation is never retried. A request
  that is not idempotent (creating a UWS job) is retried only when it surely
  never reached the application: the connection could not be made, or the
  host answered 429 or 503.
- **the wait**: a Retry-After (seconds or HTTP date, :func:`parse_retry_after`)
  on a 429 or 503 paused the whole host in the limiter, so the retry waits
  there, not here, and the attempt is not charged: against a throttling host a
  request ends in success or a deadline error. Any other Retry-After is
  waited here and charged. Otherwise the wait is the policy's backoff after
  the charged failures so far, plus random jitter.
- **giving up**: when the charged failures reach the attempts allowed, or
  when the next attempt could not start before the operation's deadline
  (:class:`Budget`, counted from the first attempt's start).

A short explicit loop rather than tenacity's strategies: the attempts count
only the charged failures, which a retry state holding the last outcome does
not know, and the random backoff drawn for a retry must be the same number the
deadline check and the sleep use. Here both are local variables of one call,
decided in one place, in one order.
"""

from __future__ import annotations

import email.utils
import logging
import math
import random
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, TypeVar

from ._exceptions import HTTPStatusError, RequestTimeoutError, TransportError

if TYPE_CHECKING:
    from ._clock import Clock
    from ._config import RetryPolicy
    from ._limiter import HostStats

__all__ = ["Budget", "parse_retry_after", "with_retries"]

logger = logging.getLogger("voharvest.transport")
T = TypeVar("T")

#: Statuses whose Retry-After pauses the whole host (the limiter holds the retry).
_HOST_PAUSES = (429, 503)


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a Retry-After header: delay-seconds or an HTTP date."""
    if value is None:
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        return max(0.0, seconds) if math.isfinite(seconds) else None
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


class Budget:
    """The deadline of one operation, counted from its first attempt's start."""

    def __init__(self, clock: Clock, deadline: float) -> None:
        self._clock = clock
        self._deadline = deadline
        self._start: float | None = None

    def begin(self) -> None:
        if self._start is None:
            self._start = self._clock.now()

    def remaining(self) -> float:
        if self._start is None:
            return self._deadline
        return self._deadline - (self._clock.now() - self._start)


def _worth_retrying(
    exc: TransportError, idempotent: bool, unsent: Callable[[BaseException], bool]
) -> bool:
    if not exc.retryable:
        return False
    if idempotent:
        return True
    throttled = isinstance(exc, HTTPStatusError) and exc.status in _HOST_PAUSES
    return throttled or unsent(exc)


def _wait(exc: TransportError, policy: RetryPolicy, charged: int) -> tuple[float, float, bool]:
    """(wait here, time the next attempt needs before the deadline, charged?)."""
    if isinstance(exc, HTTPStatusError) and exc.retry_after is not None:
        if exc.status in _HOST_PAUSES:
            # The whole host is paused until then; the limiter holds us. The
            # host said when to come back: that costs time, not an attempt.
            return 0.0, exc.retry_after, False
        return exc.retry_after, exc.retry_after, True  # only this request was told to wait
    delay = policy.backoff(charged + 1) + random.uniform(0, policy.jitter)
    return delay, delay, True


async def with_retries(
    url: str,
    attempt: Callable[[Budget], Awaitable[T]],
    *,
    policy: RetryPolicy,
    clock: Clock,
    stats: HostStats,
    idempotent: bool = True,
    attempts: int | None = None,
    unsent: Callable[[BaseException], bool],
) -> T:
    """Run ``attempt`` until it succeeds or the retry policy gives up; see the module doc.

    The error finally raised is the last attempt's, with ``attempts`` set.
    ``attempts``: at most this many (charged) attempts, if fewer than the
    policy's (a failover's first quick pass over its endpoints). ``unsent``:
    whether a failure surely never reached the server (the connection could
    not be made), for requests that are not idempotent.
    """
    allowed = policy.attempts if attempts is None else max(1, min(attempts, policy.attempts))
    budget = Budget(clock, policy.deadline)
    failures: list[TransportError] = []
    charged = 0  # failures charged to the attempts (not honoured Retry-Afters)
    made = 0
    while True:
        made += 1
        try:
            return await attempt(budget)
        except TransportError as exc:
            over_deadline = False
            if _worth_retrying(exc, idempotent, unsent):
                delay, needed, charge = _wait(exc, policy, charged)
                charged += charge
                failures.append(exc)
                # Retry only if an attempt can still start before the deadline.
                if needed < budget.remaining():
                    if charged < allowed:
                        stats.retries += 1
                        logger.info("retrying %s (attempt %d failed: %s)", url, made, exc)
                        await clock.sleep(delay)
                        continue
                else:
                    over_deadline = delay == 0.0 and isinstance(exc, HTTPStatusError)
            _give_up(exc, url, made, failures, stats, policy, over_deadline)
            raise


def _give_up(
    exc: TransportError,
    url: str,
    made: int,
    failures: list[TransportError],
    stats: HostStats,
    policy: RetryPolicy,
    over_deadline: bool,
) -> None:
    """Count the failure; raise what says best why the last attempt was the last."""
    exc.attempts = made
    stats.failures += 1
    throttled = [f for f in failures if isinstance(f, HTTPStatusError) and f.status in _HOST_PAUSES]
    if isinstance(exc, RequestTimeoutError) and throttled and exc is not failures[-1]:
        raise RequestTimeoutError(
            f"{exc.message}; the host throttled it {len(throttled)} times "
            f"(last: {throttled[-1].message})",
            url=url,
            attempts=made,
        ) from exc
    if over_deadline:
        raise RequestTimeoutError(
            f"the deadline of {policy.deadline:g} s would pass before the host lets "
            f"the request through (last answer: {exc.message})",
            url=url,
            attempts=made,
        ) from exc
