"""Running totals of liquidations, all-time and over rolling windows, in memory that stays bounded. No I/O.

Shared by the stats service and the producer's in-process tracker::

    totals = Totals()
    totals.add(event)                       # False if the event's key was seen recently (a redelivery)
    totals.statistics(now_ms)               # all-time totals, largest, and the 5 min / 1 h / 24 h windows
    totals.by_timeframe(300, now_ms)        # one rolling window

Money is :class:`~decimal.Decimal` inside and a decimal string in the output, which is JSON-ready as is.

Rolling windows are sums of time buckets keyed by the event's exchange timestamp: one-second buckets for the last
hour and one-minute buckets for the last 24 hours, so memory is bounded by the number of buckets (about 5,040)
times the coins active in each, however long the process runs and however many events arrive. A window counts the
buckets it overlaps, so a window of up to an hour may reach up to a second further back than asked, a longer one up
to a minute. Buckets more than 24 hours behind the newest event are dropped.

A liquidation published with partial figures (``complete: false``: a watchlist's makers' legs) may be followed on
the stream by its complete version (the same key): that one replaces it in every tally. Any other repeat of a key
is a redelivery and counts nothing.

Events that are not liquidations (auto-deleveraging, and any type added later) are counted apart, by type, under
``other``: they never enter the liquidation totals, and a new type needs no change here.
"""

from __future__ import annotations

import heapq
from collections import OrderedDict
from decimal import Decimal
from typing import Any

from consumers.errors import WindowTooLong
from plumbing.recent_keys import RecentKeys
from schemas import Event, LiquidationEvent, event_type

FINE_HORIZON_S = 3_600
"""One-second buckets cover this much time behind the newest event."""
HORIZON_S = 86_400
"""One-minute buckets cover this much; no window may be longer."""
WINDOWS: dict[str, int] = {"5m": 300, "1h": 3_600, "24h": 86_400}
"""The windows :meth:`Totals.statistics` reports."""
DEFAULT_RECENT_KEYS = 100_000
"""Keys remembered to drop a repeat delivery: far more than arrive between a delivery and its redelivery."""

_ZERO = Decimal(0)


class _Tally:
    __slots__ = ("count", "value")

    def __init__(self) -> None:
        self.count = 0
        self.value = _ZERO

    def add(self, value: Decimal, count: int = 1) -> None:
        self.count += count
        self.value += value

    def as_dict(self) -> dict[str, Any]:
        return {"count": self.count, "value_usd": str(self.value)}


class _Tallies:
    """The same tallies for all time and for each bucket, so windows are sums of buckets."""

    __slots__ = ("by_coin", "by_side", "largest", "other", "total")

    def __init__(self) -> None:
        self.total = _Tally()
        self.by_coin: dict[str, _Tally] = {}
        self.by_side: dict[str, _Tally] = {}
        self.other: dict[str, _Tally] = {}
        self.largest: LiquidationEvent | None = None

    def add_liquidation(self, event: LiquidationEvent) -> None:
        value = event.value_usd
        self.total.add(value)
        coin = self.by_coin.get(event.coin)
        if coin is None:
            coin = self.by_coin[event.coin] = _Tally()
        coin.add(value)
        side = self.by_side.get(event.liquidation_side)
        if side is None:
            side = self.by_side[event.liquidation_side] = _Tally()
        side.add(value)
        if self.largest is None or value > self.largest.value_usd:
            self.largest = event

    def remove_liquidation(self, event: LiquidationEvent) -> None:
        """Take back a counted event (a partial one its complete version replaces); the largest is forgotten if it
        was this one: the complete version, added next, is at least as large."""
        value = -event.value_usd
        self.total.add(value, -1)
        self.by_coin[event.coin].add(value, -1)
        self.by_side[event.liquidation_side].add(value, -1)
        if self.largest is not None and self.largest.key == event.key:
            self.largest = None

    def add_other(self, kind: str, value: Decimal) -> None:
        tally = self.other.get(kind)
        if tally is None:
            tally = self.other[kind] = _Tally()
        tally.add(value)

    def merge(self, other: _Tallies) -> None:
        self.total.add(other.total.value, other.total.count)
        for mine, theirs in ((self.by_coin, other.by_coin), (self.by_side, other.by_side), (self.other, other.other)):
            for name, tally in theirs.items():
                into = mine.get(name)
                if into is None:
                    into = mine[name] = _Tally()
                into.add(tally.value, tally.count)
        if other.largest is not None and (self.largest is None or other.largest.value_usd > self.largest.value_usd):
            self.largest = other.largest

    def as_dict(self) -> dict[str, Any]:
        return {
            "count": self.total.count,
            "value_usd": str(self.total.value),
            "by_coin": _ranked(self.by_coin),
            "by_side": {side: self.by_side[side].as_dict() for side in sorted(self.by_side)},
            "largest": None if self.largest is None else describe(self.largest),
            "other": _ranked(self.other),
        }


