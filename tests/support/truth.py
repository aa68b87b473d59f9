"""The truth a test compares the producer's output with, derived from a scenario's own fills.

A scenario (:mod:`producer.simulation.scenarios`) carries every liquidation it built; what a source can see of it
depends on what it reads: a node sees everything, a watchlist only the trades of its addresses.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import replace
from decimal import Decimal
from typing import Any

from producer.simulation.scenarios import ADL_DIR, ExpectedLiquidation, Scenario, ScenarioBuilder
from schemas import AdlEvent, Event, LiquidationEvent, Source


def cascade(n_liquidations: int, *, seed: int = 7, start_ms: int = 1_760_130_900_000) -> Scenario:
    """A liquidation cascade: many users liquidated into a few makers, backstops, ADL and ordinary flow."""
    builder = ScenarioBuilder(seed=seed, start_ms=start_ms)
    makers = [builder.address() for _ in range(12)]
    coins = ("BTC", "ETH", "SOL", "AVAX", "HYPE", "xyz:CRWV")
    for i in range(n_liquidations):
        coin = coins[i % len(coins)]
        if i % 25 == 0:
            builder.backstop_liquidation(coin=coin, side=("long", "short")[i % 2])
        else:
            builder.market_liquidation(coin=coin, side=("long", "short")[i % 2], makers=makers[i % 9 : i % 9 + 3])
        if i % 10 == 0:
            builder.adl(coin=coin, user=makers[i % 12], size="1.5", px="100.5")
        if i % 5 == 0:
            builder.ordinary_fills(makers[i % 12], 3, coin=coin)
    return builder.build()


def visible_from(scenario: Scenario, watchlist: Iterable[str]) -> list[ExpectedLiquidation]:
    """The truth as seen by a consumer that only polls ``watchlist``.

    A liquidation is visible when at least one of its legs (the liquidated user's own fill or a
    counterparty's fill) is on a watched address; its size/value/tids are then restricted to the trades
    seen through watched addresses. Derived from the fills themselves, so it also cross-checks the builder.
    """
    watched = {address.lower() for address in watchlist}
    truth = scenario.by_key()
    seen: dict[tuple[str, str, str], dict[int, tuple[Decimal, Decimal]]] = {}
    for address in watched:
        for fill in scenario.fills.get(address, ()):
            liq = fill.get("liquidation")
            if liq is None or fill["dir"] == ADL_DIR:
                continue
            key = (fill["hash"], fill["coin"], liq["liquidatedUser"])
            if key in truth:
                seen.setdefault(key, {})[fill["tid"]] = (Decimal(fill["px"]), Decimal(fill["sz"]))
    visible: list[ExpectedLiquidation] = []
    for liq in scenario.liquidations:
        trades = seen.get(liq.key)
        if not trades:
            continue
        visible.append(
            replace(
                liq,
                size=sum((sz for _, sz in trades.values()), Decimal(0)),
                value_usd=sum((px * sz for px, sz in trades.values()), Decimal(0)),
                tids=frozenset(trades),
            )
        )
    return visible


def adl_truth(scenario: Scenario, watchlist: Iterable[str] | None = None) -> set[tuple[str, str, str]]:
    """(hash, coin, deleveraged user) of the ADL fills on watched addresses, or of every ADL fill (what a node
    sees) without a watchlist."""
    addresses = scenario.fills if watchlist is None else {address.lower() for address in watchlist}
    return {
        (fill["hash"], fill["coin"], address)
        for address in addresses
        for fill in scenario.fills.get(address, ())
        if fill["dir"] == ADL_DIR
    }


def assert_matches_truth(
    all_events: list[Event], truth: list[ExpectedLiquidation], adl: set[tuple[str, str, str]] | None = None
) -> None:
    """Every expected liquidation exactly once, none invented, right sides and exact amounts (and ADL apart)."""
    events = [e for e in all_events if isinstance(e, LiquidationEvent)]
    if adl is not None:
        adl_keys = [(e.tx_hash, e.coin, e.deleveraged_user) for e in all_events if isinstance(e, AdlEvent)]
        assert len(adl_keys) == len(set(adl_keys)) and set(adl_keys) == adl
    keys = [(e.tx_hash, e.coin, e.liquidated_user) for e in events]
    assert len(keys) == len(set(keys)), "a liquidation was published twice"
    by_key = {(e.tx_hash, e.coin, e.liquidated_user): e for e in events}
    expected = {t.key: t for t in truth}
    assert set(by_key) == set(expected)
    for key, t in expected.items():
        e = by_key[key]
        assert (e.liquidation_side, e.method, e.size, e.value_usd, set(e.tids), e.timestamp) == (
            t.side,
            t.method,
            t.size,
            t.value_usd,
            set(t.tids),
            t.timestamp,
        ), key
        assert e.mark_price == Decimal(t.mark_price)


def assert_node_truth(events: list[Event], scenario: Scenario, source: Source = "node") -> None:
    """The node sees every liquidation, complete (own legs: every trade), once; and every ADL fill. So does a
    hosted provider's venue-wide feed (``source="hosted"``)."""
    liquidations = [e for e in events if isinstance(e, LiquidationEvent)]
    keys = [(e.tx_hash, e.coin, e.liquidated_user) for e in liquidations]
    assert len(keys) == len(set(keys))
    truth = {t.key: t for t in scenario.liquidations}
    assert set(keys) == set(truth)
    for event in liquidations:
        t = truth[(event.tx_hash, event.coin, event.liquidated_user)]
        assert (event.liquidation_side, event.method, event.size, event.value_usd) == (
            t.side,
            t.method,
            t.size,
            t.value_usd,
        )
        assert set(event.tids) == t.tids and event.observed_via == (source,) and event.source == source
        assert event.mark_price == Decimal(t.mark_price)
    adl = [(e.tx_hash, e.coin, e.deleveraged_user) for e in events if isinstance(e, AdlEvent)]
    assert len(adl) == len(set(adl)) and set(adl) == adl_truth(scenario)


def derive(fills_by_address: Mapping[str, Iterable[dict[str, Any]]]) -> dict[tuple[str, str, str], dict[str, Any]]:
    """Reference consumer, from the documented rules only: liquidation events keyed (hash, coin, liquidated user)."""
    events: dict[tuple[str, str, str], dict[str, Any]] = {}
    for address, fills in fills_by_address.items():
        for fill in fills:
            liq = fill.get("liquidation")
            if liq is None or fill["dir"] == ADL_DIR:
                continue
            own = address == liq["liquidatedUser"]
            is_long = (fill["side"] == "A") if own else (fill["side"] == "B")
            event = events.setdefault(
                (fill["hash"], fill["coin"], liq["liquidatedUser"]),
                {"side": set(), "method": set(), "time": set(), "trades": {}},
            )
            event["side"].add("long" if is_long else "short")
            event["method"].add(liq["method"])
            event["time"].add(fill["time"])
            event["trades"][fill["tid"]] = (Decimal(fill["px"]), Decimal(fill["sz"]))
    return events


def assert_derived_matches_truth(
    derived: dict[tuple[str, str, str], dict[str, Any]], truth: list[ExpectedLiquidation]
) -> None:
    """What :func:`derive` found is the truth: same keys, sides, methods, times, trades and exact sums."""
    assert set(derived) == {liq.key for liq in truth}
    for liq in truth:
        event = derived[liq.key]
        assert event["side"] == {liq.side}, liq.key
        assert event["method"] == {liq.method}, liq.key
        assert event["time"] == {liq.timestamp}, liq.key
        assert set(event["trades"]) == liq.tids, liq.key
        assert sum((sz for _, sz in event["trades"].values()), Decimal(0)) == liq.size
        assert sum((px * sz for px, sz in event["trades"].values()), Decimal(0)) == liq.value_usd
