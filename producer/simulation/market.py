"""A simulated market with many makers, for measuring what a watchlist of makers sees of the liquidations.

Why: a producer without a node sees a market liquidation only through the fills of the makers it watches, and
estimates that share from the public trades (:mod:`producer.coverage`). Whether the estimate tracks reality can only
be checked against a market whose truth is known: who made every trade, who absorbed every liquidation leg.

The model, deliberately simple and all from one ``random.Random(seed)`` (same spec, same market, byte for byte):

- **Makers** with heavy-tailed sizes: each draws a Pareto weight (``pareto_alpha``; the smaller, the more the top
  makers dominate). The biggest tenth quote every coin; the others each coin with probability one half, and every
  maker's weight in a coin is its weight times a factor in [0.5, 1.5], so coins differ in who makes them.
- **Trades**: a taker (from a pool of addresses that never make) against a maker drawn in proportion to its weight
  in the trade's coin; public trades exactly as the exchange's ``trades`` feed sends them, and each maker's own fill.
- **Market liquidations**: one to ``max_legs`` legs, each absorbed by a maker drawn by the same rule as a trade's
  maker (with replacement: a big maker can rest at several levels). So a maker's share of liquidation legs, by
  count and by USD, is in expectation its share of maker volume, which is what the coverage estimate relies on.
- **Backstop liquidations** on the liquidator vaults, the HLP liquidator most of them.

Fills, public trades and the truth of each liquidation come from
:class:`~producer.simulation.scenarios.ScenarioBuilder`, so they have the shapes the rest of the simulation (and
the detector's tests) rely on; :attr:`Market.liquidations` adds which maker absorbed each leg.
"""

from __future__ import annotations

import bisect
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from itertools import accumulate
from typing import Literal

from producer.simulation.scenarios import (
    HLP_LIQUIDATOR,
    LIQUIDATOR_VAULTS,
    ExpectedLiquidation,
    Scenario,
    ScenarioBuilder,
    Trade,
    coin_spec,
)

__all__ = ["DEFAULT_COINS", "Absorbed", "Leg", "Market", "MarketLiquidation", "MarketSpec", "build_market"]

DEFAULT_COINS: tuple[tuple[str, int], ...] = (
    ("BTC", 35),
    ("ETH", 25),
    ("SOL", 15),
    ("HYPE", 12),
    ("AVAX", 8),
    ("xyz:CRWV", 5),
)
"""(coin, relative activity): how often a trade or a liquidation is in that coin."""

_LEG_WEIGHTS = (50, 25, 13, 7, 5)
"""Relative frequency of 1, 2, 3, ... legs per market liquidation (most are filled by one or two makers)."""
_LEG_SIZE_DIVISOR = 8
"""A leg is up to an eighth of the coin's largest random size: on average 2.5 times an ordinary trade (up to a
twentieth), so liquidations make about a fifth of the maker volume, a cascade's share. Bigger legs would make the
coverage estimate, which counts the legs' own trades, agree with the truth for the wrong reason."""
_VAULT_WEIGHTS = {HLP_LIQUIDATOR: 80}
"""The HLP liquidator takes most backstops; the other vaults share the rest (weight 5 each)."""
_ALL_COINS_TOP = 0.1
"""The biggest tenth of makers quote every coin."""

LiquidationMethod = Literal["market", "backstop"]


@dataclass(frozen=True)
class MarketSpec:
    """What to simulate. The defaults build in well under a second and give stable shares (a few points)."""

    seed: int = 1
    makers: int = 500
    takers: int = 2_000
    trades: int = 20_000
    liquidations: int = 1_000
    """Market liquidations; each has one to ``len(_LEG_WEIGHTS)`` legs. The default makes about 9% of the makers'
    fills liquidation legs, a cascade's density (mainnet's usual is nearer 4%): enough legs (~1,900) that shares
    of them are stable to about a point, in a market that builds in about a second."""
    backstops: int = 40
    pareto_alpha: float = 1.1
    start_ms: int = 1_760_130_000_000
    duration_ms: int = 3_600_000
    coins: tuple[tuple[str, int], ...] = DEFAULT_COINS
    zero_hash_ratio: float = 0.28
    """Share of ordinary trades with the all-zero hash, as on mainnet."""


