"""The sources' own decisions: where an address's read starts, which fills are believable, when a poll read
nothing because the exchange is out."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Mapping
from pathlib import Path

import pytest

from producer.client import HyperliquidClient, RetryPolicy
from producer.config import ProducerConfig
from producer.exchange_types import Fill
from producer.simulation.fake_exchange import SERVER_ERROR, FakeHyperliquid
from producer.simulation.scenarios import DEMO_MAKERS, ScenarioBuilder
from producer.sources import NodeSource, WsSource, build_source
from producer.sources.base import LiquidationSource, PollResult
from producer.sources.fills import CLOCK_SKEW_MS, FillsSource, read_from, split_future
from producer.sources.trades import TradesSource
from tests.helpers import config_for, make_producer, wait_until

DAY_MS = 24 * 3600 * 1000
NOW_MS = 1_760_000_000_000


def fill(time_ms: int, tid: int) -> Fill:
    return Fill(coin="BTC", px="100", sz="1", side="B", time=time_ms, hash="0x" + "1" * 64, tid=tid)


def client_for(fake: FakeHyperliquid) -> HyperliquidClient:
    return HyperliquidClient(fake.url, timeout=2, retry=RetryPolicy(attempts=1), rng=random.Random(1))


def test_a_read_never_starts_in_the_future() -> None:
    assert read_from(None, NOW_MS, 3_600_000) == NOW_MS - 3_600_000
    assert read_from(NOW_MS - 5, NOW_MS, 3_600_000) == NOW_MS - 5
    # A watermark checkpointed ten days ahead (before the clock check) would leave the address unread for ten days.
    assert read_from(NOW_MS + 10 * DAY_MS, NOW_MS, 3_600_000) == NOW_MS


def test_fills_beyond_the_skew_allowance_are_not_believed() -> None:
    fills = [fill(NOW_MS - 1, 1), fill(NOW_MS + CLOCK_SKEW_MS, 2), fill(NOW_MS + 10 * DAY_MS, 3)]
    believable, ahead = split_future(fills, NOW_MS + CLOCK_SKEW_MS)
    assert [f.tid for f in believable] == [1, 2] and [f.tid for f in ahead] == [3]


async def test_a_fill_stamped_days_ahead_is_skipped_counted_and_does_not_blind_the_address(
    fake_hl: FakeHyperliquid, caplog: pytest.LogCaptureFixture
) -> None:
    maker = DEMO_MAKERS[0]
    now_ms = int(time.time() * 1000)
    builder = ScenarioBuilder(seed=3, start_ms=now_ms - 60_000)
    builder.ordinary_fills(maker, 3, time_ms=now_ms - 50_000)
    builder.ordinary_fills(maker, 1, time_ms=now_ms + 10 * DAY_MS)
    fake_hl.load(builder.build())
    client = client_for(fake_hl)
    source = FillsSource(client, [maker], lookback_ms=3_600_000)
    try:
        first = await source.poll(now_ms)
        assert (first.items, first.skipped) == (3, 1)
        assert source.watermarks[maker] <= now_ms
        assert "skipped 1 fills stamped more than 60 s ahead of our clock" in caplog.text

        later = ScenarioBuilder(seed=4, start_ms=now_ms + 1_000)
        truth = later.market_liquidation(coin="ETH", side="short", makers=[maker], time_ms=now_ms + 1_000)
        fake_hl.load(later.build())
        events = [e for _ in range(3) for e in (await source.poll(now_ms + 2_000)).events]
        again = await source.poll(now_ms + 3_000)
    finally:
        await client.close()
    assert [e.tx_hash for e in events] == [truth.tx_hash], "the address must still be read after the future fill"
    assert again.skipped == 0, "a fill already reported is not counted again at every poll"


async def test_a_poll_where_every_read_failed_says_the_exchange_is_unreachable(fake_hl: FakeHyperliquid) -> None:
    client = client_for(fake_hl)
    try:
        quiet = await FillsSource(client, DEMO_MAKERS[:2], lookback_ms=1000).poll(NOW_MS)
        fake_hl.fail_next(SERVER_ERROR, times=2)
        out = await FillsSource(client, DEMO_MAKERS[:2], lookback_ms=1000).poll(NOW_MS)
        fake_hl.fail_next(SERVER_ERROR, times=1)
        half = await FillsSource(client, DEMO_MAKERS[:2], lookback_ms=1000).poll(NOW_MS)
        fake_hl.fail_next(SERVER_ERROR, times=2)
        trades = await TradesSource(client, ["BTC", "ETH"], liquidators=[]).poll(NOW_MS)
    finally:
        await client.close()
    assert not quiet.unreachable and not quiet.errors
    assert out.unreachable and len(out.errors) == 2
    assert not half.unreachable
    assert trades.unreachable


async def test_the_configured_source_is_built_with_its_settings(tmp_path: Path) -> None:
    client = HyperliquidClient("http://127.0.0.1:9", timeout=1)
    try:
        fills = build_source(ProducerConfig(source="fills", watchlist=("0xABC",), lookback=90), client)
        assert isinstance(fills, FillsSource) and fills.watchlist == ["0xabc"] and fills.lookback_ms == 90_000
        ws = build_source(ProducerConfig(watchlist=("0xABC",), api_url="http://127.0.0.1:9", ws_quiet=0.5), client)
        assert isinstance(ws, WsSource) and ws.watchlist == ["0xabc"] and ws.quiet == 0.5
        assert ws.settings.url == "ws://127.0.0.1:9/ws"
        trades = build_source(ProducerConfig(source="trades", coins=("ETH",)), client)
        assert isinstance(trades, TradesSource) and trades.coins == ["ETH"]
        node = build_source(ProducerConfig(source="node", node_paths=(tmp_path,), node_follow=False), client)
        assert isinstance(node, NodeSource) and node.paths == [tmp_path] and node.window.follow is False
        node.close()
    finally:
        await client.close()


async def test_the_loop_polls_again_as_soon_as_the_source_says_it_may_have_more(
    fake_hl: FakeHyperliquid, stream: str
) -> None:
    """A source that is told of new data (a pushed message, a file that grew) wakes the loop at once instead of
    the loop sleeping out its interval: what makes a source real time."""
    woken = asyncio.Event()

    class Told(LiquidationSource):
        name = "told"
        polls = 0

        def restore(self, checkpoint: Mapping[str, str]) -> None:
            pass

        def close(self) -> None:
            pass

        async def poll(self, now_ms: int) -> PollResult:
            self.polls += 1
            return PollResult()

        async def wait(self, seconds: float) -> None:
            await woken.wait()
            woken.clear()

    producer = make_producer(config_for(fake_hl, stream, poll_interval=3600.0))
    told = Told()
    producer.source = told
    running = asyncio.ensure_future(producer.run())
    await wait_until(lambda: told.polls == 1, message="the first poll")
    woken.set()
    await wait_until(lambda: told.polls == 2, within=5, message="a poll as soon as the source said so")
    producer.stop()
    assert await asyncio.wait_for(running, timeout=10) == 0
