"""The makers read over REST beside the WebSocket's: the adaptive watchlist's tier beyond the 10 user slots.

Why a second tier: the exchange pushes the fills of 10 users per IP, and the maker ranking has many more makers
worth watching. Their fills can still be read with ``userFillsByTime``, within the request-weight budget (about 50
reads a minute). So the ws source reads them in turn, the one read longest ago first, each at most every
``every`` seconds, and only while the budget keeps room for what matters more: a reconnect's gap-fill and the
completion of the events already published (:mod:`producer.completion`), which need their weight without waiting.
The tier takes at most :data:`SHARE` of the budget's rolling minute, so a quarter is always there for them (the
tier reads first in a poll and would otherwise take every weight the minute frees). A read never waits on the
budget: under a cascade the tier slows down rather than delay the pushed events.

What it costs in figures: a polled maker's liquidations reach the stream one read cycle late (the gauge
``hl_producer_watchlist_polled_oldest_read_seconds`` says how late at worst), and partial like any seen through a
maker. A liquidation whose legs a WebSocket maker took too is published by the push, first; the polled read of the
same key is a duplicate the publish script drops, and the completion brings the exact figures either way.

The order and the room are pure (:meth:`PolledMakers.due`, :func:`has_room`); the source does the reads.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from producer.client import FILLS_ANSWER_WEIGHT
from producer.completion import RESERVE
from producer.ratelimit import BASE_WEIGHT, WeightBudget

__all__ = ["ROOM", "SHARE", "PolledMakers", "has_room", "room_in"]

ROOM = 2 * BASE_WEIGHT + RESERVE
"""Weight a polled read needs available: its own base weight, with a completion's room left after it."""
SHARE = 0.75
"""The part of the budget's rolling minute the tier may fill; the rest stays for completions and gap-fills."""


def _headroom(budget: WeightBudget) -> float:
    """What a polled read leaves free in the minute: the most its answer may weigh, and the others' quarter."""
    return FILLS_ANSWER_WEIGHT + (1 - SHARE) * budget.per_minute


def _room(budget: WeightBudget) -> float:
    """:data:`ROOM`, or less for a small budget whose bucket (or minute share) holds less: it would never have the
    room. Never below one base weight: a budget too small for that leaves the tier idle."""
    return max(float(BASE_WEIGHT), min(float(ROOM), budget.capacity, budget.per_minute - _headroom(budget)))


def has_room(budget: WeightBudget | None) -> bool:
    """Whether a polled read may go now without waiting and without taking a completion's or gap-fill's weight:
    in the bucket, and in the tier's share of the rolling minute beside the most its answer may weigh."""
    return budget is None or budget.room(headroom=_headroom(budget)) >= _room(budget)


def room_in(budget: WeightBudget | None) -> float:
    """Seconds until the budget has a polled read's room (0 when it has it now)."""
    if budget is None:
        return 0.0
    return budget.room_in(_room(budget), headroom=_headroom(budget))


class PolledMakers:
    """The polled addresses and when each was last read (tried, answered or not: a failing one waits its turn)."""

    def __init__(self, every: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.every = every
        self.addresses: list[str] = []
        self.last_read: dict[str, float] = {}
        self._joined: dict[str, float] = {}
        self._clock = clock

    def set(self, addresses: Sequence[str]) -> tuple[list[str], list[str]]:
        """Poll ``addresses`` from now on; returns the ones that (joined, left). A joining one is read first."""
        wanted = list(dict.fromkeys(address.lower() for address in addresses))
        joined = [address for address in wanted if address not in self.addresses]
        left = [address for address in self.addresses if address not in wanted]
        self.addresses = wanted
        for address in left:
            self.last_read.pop(address, None)
            self._joined.pop(address, None)
        for address in joined:
            self._joined[address] = self._clock()
        return joined, left

    def due(self) -> list[str]:
        """The addresses due for a read, never read or read longest ago first."""
        now = self._clock()
        due = [a for a in self.addresses if a not in self.last_read or now - self.last_read[a] >= self.every]
        return sorted(due, key=lambda address: self.last_read.get(address, float("-inf")))

    def due_in(self) -> float | None:
        """Seconds until the next address is due (0 when one is), or None when nothing is polled."""
        if not self.addresses:
            return None
        if any(address not in self.last_read for address in self.addresses):
            return 0.0
        return max(0.0, min(self.last_read.values()) + self.every - self._clock())

    def read(self, address: str) -> None:
        if address in self.addresses:
            self.last_read[address] = self._clock()

    def oldest_read_age(self) -> float:
        """Seconds since the least recently read address was read (0 with none polled; since it joined for one
        never read): how late, at worst, a polled maker's liquidation reaches the stream."""
        if not self.addresses:
            return 0.0
        now = self._clock()
        return max(now - self.last_read.get(address, self._joined.get(address, now)) for address in self.addresses)