@dataclass(frozen=True)
class Leg:
    """One trade of a liquidation: its counterparty (a maker, or a liquidator vault for a backstop) and amounts."""

    tid: int
    counterparty: str
    px: Decimal
    sz: Decimal

    @property
    def value_usd(self) -> Decimal:
        return self.px * self.sz


@dataclass(frozen=True)
class MarketLiquidation:
    """The truth of one liquidation (exact size and value) and the legs it is made of, by tid."""

    truth: ExpectedLiquidation
    legs: tuple[Leg, ...]


@dataclass(frozen=True)
class Absorbed:
    """How much of the liquidations a set of counterparties took: legs, USD, and liquidations touched at all."""

    legs: int
    watched_legs: int
    usd: Decimal
    watched_usd: Decimal
    liquidations: int
    touched: int
    """Liquidations at least one of whose legs a watched address took: what a watchlist producer publishes."""

    @property
    def leg_share(self) -> float:
        return self.watched_legs / self.legs if self.legs else 0.0

    @property
    def usd_share(self) -> float:
        return float(self.watched_usd / self.usd) if self.usd else 0.0

    @property
    def touched_share(self) -> float:
        return self.touched / self.liquidations if self.liquidations else 0.0


@dataclass
class Market:
    """A built market: what the exchange serves (:attr:`scenario`) and the truth behind it."""

    spec: MarketSpec
    scenario: Scenario
    makers: tuple[str, ...]
    """Every maker, biggest weight first."""
    weights: dict[str, dict[str, float]]
    """coin -> maker -> weight: a maker's chance to make a trade (or take a leg) of the coin is its weight's share."""
    liquidations: list[MarketLiquidation] = field(default_factory=list)

    def trades(self) -> list[Trade]:
        """Every public trade of every coin, oldest first (by time, then tid), as the ``trades`` feed sends them."""
        every = (trade for trades in self.scenario.trades.values() for trade in trades)
        return sorted(every, key=_time_tid)

    def trades_by_coin(self) -> dict[str, list[Trade]]:
        """Each coin's public trades, oldest first."""
        return {coin: sorted(trades, key=_time_tid) for coin, trades in self.scenario.trades.items()}

    def true_share(self, watched: Iterable[str], coin: str) -> float:
        """The share of ``coin``'s maker flow ``watched`` gets by construction (its weight over the coin's)."""
        addresses = {address.lower() for address in watched}
        weights = self.weights.get(coin, {})
        total = sum(weights.values())
        return sum(w for maker, w in weights.items() if maker in addresses) / total if total else 0.0

    def absorbed(
        self, watched: Iterable[str], method: LiquidationMethod = "market", coin: str | None = None
    ) -> Absorbed:
        """What ``watched`` took of the ``method`` liquidations (of one coin, or all): legs and USD, exact, and
        liquidations touched."""
        addresses = {address.lower() for address in watched}
        legs = watched_legs = liquidations = touched = 0
        usd = watched_usd = Decimal(0)
        for liquidation in self.liquidations:
            if liquidation.truth.method != method or coin not in (None, liquidation.truth.coin):
                continue
            liquidations += 1
            hit = False
            for leg in liquidation.legs:
                legs += 1
                usd += leg.value_usd
                if leg.counterparty in addresses:
                    hit = True
                    watched_legs += 1
                    watched_usd += leg.value_usd
            touched += hit
        return Absorbed(legs, watched_legs, usd, watched_usd, liquidations, touched)


def _time_tid(trade: Trade) -> tuple[int, int]:
    return (trade["time"], trade["tid"])


class _Picker:
    """Draws one item in proportion to its weight (cumulative weights and a bisection: fast for thousands)."""

    def __init__(self, items: Sequence[str], weights: Sequence[float]) -> None:
        self.items = list(items)
        self.cumulative = list(accumulate(weights))

    def pick(self, rng: random.Random) -> str:
        return self.items[bisect.bisect_right(self.cumulative, rng.random() * self.cumulative[-1])]


