"""The adaptive per-host rate: how fast to ask a host that never says its limit.

Pure arithmetic, no clock and no I/O: :class:`~voharvest._limiter.HostLimiter`
feeds it what the host answered, with the times the requests were sent, and
reads :attr:`AdaptiveRate.rate` back. Rates are requests/s.

Hosts rarely publish their limits, and the usual way to enforce one is a
token bucket: a host limited at L with a bucket of b takes b requests at
once and L a second after that. A client above L is refused (429, or 503
without Retry-After) once the bucket is empty, which at a rate r takes about
b / (r - L) seconds: a refusal comes late, and the rate that got it is above
the limit. What the host *took* since the previous refusal says more. The
rule, after TCP's CUBIC (RFC 9438), which also remembers where the last loss
was and approaches it slowly:

- **Start** at the configured rate (or where a previous run ended), never
  above the ceiling (``HostPolicy.max_rate``, by default the configured rate
  itself: a host that says nothing is never asked faster than that).
- **The level**: at each refusal, the rate the host took since the previous
  one (:meth:`AdaptiveRate.accepted`: from the send times of the clean
  answers, less a bucket of ``BURST``; it needs ``MIN_ANSWERS`` answers over
  ``MIN_SPAN`` seconds), and at most 95 % of the refused rate (``OVERSHOOT``).
  It is kept as :attr:`AdaptiveRate.level`.
- **A refusal far above the level** (the first one, or one below 80 %
  (``NEAR``) of the last level with too few answers since to measure one):
  the rate is halved (``DECREASE``) and the target is 90 % of the refused
  rate (``TARGET``). After the first, clean answers take the rate back +5 %
  each (``RECOVERY``) to the target, then +``STEP`` each; after later ones
  (the limit is further down still) the rate climbs as a convex cube, slowly
  at first, back at the level after ``DISCOVERY`` seconds.
- **A refusal near the level**, or one after which the level was measured:
  the rate goes to 85 % of the level (``GENTLE``), not half, then follows the
  cube ``level * (1 + c * (t - K) ** 3)`` (t: seconds since the refusal): up
  quickly at first, flat near the level at K = ``PLATEAU`` seconds, then
  slowly beyond, probing whether the host takes more.
- Answers to requests sent before a decrease don't count: a burst of
  refusals from the requests already in flight is one signal, not eight.

So near its limit a host sees one refusal every one to two minutes, when
the probe has stayed above the limit long enough to empty the bucket, and
90-100 % of its limit in between. ``tests/client/test_adaptive_simulation.py``
plays this out on a simulated clock against buckets of 1-3 at 0.5-20
requests/s.

A 503 *with* Retry-After pauses the host (the host said when to come back)
but does not lower the rate: such answers are as often maintenance or a
random failure as load, and the pause already relieves the host.
"""

from __future__ import annotations

import math
from collections import deque

__all__ = ["AdaptiveRate"]