def _ranked(tallies: dict[str, _Tally]) -> dict[str, dict[str, Any]]:
    """Largest value first (then name), so the head of the mapping is what a reader looks for."""
    order = sorted(tallies.items(), key=lambda item: (-item[1].value, -item[1].count, item[0]))
    return {name: tally.as_dict() for name, tally in order}


def describe(event: LiquidationEvent) -> dict[str, Any]:
    """The fields of a liquidation a report shows, JSON-ready."""
    return {
        "coin": event.coin,
        "liquidation_side": event.liquidation_side,
        "value_usd": str(event.value_usd),
        "size": str(event.size),
        "price": str(event.price),
        "liquidated_user": event.liquidated_user,
        "tx_hash": event.tx_hash,
        "timestamp": event.timestamp,
        "key": event.key,
    }


class _Buckets:
    """Tallies per time slot of ``width_ms``, dropped once ``span`` slots behind the newest slot."""

    __slots__ = ("_heap", "buckets", "newest", "span", "width_ms")

    def __init__(self, width_ms: int, span: int) -> None:
        self.width_ms = width_ms
        self.span = span
        self.buckets: dict[int, _Tallies] = {}
        self._heap: list[int] = []
        self.newest: int | None = None

    def slot(self, timestamp_ms: int) -> _Tallies | None:
        """The bucket for this time, or None if it is already older than the span."""
        slot = timestamp_ms // self.width_ms
        if self.newest is None or slot > self.newest:
            self.newest = slot
            cutoff = slot - self.span
            while self._heap and self._heap[0] <= cutoff:
                del self.buckets[heapq.heappop(self._heap)]
        elif slot <= self.newest - self.span:
            return None
        bucket = self.buckets.get(slot)
        if bucket is None:
            bucket = self.buckets[slot] = _Tallies()
            heapq.heappush(self._heap, slot)
        return bucket

    def sum(self, since_ms: int, until_ms: int) -> _Tallies:
        """The buckets overlapping ``(since, until]``; a boundary bucket counts whole, hence the resolution."""
        first, last = (since_ms + 1) // self.width_ms, until_ms // self.width_ms
        acc = _Tallies()
        for slot, bucket in self.buckets.items():
            if first <= slot <= last:
                acc.merge(bucket)
        return acc


