"""Keeping the producer under the exchange's request-weight limit.

Hyperliquid allows 1,200 request weight per minute per IP; an info request weighs 20 plus about one per 20 items
it returns. A token bucket refills at the configured share of that limit. A request reserves its base weight
before it is sent and pays for the items it received afterwards, so a large answer slows the following requests
instead of getting us a 429. When a poll needs more weight than an interval allows, the poll simply takes longer:
the bucket spreads its requests out, and the poll loop reports the stretched interval.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

BASE_WEIGHT = 20
ITEMS_PER_WEIGHT = 20


def response_weight(items: int) -> int:
    """The extra weight of an answer with ``items`` items (fills or trades)."""
    return items // ITEMS_PER_WEIGHT


class WeightBudget:
    """A token bucket of request weight; ``reserve`` is pure arithmetic on an injectable clock."""

    def __init__(self, per_minute: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        if per_minute <= 0:
            raise ValueError("the weight budget must be positive")
        self.per_second = per_minute / 60.0
        self.capacity = float(max(per_minute / 6.0, BASE_WEIGHT))
        """Ten seconds' worth of weight may go out in a burst, never more."""
        self._clock = clock
        self._tokens = self.capacity
        self._updated = clock()
        self.spent = 0.0
        """Total weight taken, base and items: what the poll loop sizes its interval on. A source that never calls
        the exchange (the node's files) spends none, however much it reads."""

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self.capacity, self._tokens + (now - self._updated) * self.per_second)
        self._updated = now

    @property
    def available(self) -> float:
        """Weight that could be sent right now (negative while in debt)."""
        self._refill()
        return self._tokens

    def reserve(self, weight: float) -> float:
        """Take ``weight`` now and return how long to wait before sending (0 when the bucket had it)."""
        self._refill()
        self._tokens -= weight
        self.spent += weight
        if self._tokens >= 0:
            return 0.0
        return -self._tokens / self.per_second

    def charge(self, weight: float) -> None:
        """Pay for weight that became known only after the answer (items returned); may go into debt."""
        self._refill()
        self._tokens -= weight
        self.spent += weight

    async def acquire(self, weight: float = BASE_WEIGHT) -> None:
        delay = self.reserve(weight)
        if delay > 0:
            await asyncio.sleep(delay)

    def seconds_for(self, weight: float) -> float:
        """How long the budget needs to send ``weight`` at its steady rate; the minimum poll interval."""
        return weight / self.per_second