class AdaptiveRate:
    """One host's current rate under the rule of the module doc."""

    DECREASE = 0.5
    TARGET = 0.9
    RECOVERY = 1.05
    STEP = 0.001
    NEAR = 0.8
    GENTLE = 0.85
    OVERSHOOT = 0.95
    BURST = 1.5
    MIN_ANSWERS = 3
    MIN_SPAN = 2.0
    PLATEAU = 90.0
    DISCOVERY = 30.0
    KEPT = 256

    __slots__ = (
        "_anchor",
        "_cube",
        "_plateau",
        "_probe",
        "_since",
        "_step",
        "_times",
        "adaptive",
        "ceiling",
        "clean_answers",
        "decreases",
        "floor",
        "level",
        "rate",
        "target",
    )

    def __init__(
        self, start: float, *, ceiling: float, floor: float, adaptive: bool = True
    ) -> None:
        self.ceiling = ceiling
        self.floor = min(floor, ceiling)
        self.rate = max(self.floor, min(start, ceiling))
        self.target = ceiling
        self.adaptive = adaptive
        self.decreases = 0
        #: The rate the host was last seen to take (None: it never refused).
        self.level: float | None = None
        #: Clean answers since the last decrease (the send times of the latest are kept).
        self.clean_answers = 0
        self._times: deque[float] = deque(maxlen=self.KEPT)
        self._since = -math.inf  # when the last decrease happened (clock seconds)
        self._step = self.RECOVERY  # per clean answer, below the target
        self._probe = self.STEP  # per clean answer, above it (after a gentle decrease: 0)
        # The climb after a decrease: anchor * (1 + cube * (t - plateau) ** 3).
        self._anchor = self.rate
        self._plateau = 0.0
        self._cube = 0.0

    def accepted(self) -> float | None:
        """The rate the host took lately, if enough answers since the last decrease tell.

        A token bucket (limit L, b tokens) takes at most ``b + L * s`` requests
        in any ``s`` seconds, so each run of clean answers up to the latest
        bounds L from below: ``(answers - BURST) / s``. The tightest of these
        over the runs of at least ``MIN_ANSWERS`` answers and ``MIN_SPAN``
        seconds; the latest runs count most when the rate was climbing.
        """
        times = self._times
        if len(times) < self.MIN_ANSWERS:
            return None
        last = times[-1]
        best: float | None = None
        for count, first in enumerate(reversed(times), start=1):
            span = last - first
            if count >= self.MIN_ANSWERS and span >= self.MIN_SPAN:
                bound = (count - self.BURST) / span
                if best is None or bound > best:
                    best = bound
        return best

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
        measured = self.accepted()
        level = self.OVERSHOOT * tripped
        if measured is not None:
            level = min(level, measured)
        level = max(level, self.floor)
        near = self.level is not None and tripped >= self.NEAR * self.level
        if near or measured is not None:
            # Just below the level, then a cube: up to it in PLATEAU s, flat, then beyond.
            self.rate = self.target = self._bounded(self.GENTLE * level)
            self._step, self._probe = self.RECOVERY, 0.0
            self._anchor, self._plateau = level, self.PLATEAU
            self._cube = max(0.0, 1.0 - self.rate / level) / self.PLATEAU**3
        else:
            # Far above: halved, then convex from there, back at the level in DISCOVERY s.
            first = self.level is None
            self.rate = max(self.floor, self.DECREASE * tripped)
            self.target = self._bounded(self.TARGET * tripped)
            self._step, self._probe = (self.RECOVERY if first else 1.0), self.STEP
            self._anchor, self._plateau = self.rate, 0.0
            self._cube = max(0.0, level / self.rate - 1.0) / self.DISCOVERY**3
        self.level = level
        self._since = now
        self.clean_answers = 0
        self._times.clear()
        self.decreases += 1
        return True

    def clean(self, sent_at: float) -> None:
        """A clean answer (not a throttle) to a request sent at ``sent_at``."""
        if not self.adaptive or sent_at < self._since or math.isinf(self.rate):
            return
        self.clean_answers += 1
        if not self._times or sent_at >= self._times[-1]:
            self._times.append(sent_at)
        if self.rate < self.target:
            self.rate = max(self.rate, min(self.target, self.rate * self._step))
        else:
            self.rate = self.rate + self._probe
        self.rate = min(self.ceiling, max(self.rate, self._climb(sent_at)))

    def _climb(self, at: float) -> float:
        """Where the cube puts the rate ``at`` (clock seconds), after the last decrease."""
        if not self._cube:
            return 0.0
        return self._anchor * (1.0 + self._cube * (at - self._since - self._plateau) ** 3)

    def _bounded(self, rate: float) -> float:
        return max(self.floor, min(self.ceiling, rate))

    @property
    def interval(self) -> float:
        """Seconds between request starts at the current rate."""
        return 0.0 if math.isinf(self.rate) else 1.0 / self.rate