def _maker_weights(spec: MarketSpec, builder: ScenarioBuilder) -> tuple[tuple[str, ...], dict[str, dict[str, float]]]:
    rng = builder.rng
    sizes = sorted((rng.paretovariate(spec.pareto_alpha) for _ in range(spec.makers)), reverse=True)
    makers = tuple(builder.address() for _ in sizes)
    coins = [coin for coin, _ in spec.coins]
    weights: dict[str, dict[str, float]] = {coin: {} for coin in coins}
    all_coins = max(1, round(spec.makers * _ALL_COINS_TOP))
    for rank, (maker, size) in enumerate(zip(makers, sizes, strict=True)):
        quoted = coins if rank < all_coins else [coin for coin in coins if rng.random() < 0.5] or [rng.choice(coins)]
        for coin in quoted:
            weights[coin][maker] = size * rng.uniform(0.5, 1.5)
    return makers, weights


def build_market(spec: MarketSpec | None = None) -> Market:
    """Simulate ``spec`` (the defaults without one): a deterministic market and its truth."""
    spec = spec or MarketSpec()
    if min(spec.makers, spec.takers) < 1 or min(spec.trades, spec.liquidations, spec.backstops) < 0:
        raise ValueError(f"a market needs makers and takers, and no negative counts: {spec}")
    builder = ScenarioBuilder(seed=spec.seed, start_ms=spec.start_ms)
    builder.record_public_trades = True  # a liquidation's trades are public trades too, as on the exchange
    rng = builder.rng
    makers, weights = _maker_weights(spec, builder)
    takers = [builder.address() for _ in range(spec.takers)]
    coin_picker = _Picker([coin for coin, _ in spec.coins], [w for _, w in spec.coins])
    maker_pickers = {coin: _Picker(list(ws), list(ws.values())) for coin, ws in weights.items() if ws}
    vaults = _Picker(LIQUIDATOR_VAULTS, [_VAULT_WEIGHTS.get(vault, 5) for vault in LIQUIDATOR_VAULTS])

    kinds = ["trade"] * spec.trades + ["market"] * spec.liquidations + ["backstop"] * spec.backstops
    rng.shuffle(kinds)
    step = spec.duration_ms / max(1, len(kinds))
    for index, kind in enumerate(kinds):
        when = spec.start_ms + int(index * step)
        coin = coin_picker.pick(rng)
        if kind == "trade":
            builder.book_trade(
                coin,
                maker=maker_pickers[coin].pick(rng),
                taker=rng.choice(takers),
                taker_side=rng.choice(("A", "B")),
                time_ms=when,
                zero_hash=rng.random() < spec.zero_hash_ratio,
            )
        elif kind == "market":
            legs = rng.choices(range(1, len(_LEG_WEIGHTS) + 1), weights=_LEG_WEIGHTS)[0]
            builder.market_liquidation(
                coin=coin,
                side=rng.choice(("long", "short")),
                makers=[maker_pickers[coin].pick(rng) for _ in range(legs)],
                time_ms=when,
                max_lots=max(1, coin_spec(coin).max_lots // _LEG_SIZE_DIVISOR),
            )
        else:
            builder.backstop_liquidation(
                coin=coin, side=rng.choice(("long", "short")), vault=vaults.pick(rng), time_ms=when
            )
    scenario = builder.build()
    return Market(
        spec=spec,
        scenario=scenario,
        makers=makers,
        weights=weights,
        liquidations=_with_legs(scenario),
    )


def _with_legs(scenario: Scenario) -> list[MarketLiquidation]:
    """Each liquidation with its legs, read back from the fills: the leg of a tid not on the liquidated user."""
    counterparty: dict[int, tuple[str, Decimal, Decimal]] = {}
    for address, fills in scenario.fills.items():
        for fill in fills:
            liquidation = fill.get("liquidation")
            if liquidation is not None and liquidation["liquidatedUser"] != address:
                counterparty[fill["tid"]] = (address, Decimal(fill["px"]), Decimal(fill["sz"]))
    made = []
    for truth in scenario.liquidations:
        legs = tuple(Leg(tid, *counterparty[tid]) for tid in sorted(truth.tids))
        made.append(MarketLiquidation(truth, legs))
    return made
