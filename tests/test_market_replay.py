"""A simulated market played through the fakes: what a producer would see of it, in order and never ahead of time.

Why: a source that follows the makers learns them from the live ``trades`` feed and then reads their fills; the
replay must show each block to the WebSocket subscribers and to ``userFillsByTime`` at the same moment, and never a
fill from a later block, or a test of that source would pass on data it could not have had.
"""

from __future__ import annotations

import json
from typing import Any

import aiohttp
import pytest

from producer.simulation.fake_exchange import FakeHyperliquid, running_fake
from producer.simulation.fake_feeds import FakeFeeds
from producer.simulation.market import Market, MarketSpec, build_market
from producer.simulation.market_replay import MarketReplay, market_blocks

SMALL = MarketSpec(seed=3, makers=30, takers=50, trades=400, liquidations=30, backstops=2)


def fills_until(fake: FakeHyperliquid, user: str, end: int) -> list[dict[str, Any]]:
    status, answer = fake.answer({"type": "userFillsByTime", "user": user, "startTime": 0, "endTime": end})
    assert status == 200 and isinstance(answer, list)
    return answer


def test_blocks_hold_every_fill_and_trade_once_oldest_first() -> None:
    market = build_market(SMALL)
    blocks = market_blocks(market)
    times = [block.time for block in blocks]
    assert times == sorted(set(times))
    assert sorted(f["tid"] for b in blocks for _, f in b.fills) == sorted(
        f["tid"] for fills in market.scenario.fills.values() for f in fills
    )
    assert [t for b in blocks for trades in b.trades.values() for t in trades] == market.trades()
    for liquidation in market.liquidations:  # every leg of a liquidation lands in one block
        (block,) = [b for b in blocks if any(f["tid"] in liquidation.truth.tids for _, f in b.fills)]
        assert block.time == liquidation.truth.timestamp


async def test_the_info_api_shows_only_what_the_market_has_played() -> None:
    market = build_market(SMALL)
    maker = market.makers[0]
    own = market.scenario.fills[maker]
    async with running_fake() as fake:
        replay = MarketReplay(market, exchange=fake)
        assert await replay.play(len(replay.blocks) // 2) == len(replay.blocks) // 2
        now = replay.now_ms
        assert now is not None
        seen = fills_until(fake, maker, 2**62)
        assert seen == [f for f in own if f["time"] <= now] and 0 < len(seen) < len(own)
        assert await replay.play(until_ms=now) == 0  # nothing left at or before now
        await replay.play()
        assert replay.done and fills_until(fake, maker, 2**62) == own
        status, recent = fake.answer({"type": "recentTrades", "coin": "BTC"})
        assert status == 200 and recent == market.trades_by_coin()["BTC"][::-1][: fake.recent_trades_limit]


async def receive(ws: aiohttp.ClientWebSocketResponse) -> Any:
    return json.loads(await ws.receive_str(timeout=5))


@pytest.mark.parametrize("where", ["the exchange's own feeds", "feeds of their own"])
async def test_the_feeds_push_each_coins_trades_and_each_makers_fills_as_played(
    session: aiohttp.ClientSession, where: str
) -> None:
    market: Market = build_market(SMALL)
    maker = market.makers[0]
    expected_trades = market.trades_by_coin()["BTC"]
    expected_fills = market.scenario.fills[maker]
    async with running_fake() as fake, FakeFeeds() as own:
        feeds = fake.feeds if where == "the exchange's own feeds" else own
        async with session.ws_connect(feeds.public_url) as ws:
            await ws.send_json({"method": "subscribe", "subscription": {"type": "trades", "coin": "BTC"}})
            assert (await receive(ws))["channel"] == "subscriptionResponse"
            await ws.send_json({"method": "subscribe", "subscription": {"type": "userFills", "user": maker}})
            assert (await receive(ws))["channel"] == "subscriptionResponse"
            assert (await receive(ws))["data"]["fills"] == []  # the snapshot: nothing played yet
            await MarketReplay(market, exchange=fake, feeds=feeds).play()
            trades: list[dict[str, Any]] = []
            fills: list[dict[str, Any]] = []
            while len(trades) < len(expected_trades) or len(fills) < len(expected_fills):
                message = await receive(ws)
                if message["channel"] == "trades":
                    trades.extend(message["data"])
                else:
                    assert message["channel"] == "userFills" and message["data"]["user"] == maker
                    fills.extend(message["data"]["fills"])
        assert trades == expected_trades
        assert fills == expected_fills
        assert fills_until(fake, maker, 2**62) == expected_fills  # each fill once, whichever feeds were pushed
