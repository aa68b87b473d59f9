"""The original tracker's library API on the new machinery, against the fake exchange: no Redis involved."""

from __future__ import annotations

import random
import time
from decimal import Decimal

import pytest

from producer.client import HyperliquidClient, RetryPolicy
from producer.errors import ExchangeUnavailable
from producer.simulation.fake_exchange import SERVER_ERROR, FakeHyperliquid
from producer.simulation.scenarios import DEMO_WATCHLIST, HLP_LIQUIDATOR, ScenarioBuilder, demo_scenario
from producer.tracker import RECENT_LIMIT, LiquidationTracker
from tests.support.truth import visible_from


def tracker_for(fake: FakeHyperliquid, **kwargs: object) -> LiquidationTracker:
    client = HyperliquidClient(fake.url, timeout=2, retry=RetryPolicy(attempts=1), rng=random.Random(1))
    return LiquidationTracker(fake.url, client=client, **kwargs)  # type: ignore[arg-type]


async def test_scan_with_the_original_defaults_reads_btc_eth_sol_trades(fake_hl: FakeHyperliquid) -> None:
    builder = ScenarioBuilder(seed=5, start_ms=int(time.time() * 1000) - 60_000)
    user = builder.address()
    builder.trade("BTC", buyer=HLP_LIQUIDATOR, seller=user, px="64011.0", sz="0.0412")
    fake_hl.load(builder.build())
    async with tracker_for(fake_hl) as tracker:
        [event] = await tracker.scan_recent_liquidations()
        assert await tracker.scan_recent_liquidations() == []  # seen already
        stats = tracker.get_statistics()
        last_5_min = tracker.get_liquidations_by_timeframe(300)
    assert last_5_min["count"] == 1 and Decimal(last_5_min["value_usd"]) == Decimal("2637.2532")
    assert [r["coin"] for r in fake_hl.requests_of("recentTrades")] == ["BTC", "ETH", "SOL"] * 2
    # The vault bought: it took over a long (the original tracker called this a short).
    assert (event.liquidation_side, event.liquidated_user, event.value_usd) == ("long", user, Decimal("2637.2532"))
    assert stats["count"] == 1 and stats["errors"] == 0


async def test_fills_source_and_coin_filter(fake_hl: FakeHyperliquid) -> None:
    scenario = demo_scenario(seed=3)
    fake_hl.load(scenario)
    async with tracker_for(fake_hl, source="fills", watchlist=DEMO_WATCHLIST, lookback_seconds=1e9) as tracker:
        events = await tracker.scan_recent_liquidations(["BTC"])
        truth = [t for t in visible_from(scenario, DEMO_WATCHLIST) if t.coin == "BTC"]
        assert sorted((e.tx_hash, e.liquidated_user) for e in events) == sorted(
            (t.tx_hash, t.liquidated_user) for t in truth
        )
        assert tracker.get_statistics()["count"] == len(truth)


async def test_failures_raise_instead_of_returning_nothing(fake_hl: FakeHyperliquid) -> None:
    fake_hl.fail_next(SERVER_ERROR, times=3)
    async with tracker_for(fake_hl) as tracker:
        with pytest.raises(ExchangeUnavailable, match="every request of the scan failed"):
            await tracker.scan_recent_liquidations()
        fake_hl.fail_next(SERVER_ERROR)
        assert await tracker.scan_recent_liquidations() == []  # one coin failed, two answered
        assert tracker.get_statistics()["errors"] == 4


async def test_monitor_realtime_yields_new_liquidations(fake_hl: FakeHyperliquid) -> None:
    builder = ScenarioBuilder(seed=6)
    builder.trade("ETH", buyer=builder.address(), seller=HLP_LIQUIDATOR, px="2497.3", sz="1.2034")
    fake_hl.load(builder.build())
    async with tracker_for(fake_hl) as tracker:
        stream = tracker.monitor_realtime(coins=["ETH"], interval=0.01)
        event = await anext(stream)
        await stream.aclose()
    assert (event.coin, event.liquidation_side) == ("ETH", "short")


async def test_memory_is_bounded() -> None:
    tracker = LiquidationTracker("http://127.0.0.1:9")
    assert tracker.liquidations.maxlen == RECENT_LIMIT
    await tracker.close()
