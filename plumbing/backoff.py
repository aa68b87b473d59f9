"""One backoff for the whole project: exponential with full jitter, capped, reset on success.

Pure on purpose: nothing here sleeps or reads a clock. A caller asks how long to wait, waits however it likes
(``asyncio.sleep``, a fake clock in a test) and says when an attempt succeeded. Full jitter (a delay drawn
uniformly from zero to the exponential bound) spreads the retries of many clients behind one IP, so a server
that dropped them all at once is not hit by all of them again at the same instant.

:class:`SlidingWindow` caps how many attempts start within a window ("at most 30 new connections a minute"):
the backoff says how long *this* failure should wait, the window says how long the *budget* needs; a caller
waits for the longer of the two.
"""

from __future__ import annotations

import random
from collections import deque
from dataclasses import dataclass, field

_MAX_EXPONENT = 64
"""Past this the bound is the cap anyway; stops ``2 ** attempt`` growing without end in a long outage."""


def exponential(attempt: int, *, base: float, cap: float) -> float:
    """``min(cap, base * 2**attempt)`` for the ``attempt``-th consecutive failure (0-based).

    The bound full jitter draws under, and the delay itself where one process retries one thing on a schedule a
    reader can predict from the log (a sink's retries, waiting for our own Redis): there is no crowd of clients to
    spread out.
    """
    return min(cap, base * 2.0 ** min(max(attempt, 0), _MAX_EXPONENT))


def full_jitter(attempt: int, *, base: float, cap: float, rng: random.Random) -> float:
    """A delay uniform in ``[0, min(cap, base * 2**attempt)]`` for the ``attempt``-th consecutive failure (0-based)."""
    return rng.uniform(0.0, exponential(attempt, base=base, cap=cap))


@dataclass
class Backoff:
    """Consecutive-failure counter that turns each failure into a jittered delay.

    ``rng`` is injectable so a test can fix the draws; the default is a private ``Random`` so two instances in
    one process do not share (and correlate) one sequence.
    """

    base: float = 0.5
    cap: float = 30.0
    rng: random.Random = field(default_factory=random.Random)
    failures: int = 0
    """Failures since the last success: the exponent of the next delay."""

    def __post_init__(self) -> None:
        if self.base <= 0 or self.cap < self.base:
            raise ValueError(f"backoff needs 0 < base <= cap, not base={self.base} cap={self.cap}")

    def next_delay(self) -> float:
        """Record one more failure and return how long to wait before the next attempt."""
        delay = full_jitter(self.failures, base=self.base, cap=self.cap, rng=self.rng)
        self.failures += 1
        return delay

    def reset(self) -> None:
        """An attempt succeeded: the next failure starts again from ``base``."""
        self.failures = 0


class SlidingWindow:
    """At most ``limit`` events in any ``window`` seconds; says how long to wait before the next one.

    Exact rather than a token bucket: the exchange counts connections per rolling minute, and a bucket's burst
    allowance could exceed that count right after a quiet spell. Holds at most ``limit`` timestamps.
    """

    def __init__(self, limit: int, window: float = 60.0) -> None:
        if limit < 1 or window <= 0:
            raise ValueError(f"a sliding window needs limit >= 1 and window > 0, not {limit} in {window}s")
        self.limit = limit
        self.window = window
        self._times: deque[float] = deque()

    def _expire(self, now: float) -> None:
        while self._times and self._times[0] <= now - self.window:
            self._times.popleft()

    def wait(self, now: float) -> float:
        """Seconds from ``now`` until one more event fits in the window (0 when it fits now)."""
        self._expire(now)
        if len(self._times) < self.limit:
            return 0.0
        return self._times[0] + self.window - now

    def record(self, now: float) -> None:
        """An event happened at ``now`` (call after :meth:`wait` said 0, or after waiting what it said)."""
        self._expire(now)
        self._times.append(now)
        while len(self._times) > self.limit:
            self._times.popleft()
