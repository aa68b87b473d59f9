"""Per-coin rate limit, so a liquidation cascade reads as a few alerts and a summary, not thousands of messages.

Each coin may send ``burst`` alerts in any ``window_s`` seconds (a sliding window). Alerts beyond that are held
back: counted and summed, not sent. Once a coin's oldest held-back alert is ``window_s`` old, :meth:`due`
returns one :class:`HeldBack` for the lot, which the alerter sends as a single summary line.

Pure: time is the ``now`` argument (seconds, any monotonic origin), so tests drive it with plain numbers.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
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

    def seconds(self, now: float) -> float:
        return max(0.0, now - self.since)


class Cooldown:
    def __init__(self, window_s: float, burst: int = 1) -> None:
        if window_s <= 0 or burst < 1:
            raise ValueError(f"a cooldown needs a window above 0 s and a burst of at least 1, not {window_s}, {burst}")
        self.window_s = window_s
        self.burst = burst
        self._sent: dict[str, deque[float]] = {}
        self._held: dict[str, HeldBack] = {}

    def admit(self, coin: str, value_usd: Decimal, now: float) -> bool:
        """True: send this alert now (and count it against the coin). False: it was held back and counted."""
        sent = self._sent.get(coin)
        if sent is None:
            sent = self._sent[coin] = deque()
        while sent and sent[0] <= now - self.window_s:
            sent.popleft()
        if len(sent) < self.burst:
            sent.append(now)
            return True
        held = self._held.get(coin)
        if held is None:
            self._held[coin] = HeldBack(coin, 1, value_usd, value_usd, now)
        else:
            held.count += 1
            held.value_usd += value_usd
            held.largest_usd = max(held.largest_usd, value_usd)
        return False

    def due(self, now: float) -> list[HeldBack]:
        """The coins whose held-back alerts have waited a whole window; they are forgotten once returned."""
        ready = [held for held in self._held.values() if now - held.since >= self.window_s]
        for held in ready:
            del self._held[held.coin]
        self._forget_idle(now)
        return ready

    def drain(self) -> list[HeldBack]:
        """Everything held back, due or not (at shutdown)."""
        held = list(self._held.values())
        self._held.clear()
        return held

    def held_count(self) -> int:
        return sum(held.count for held in self._held.values())

    def _forget_idle(self, now: float) -> None:
        """Drop coins with no alert in the window, so memory follows the active coins, not every coin ever seen."""
        for coin in [c for c, sent in self._sent.items() if not sent or sent[-1] <= now - self.window_s]:
            del self._sent[coin]
