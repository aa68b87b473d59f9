"""Liquidations the fake exchange shows bit by bit, and the ground truth of what it has shown so far.

A fault only means something if it lands while work is under way, so a scenario does not load everything at once:
it builds a deterministic data set (:class:`~producer.simulation.scenarios.ScenarioBuilder`) and releases it in
exchange-time order, a chunk of events at a time, as a live exchange would show it. Releasing in time order
matters: the producer reads each address from its watermark on, and a real exchange never shows a fill older
than the ones it already showed.

The truth is what the producer must publish for the watchlist: every visible liquidation (summed over the
watched legs, :func:`tests.support.truth.visible_from`) and every ADL fill of a watched address, keyed like the stream's
``key`` field.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import Any

from producer.simulation.fake_exchange import FakeHyperliquid
from producer.simulation.scenarios import (
    ADL_DIR,
    DEMO_MAKERS,
    HLP_LIQUIDATOR,
    LIQUIDATOR_2,
    ExpectedLiquidation,
    Scenario,
    ScenarioBuilder,
)
from schemas import event_key
from tests.support.truth import visible_from

BUSY = "0x5a1e5a1e5a1e5a1e5a1e5a1e5a1e5a1e5a1e5a1e"
"""A watched address with more than one page (2,000) of ordinary fills: the first poll must page."""
COINS = ("BTC", "ETH", "SOL", "AVAX", "HYPE", "xyz:CRWV")
HOSTILE_COINS = ("BTC\n2026-01-01 00:00:00 ERROR forged log line\x1b[31m\x00\u202e", "W" * 10_000)
"""Coin names the exchange could send: control characters (a newline forging a log line, an ANSI escape, NUL,
a right-to-left override) and a 10,000-character name."""


@dataclass(frozen=True)
class Expected:
    """One event the stream must carry exactly once."""

    key: str
    kind: str
    """``liquidation`` or ``adl``."""
    timestamp: int
    truth: ExpectedLiquidation | None = None
    """For a liquidation: side, method and the exact sums over the watched legs."""

    @property
    def value_usd(self) -> Decimal:
        return self.truth.value_usd if self.truth is not None else Decimal(0)


@dataclass
class Feed:
    """A built data set, released to the fake exchange in exchange-time order.

    ``shared`` lets one liquidation be absorbed by two watched makers (both legs seen, summed once);
    ``hostile`` adds liquidations with hostile coin names (part of the truth: the exchange shows them) and
    ordinary and malformed fills with hostile strings (part of nothing).
    """

    seed: int = 1
    events: int = 60
    shared: bool = True
    hostile: bool = False
    busy: bool = True
    start_ms: int = 1_760_130_964_831
    span_s: float | None = None
    """If set, exchange times are compressed so the whole data set spans this many seconds from ``start_ms``:
    released by the wall clock, it then plays like a live exchange (the soak)."""
    makers: tuple[str, ...] = DEMO_MAKERS
    vaults: tuple[str, ...] = (HLP_LIQUIDATOR, LIQUIDATOR_2)
    scenario: Scenario = field(init=False)
    expected: dict[str, Expected] = field(init=False)
    """Every event of the data set the stream must end up with, by key."""
    _fills: list[tuple[int, int, str, dict[str, Any]]] = field(init=False)
    _released: int = field(init=False, default=0)
    _released_until: int = field(init=False, default=-1)

    def __post_init__(self) -> None:
        self.scenario = self._build()
        self.expected = self._truth()
        self._fills = sorted(
            (fill["time"], fill["tid"], address, fill)
            for address, fills in self.scenario.fills.items()
            for fill in fills
        )

    @property
    def watchlist(self) -> tuple[str, ...]:
        return (*self.makers, *self.vaults, *((BUSY,) if self.busy else ()))

    # --- building --------------------------------------------------------------------------------------------

    def _build(self) -> Scenario:
        b = ScenarioBuilder(self.seed, start_ms=self.start_ms)
        b.record_public_trades = False
        rng = b.rng
        if self.busy:
            b.ordinary_fills(BUSY, 2_300, coin="BTC")
        hostile = list(HOSTILE_COINS) if self.hostile else []
        visible = 0
        while visible < self.events:
            roll = rng.random()
            coin = rng.choice(COINS)
            side = rng.choice(("long", "short"))
            if hostile and roll < 0.3:
                b.market_liquidation(coin=hostile.pop(), side=side, makers=[rng.choice(self.makers)])
                b.ordinary_fills(rng.choice(self.makers), 2, coin=HOSTILE_COINS[0])
                visible += 1
            elif roll < 0.45:
                watched = rng.sample(self.makers, 2 if self.shared and rng.random() < 0.4 else 1)
                b.market_liquidation(coin=coin, side=side, makers=[*watched, *([b.address()] * rng.randint(0, 1))])
                visible += 1
            elif roll < 0.55 and self.shared:
                tx, user = b.new_hash(), b.address()
                b.market_liquidation(coin=coin, side=side, user=user, makers=[rng.choice(self.makers)], tx_hash=tx)
                b.market_liquidation(
                    coin=rng.choice([c for c in COINS if c != coin]),
                    side=side,
                    user=user,
                    makers=[rng.choice(self.makers), b.address()],
                    tx_hash=tx,
                )
                visible += 2
            elif roll < 0.7:
                b.backstop_liquidation(coin=coin, side=side, vault=rng.choice(self.vaults))
                visible += 1
            elif roll < 0.78:
                px = b._price(coin)  # the builder's own price band for the coin
                b.adl(coin=coin, user=rng.choice(self.makers), size="1.5", px=str(px), side=rng.choice("AB"))
                visible += 1
            elif roll < 0.86:
                b.market_liquidation(coin=coin, side=side, makers=[b.address()])  # seen by no watched address
            else:
                b.ordinary_fills(rng.choice(self.makers), rng.randint(1, 4), coin=coin)
        scenario = b.build()
        if self.span_s is not None:
            _compress(scenario, self.start_ms, self.span_s)
        if self.hostile:
            _add_malformed_fills(scenario, rng, self.makers)
        return scenario

    def _truth(self) -> dict[str, Expected]:
        expected: dict[str, Expected] = {}
        for liq in visible_from(self.scenario, self.watchlist):
            key = event_key(liq.tx_hash, liq.coin, liq.liquidated_user, liq.timestamp)
            expected[key] = Expected(key, "liquidation", liq.timestamp, liq)
        for address in self.watchlist:
            for fill in self.scenario.fills.get(address, ()):
                if fill["dir"] == ADL_DIR and isinstance(fill.get("liquidation"), dict):
                    key = "adl|" + event_key(fill["hash"], fill["coin"], address, fill["time"])
                    expected[key] = Expected(key, "adl", fill["time"])
        return expected

    # --- releasing -------------------------------------------------------------------------------------------

    def event_times(self) -> list[int]:
        return sorted({e.timestamp for e in self.expected.values()})

    def release(self, fake: FakeHyperliquid, events: int | None = None) -> int:
        """Show the next ``events`` expected events (all that is left if None), with every fill up to the last
        one's time; returns how many fills were added."""
        times = [t for t in self.event_times() if t > self._released_until]
        if not times:
            return 0
        until = times[-1] if events is None or events >= len(times) else times[events - 1]
        return self.release_until(fake, until)

    def release_fraction(self, fake: FakeHyperliquid, fraction: float) -> int:
        """Show everything up to ``fraction`` (0..1) of the expected events, counted from the start."""
        times = self.event_times()
        index = max(0, min(len(times), round(len(times) * fraction)) - 1)
        return self.release_until(fake, times[index]) if times else 0

    def release_until(self, fake: FakeHyperliquid, until_ms: int) -> int:
        batch: dict[str, list[dict[str, Any]]] = {}
        start = self._released
        while self._released < len(self._fills) and self._fills[self._released][0] <= until_ms:
            _, _, address, fill = self._fills[self._released]
            batch.setdefault(address, []).append(fill)
            self._released += 1
        for address, fills in batch.items():
            fake.add_fills(address, fills)
        self._released_until = max(self._released_until, until_ms)
        return self._released - start

    @property
    def done(self) -> bool:
        return self._released >= len(self._fills)

    def shown(self) -> dict[str, Expected]:
        """The expected events the exchange has shown so far."""
        return {k: e for k, e in self.expected.items() if e.timestamp <= self._released_until}

    def liquidations(self, among: dict[str, Expected] | None = None) -> list[Expected]:
        return [e for e in (among or self.expected).values() if e.kind == "liquidation"]


