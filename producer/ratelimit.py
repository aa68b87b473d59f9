"""Keeping the producer under the exchange's request-weight limit.

Hyperliquid allows 1,200 request weight per minute per IP; an info request weighs 20 plus about one per 20 items
it returns. A token bucket refills at the configured share of that limit. A request reserves its base weight
before it is sent and pays for the items it received afterwards, so a large answer slows the following requests
instead of getting us a 429. When a poll needs more weight than an interval allows, the poll simply takes longer:
the bucket spreads its requests out, and the poll loop reports the stretched interval.

The bucket alone would let its burst go out on top of a minute at the full rate (a sixth more than the budget:
about 1,340 of a 1,150 budget, over the exchange's 1,200), so every request is also held until the last
:data:`WINDOW` of weight sent leaves room for it, and for the most its answer can add (``headroom``): the items'
weight is known only once the answer is in, while the exchange counts it with the request.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable

BASE_WEIGHT = 20
ITEMS_PER_WEIGHT = 20
WINDOW = 61.0
"""The rolling minute the budget is held over, a second longer than the exchange's: a request sent a minute after
another may arrive less than a minute after it."""


def response_weight(items: int) -> int:
    """The extra weight of an answer with ``items`` items (fills or trades)."""
    return items // ITEMS_PER_WEIGHT


class WeightBudget:
    """A token bucket of request weight within a rolling minute; ``reserve`` is pure arithmetic on an injectable
    clock."""

    def __init__(self, per_minute: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        if per_minute <= 0:
            raise ValueError("the weight budget must be positive")
        self.per_minute = float(per_minute)
        self.per_second = per_minute / 60.0
        self.capacity = float(max(per_minute / 6.0, BASE_WEIGHT))
        """Ten seconds' worth of weight may go out in a burst, never more."""
        self._clock = clock
        self._tokens = self.capacity
        self._updated = clock()
        self._sent: deque[tuple[float, float]] = deque()
        """(time, weight) of what went out within the last :data:`WINDOW`, oldest first; a reserved request is at
        the time it is let out, which may be ahead of the clock."""
        self.spent = 0.0
        """Total weight taken, base and items: what the poll loop sizes its interval on. A source that never calls
        the exchange (the node's files) spends none, however much it reads."""

    def _refill(self) -> float:
        now = self._clock()
        self._tokens = min(self.capacity, self._tokens + (now - self._updated) * self.per_second)
        self._updated = now
        while self._sent and self._sent[0][0] <= now - WINDOW:
            self._sent.popleft()
        return now

    def _record(self, at: float, weight: float) -> None:
        # Never before the newest entry, so the deque stays in order: later is the safe side, as the weight then
        # counts in every window the exchange would count it in, and a little longer.
        self._sent.append((max(at, self._sent[-1][0]) if self._sent else at, weight))

    @property
    def available(self) -> float:
        """Weight the bucket could send right now (negative while in debt); see :meth:`room` for the minute too."""
        self._refill()
        return self._tokens

    def room(self, headroom: float = 0.0) -> float:
        """Weight that could go out now without waiting: the bucket's, or what the last minute leaves beside
        ``headroom``, whichever is less."""
        self._refill()
        return min(self._tokens, self.per_minute - headroom - sum(weight for _, weight in self._sent))

    def room_in(self, weight: float, *, headroom: float = 0.0) -> float:
        """Seconds until :meth:`room` is at least ``weight`` (0 when it is now): the bucket's refill, and the
        oldest weight of the minute leaving it."""
        now = self._refill()
        wait = max(0.0, (weight - self._tokens) / self.per_second)
        counted = sum(w for _, w in self._sent)
        for at, w in self._sent:
            if self.per_minute - headroom - counted >= weight:
                break
            wait = max(wait, at + WINDOW - now)
            counted -= w
        return wait

    def reserve(self, weight: float, *, headroom: float = 0.0) -> float:
        """Take ``weight`` now and return how long to wait before sending (0 when the bucket and the minute have
        it); ``headroom`` is the most the answer may add, kept free in the minute."""
        now = self._refill()
        self._tokens -= weight
        self.spent += weight
        send = now if self._tokens >= 0 else now - self._tokens / self.per_second
        need = weight + headroom
        counted = sum(w for t, w in self._sent if t > send - WINDOW)
        for at, w in self._sent:  # oldest first: wait for the oldest to leave the minute until there is room
            if counted + need <= self.per_minute:
                break
            if at > send - WINDOW:
                send = at + WINDOW
                counted -= w
        self._record(send, weight)
        return send - now

    def charge(self, weight: float) -> None:
        """Pay for weight that became known only after the answer (items returned); may go into debt."""
        now = self._refill()
        self._tokens -= weight
        self.spent += weight
        if weight > 0:
            self._record(now, weight)

    async def acquire(self, weight: float = BASE_WEIGHT, *, headroom: float = 0.0) -> None:
        delay = self.reserve(weight, headroom=headroom)
        if delay > 0:
            await asyncio.sleep(delay)

    def seconds_for(self, weight: float) -> float:
        """How long the budget needs to send ``weight`` at its steady rate; the minimum poll interval."""
        return weight / self.per_second
