"""Per-coin rate limit, so a liquidation cascade reads as a few alerts and a summary, not thousands of messages.

Each coin may send ``burst`` alerts in any ``window_s`` seconds (a sliding window). Alerts beyond that are held
back: counted and summed, not sent. Once a coin's oldest held-back alert is ``window_s`` old, :meth:`due`
returns one :class:`HeldBack` for the lot, which the alerter sends as a single summary line.

Pure: time is the ``now`` argument (seconds, any monotonic origin), so tests drive it with plain numbers.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from decimal import Decimal


@dataclass
class HeldBack:
    """What one coin's cooldown kept from being sent."""

    coin: str
    count: int
    value_usd: Decimal
    largest_usd: Decimal
    since: float
    """When the first of them was held back."""
    keys: list[str] = field(default_factory=list)
    """The event keys held back (when the caller named them): what a summary accounts for, and a redelivery of
    one of them is recognised by."""

    def seconds(self, now: float) -> float:
        return max(0.0, now - self.since)

    def add(self, value_usd: Decimal, at: float, key: str | None) -> None:
        self.count += 1
        self.value_usd += value_usd
        self.largest_usd = max(self.largest_usd, value_usd)
        self.since = min(self.since, at)
        if key is not None:
            self.keys.append(key)


class Cooldown:
    def __init__(self, window_s: float, burst: int = 1) -> None:
        if window_s <= 0 or burst < 1:
            raise ValueError(f"a cooldown needs a window above 0 s and a burst of at least 1, not {window_s}, {burst}")
        self.window_s = window_s
        self.burst = burst
        self._sent: dict[str, deque[float]] = {}
        self._held: dict[str, HeldBack] = {}
        self._held_keys: set[str] = set()

    def admit(self, coin: str, value_usd: Decimal, now: float, key: str | None = None) -> bool:
        """True: send this alert now (and count it against the coin). False: it was held back and counted."""
        sent = self._sent.get(coin)
        if sent is None:
            sent = self._sent[coin] = deque()
        while sent and sent[0] <= now - self.window_s:
            sent.popleft()
        if len(sent) < self.burst:
            sent.append(now)
            return True
        self.hold(coin, value_usd, now, key)
        return False

    def hold(self, coin: str, value_usd: Decimal, at: float, key: str | None = None) -> None:
        """Count an alert as held back since ``at`` without asking (restoring what a previous run held back)."""
        if key is not None:
            if key in self._held_keys:
                return
            self._held_keys.add(key)
        held = self._held.get(coin)
        if held is None:
            self._held[coin] = HeldBack(coin, 1, value_usd, value_usd, at, [key] if key is not None else [])
        else:
            held.add(value_usd, at, key)

    def holds(self, key: str) -> bool:
        """True if the event of ``key`` is held back now (its redelivery must not be sent, nor counted twice)."""
        return key in self._held_keys

    def restore(self, held: HeldBack) -> None:
        """Hold again what :meth:`due` returned but could not be summarised; it is due again at once."""
        self._held_keys.update(held.keys)
        mine = self._held.get(held.coin)
        if mine is None:
            self._held[held.coin] = held
            return
        mine.count += held.count
        mine.value_usd += held.value_usd
        mine.largest_usd = max(mine.largest_usd, held.largest_usd)
        mine.since = min(mine.since, held.since)
        mine.keys.extend(held.keys)

    def due(self, now: float) -> list[HeldBack]:
        """The coins whose held-back alerts have waited a whole window; they are forgotten once returned."""
        ready = [held for held in self._held.values() if now - held.since >= self.window_s]
        for held in ready:
            del self._held[held.coin]
            self._held_keys.difference_update(held.keys)
        self._forget_idle(now)
        return ready

    def drain(self) -> list[HeldBack]:
        """Everything held back, due or not (at shutdown)."""
        held = list(self._held.values())
        self._held.clear()
        self._held_keys.clear()
        return held

    def held_count(self) -> int:
        return sum(held.count for held in self._held.values())

    def _forget_idle(self, now: float) -> None:
        """Drop coins with no alert in the window, so memory follows the active coins, not every coin ever seen."""
        for coin in [c for c, sent in self._sent.items() if not sent or sent[-1] <= now - self.window_s]:
            del self._sent[coin]