def _compress(scenario: Scenario, start_ms: int, span_s: float) -> None:
    """Map every time ``t`` to ``start + (t - start) * span / last``: order and shared block times are kept."""
    last = max((f["time"] for fills in scenario.fills.values() for f in fills), default=start_ms)
    scale = (span_s * 1000) / max(1, last - start_ms)

    def squeeze(t: int) -> int:
        return start_ms + int((t - start_ms) * scale)

    for fills in scenario.fills.values():
        for fill in fills:
            fill["time"] = squeeze(fill["time"])
    scenario.liquidations = [replace(liq, timestamp=squeeze(liq.timestamp)) for liq in scenario.liquidations]


def _add_malformed_fills(scenario: Scenario, rng: random.Random, makers: Sequence[str]) -> None:
    """Fills with a liquidation object of the wrong shape, and fills with hostile unknown fields.

    The first kind is malformed: it must be skipped and counted, never published. The second is a good fill (no
    liquidation) whose extra fields hold hostile values: the decoder must ignore them.
    """
    for maker in makers:
        fills = scenario.fills.get(maker)
        if not fills:
            continue
        template = dict(fills[len(fills) // 2])
        template.pop("liquidation", None)
        broken = {
            **template,
            "tid": rng.randint(2 * 10**15, 3 * 10**15),
            "hash": "0x" + "ab" * 32,
            "liquidation": {"liquidatedUser": 12345, "markPx": {"px": "1"}, "method": None},
        }
        noisy = {
            **template,
            "tid": rng.randint(3 * 10**15, 4 * 10**15),
            "hash": "0x" + "cd" * 32,
            "someNewField": {"nested": ["\x00\x1b[2J", "\u202e" * 100, "x" * 50_000]},
            "dir": "Open Long\r\nINFO forged",
        }
        fills.extend([broken, noisy])
        fills.sort(key=lambda f: (f["time"], f["tid"]))