class Totals:
    """All-time and rolling totals of the events added; see the module docstring for what is kept and why.

    ``recent_keys`` is how many event keys are remembered to ignore a repeat of an event (a redelivery after a
    lost acknowledgement); 0 turns that off. The stream itself carries each event once, so this is a safety net
    with bounded memory, not the main deduplication.
    """

    def __init__(self, *, recent_keys: int = DEFAULT_RECENT_KEYS) -> None:
        self._all = _Tallies()
        # One bucket more than the horizon: a window's oldest bucket is usually only partly inside it.
        self._fine = _Buckets(1_000, FINE_HORIZON_S + 1)
        self._coarse = _Buckets(60_000, HORIZON_S // 60 + 1)
        self._recent = RecentKeys(recent_keys)
        self._partial: OrderedDict[str, LiquidationEvent] = OrderedDict()
        """Recent partial liquidations counted, by key: a complete version replaces one."""
        self._partial_cap = recent_keys
        self.duplicates = 0
        """Events ignored because their key was seen recently."""
        self.superseded = 0
        """Partial liquidations replaced by their complete version."""
        self.first_timestamp: int | None = None
        self.last_timestamp: int | None = None

    @property
    def count(self) -> int:
        """Liquidations counted (other event types are not)."""
        return self._all.total.count

    @property
    def value_usd(self) -> Decimal:
        return self._all.total.value

    def add(self, event: Event) -> bool:
        """Count one event; False (and nothing counted) if its key was among the recent ones."""
        key: str | None = getattr(event, "key", None)
        if key is not None and not self._recent.add(key):
            prior = self._partial.get(key)
            if prior is None or not isinstance(event, LiquidationEvent) or not event.complete:
                self.duplicates += 1
                return False
            # The stream's contract: a complete event after a partial one of the same key replaces it.
            del self._partial[key]
            for tallies in self._targets(prior.timestamp):
                tallies.remove_liquidation(prior)
            self.superseded += 1
        elif key is not None and isinstance(event, LiquidationEvent) and not event.complete and self._partial_cap:
            self._partial[key] = event
            while len(self._partial) > self._partial_cap:
                self._partial.popitem(last=False)
        timestamp: int = getattr(event, "timestamp", 0)
        if self.first_timestamp is None or timestamp < self.first_timestamp:
            self.first_timestamp = timestamp
        if self.last_timestamp is None or timestamp > self.last_timestamp:
            self.last_timestamp = timestamp
        targets = self._targets(timestamp)
        if isinstance(event, LiquidationEvent):
            for tallies in targets:
                tallies.add_liquidation(event)
        else:
            kind = event_type(event)
            value = getattr(event, "value_usd", None)
            amount = value if isinstance(value, Decimal) else _ZERO
            for tallies in targets:
                tallies.add_other(kind, amount)
        return True

    def _targets(self, timestamp: int) -> list[_Tallies]:
        """The tallies an event of this time counts in: all time, and its buckets still held."""
        targets = [self._all]
        for buckets in (self._fine, self._coarse):
            bucket = buckets.slot(timestamp)
            if bucket is not None:
                targets.append(bucket)
        return targets

    def by_timeframe(self, seconds: float, now_ms: int) -> dict[str, Any]:
        """Totals of the events whose exchange time lies in the last ``seconds`` before ``now_ms``.

        Resolution: one second up to an hour, one minute beyond (the oldest bucket counts whole). Raises
        :class:`WindowTooLong` past 24 hours.
        """
        if seconds <= 0:
            raise ValueError(f"a window must be longer than 0 s, not {seconds:g} s")
        if seconds > HORIZON_S:
            raise WindowTooLong(seconds, HORIZON_S)
        since_ms = now_ms - int(seconds * 1000)
        buckets = self._fine if seconds <= FINE_HORIZON_S else self._coarse
        result: dict[str, Any] = {"seconds": seconds, "since_ms": since_ms, "until_ms": now_ms}
        result.update(buckets.sum(since_ms, now_ms).as_dict())
        return result

    def statistics(self, now_ms: int | None = None) -> dict[str, Any]:
        """All-time totals, the largest liquidation, other event types, and the :data:`WINDOWS`.

        Windows end at ``now_ms`` (the caller's clock; this class has none) or, if not given, at the newest event.
        """
        result = self._all.as_dict()
        result["duplicates_ignored"] = self.duplicates
        result["first_timestamp"] = self.first_timestamp
        result["last_timestamp"] = self.last_timestamp
        end = now_ms if now_ms is not None else self.last_timestamp
        result["windows"] = (
            {} if end is None else {name: self.by_timeframe(seconds, end) for name, seconds in WINDOWS.items()}
        )
        return result

    def bucket_count(self) -> int:
        """Time buckets held now: what bounds memory (at most 5,042)."""
        return len(self._fine.buckets) + len(self._coarse.buckets)
