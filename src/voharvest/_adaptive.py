"""The adaptive per-host rate: how fast to ask a host that never says its limit.

Pure arithmetic, no clock and no I/O: :class:`~voharvest._limiter.HostLimiter`
feeds it what the host answered and reads :attr:`AdaptiveRate.rate` back.

The rule (an AIMD controller, as TCP's congestion control, in requests/s):

- Start at the configured rate (or the rate a previous run learned), never
  above the ceiling (``HostPolicy.max_rate``, by default the configured rate
  itself: a host that says nothing is never pushed harder than that).
- **Decrease** on a throttling answer (429; 503 without Retry-After): the rate
  that tripped the host is noted, the rate is halved (``DECREASE``) and the
  *target* becomes 90 % (``TARGET``) of the tripping rate. Answers to requests
  sent before the last decrease don't count again: a burst of 429s from the
  requests already in flight is one signal, not eight.
- **Recover** below the target: +5 % (``RECOVERY``) per clean answer, so a
  halved rate is back near the target within about a dozen answers.
- **Probe** at or above the target: +0.001 requests/s (``STEP``) per clean
  answer. Answers come at about the rate, so this climbs 10 % of any rate in
  about 100 s: fewer than one 429 per minute against a host whose limit sits
  under the ceiling (+0.002 measured 1.1-1.7 a minute).

A 503 *with* Retry-After pauses the host (the host said when to come back)
but does not lower the rate: such answers are as often maintenance or a
random failure as load, and the pause already relieves the host.
"""

from __future__ import annotations

import math

__all__ = ["AdaptiveRate"]


class AdaptiveRate:
    """One host's current rate under the rule of the module doc."""

    DECREASE = 0.5
    TARGET = 0.9
    RECOVERY = 1.05
    STEP = 0.001

    __slots__ = ("_since", "adaptive", "ceiling", "decreases", "floor", "rate", "target")

    def __init__(
        self, start: float, *, ceiling: float, floor: float, adaptive: bool = True
    ) -> None:
        self.ceiling = ceiling
        self.floor = min(floor, ceiling)
        self.rate = max(self.floor, min(start, ceiling))
        self.target = ceiling
        self.adaptive = adaptive
        self.decreases = 0
        self._since = -math.inf  # when the last decrease happened (clock seconds)

    def throttled(self, sent_at: float, now: float, observed: float | None = None) -> bool:
        """A throttling answer to a request sent at ``sent_at``: True if the rate went down.

        ``observed``: the rate requests really went out at lately (used when
        the rate is unlimited, to know what tripped the host).
        """
        if not self.adaptive or sent_at < self._since:
            return False
        tripped = self.rate
        if math.isinf(tripped):
            tripped = observed if observed is not None and math.isfinite(observed) else 10.0
        self.target = max(self.floor, min(self.ceiling, self.TARGET * tripped))
        self.rate = max(self.floor, self.DECREASE * tripped)
        self._since = now
        self.decreases += 1
        return True

    def clean(self, sent_at: float) -> None:
        """A clean answer (not a throttle) to a request sent at ``sent_at``."""
        if not self.adaptive or sent_at < self._since or math.isinf(self.rate):
            return
        if self.rate < self.target:
            self.rate = min(self.target, self.rate * self.RECOVERY)
        else:
            self.rate = min(self.ceiling, self.rate + self.STEP)

    @property
    def interval(self) -> float:
        """Seconds between request starts at the current rate."""
        return 0.0 if math.isinf(self.rate) else 1.0 / self.rate
