"""The ws source as a user runs it: ``python -m producer`` with no source named (ws is the default without a key)
against the fake exchange's ``/ws`` and ``/info``, a real Redis; and its decisions directly.

What a user would notice: every liquidation the watched addresses touched, once, with the figures the watched legs
give, whether it happened before the producer started (the snapshot and the REST gap-fill), while it was running
(the pushes) or while its connection was down (the gap-fill after the reconnect).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager

import msgspec
import pytest

from plumbing.errors import ConfigError
from producer.client import HyperliquidClient, RetryPolicy
from producer.exchange_types import Fill
from producer.feed_messages import UserFills, UserFillsData
from producer.simulation.fake_exchange import UNAVAILABLE, Fault, running_fake
from producer.simulation.fake_feeds import blocks_of
from producer.simulation.scenarios import HLP_LIQUIDATOR, ScenarioBuilder
from producer.sources.ws import MAX_USERS, WsSource, public_ws_url, releasable, watchlist_problem, watermark, whole
from producer.websocket import Connected
from schemas import LiquidationEvent
from tests.helpers import NOW_MS, REDIS_URL, ManualClock, start_producer, stream_events, terminate, wait_until
from tests.support.public_feed import (
    START_MS,
    assert_published_once,
    count_liquidations,
    run_ws,
    subscribed,
    watched,
    ws_env,
    ws_source,
)
from tests.support.truth import cascade, visible_from


async def test_without_a_key_the_public_websocket_publishes_history_and_pushes_exactly_once(stream: str) -> None:
    scenario, watchlist, out = await run_ws(stream)
    await assert_published_once(stream, scenario, watchlist)
    assert {e.source for e in await stream_events(stream)} == {"ws"}
    assert "from source 'ws'" in out and "as the feed pushes them" in out


async def test_a_restart_reads_the_snapshot_again_and_publishes_nothing_twice(stream: str) -> None:
    scenario = cascade(12, start_ms=START_MS)
    watchlist = watched(scenario)
    want = len(visible_from(scenario, watchlist))
    async with running_fake(scenario) as fake:
        for _ in range(2):
            proc = await start_producer(env=ws_env(fake, stream, watchlist))
            try:
                await wait_until(lambda: subscribed(fake, len(watchlist)), within=15, message="a subscription")
                await wait_until(lambda: count_liquidations(stream, want), within=15, message=f"{want} liquidations")
                await asyncio.sleep(0.5)
            finally:
                out, _ = await terminate(proc)
            assert proc.returncode == 0, out.decode()
    await assert_published_once(stream, scenario, watchlist)


async def test_more_than_ten_addresses_is_a_bad_setting_with_the_way_out(stream: str) -> None:
    addresses = ",".join(f"0x{i:040x}" for i in range(11))
    env = {"REDIS_URL": REDIS_URL, "LIQ_STREAM": stream, "HL_WATCHLIST": addresses}
    proc = await start_producer(env=env)
    out, _ = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 2
    (line,) = out.decode().splitlines()
    assert "11 addresses" in line and "at most 10" in line and "--source fills" in line


# ---------------------------------------------------------------------------------------------- decisions


def decoded(pairs: Sequence[tuple[str, object]]) -> list[tuple[str, Fill]]:
    return msgspec.json.decode(msgspec.json.encode(list(pairs)), type=list[tuple[str, Fill]])


def test_the_websocket_is_beside_the_info_api() -> None:
    assert public_ws_url("https://api.hyperliquid.xyz") == "wss://api.hyperliquid.xyz/ws"
    assert public_ws_url("http://127.0.0.1:8080/") == "ws://127.0.0.1:8080/ws"


def test_the_watchlist_fits_the_exchanges_ten_users() -> None:
    assert watchlist_problem(["0x" + "1" * 40] * MAX_USERS) is None
    assert watchlist_problem([]) is not None
    with pytest.raises(ConfigError, match="at most 10"):
        WsSource(
            HyperliquidClient("http://127.0.0.1:1"), [f"0x{i:040x}" for i in range(11)], url="ws://h/ws", lookback_ms=1
        )


def test_a_market_liquidation_on_makers_waits_while_an_own_leg_or_a_backstop_is_whole() -> None:
    builder = ScenarioBuilder(seed=3)
    maker_a, maker_b = builder.address(), builder.address()
    liquidation = builder.market_liquidation(makers=[maker_a, maker_b])
    builder.backstop_liquidation(coin="ETH")
    pairs = decoded(blocks_of(builder.build())[0] + blocks_of(builder.build())[1])
    makers_only = [(a, f) for a, f in pairs if a in (maker_a, maker_b)]
    own = [(a, f) for a, f in pairs if a == liquidation.key[2]]
    vault = [(a, f) for a, f in pairs if a == HLP_LIQUIDATOR]
    assert not whole(makers_only[:1]) and whole(own) and whole(vault) and whole(makers_only + own)
    pending = {1: makers_only, 2: vault}
    assert releasable(pending, None, quiet=False) == [2]
    assert releasable(pending, 2, quiet=False) == [1, 2]
    assert releasable(pending, None, quiet=True) == [1, 2]


def test_the_watermark_never_passes_a_held_fill_or_now() -> None:
    assert watermark(None, None, NOW_MS) is None
    assert watermark(50, None, NOW_MS) == 50
    assert watermark(50, 40, NOW_MS) == 40
    assert watermark(NOW_MS + 5, None, NOW_MS) == NOW_MS


def offline_source(
    api_url: str, watchlist: list[str], clock: ManualClock, ws_url: str = "ws://127.0.0.1:1/ws"
) -> AbstractAsyncContextManager[WsSource]:
    """A source reading ``api_url`` over REST; its WebSocket connects nowhere unless ``ws_url`` says where."""
    client = HyperliquidClient(api_url, retry=RetryPolicy(attempts=1))
    return ws_source(client, watchlist, url=ws_url, quiet=0.2, clock=clock)


async def test_legs_of_one_liquidation_on_two_makers_are_published_as_one_event_after_the_quiet_time() -> None:
    builder = ScenarioBuilder(seed=4)
    maker_a, maker_b = builder.address(), builder.address()
    liquidation = builder.market_liquidation(makers=[maker_a, maker_b])
    pairs = decoded(blocks_of(builder.build())[0])
    clock = ManualClock(1000.0)
    async with running_fake() as fake:
        async with offline_source(fake.url, [maker_a, maker_b], clock) as source:
            source.take(Connected("ws://x", resumed=False, down_for=None), NOW_MS)
            assert (await source.poll(NOW_MS)).events == []  # the gap-fill found nothing
            for maker in (maker_a, maker_b):
                fills = [f for a, f in pairs if a == maker]
                source.take(UserFills(UserFillsData(user=maker, fills=fills)), NOW_MS)
                assert (await source.poll(NOW_MS)).events == []
            clock.now += 0.2
            result = await source.poll(NOW_MS)
            (event,) = result.events
            assert isinstance(event, LiquidationEvent) and set(event.tids) == set(liquidation.tids)
            assert source.watermarks == dict.fromkeys((maker_a, maker_b), liquidation.timestamp)


async def test_nothing_is_released_until_the_gap_fill_after_a_connect_is_in() -> None:
    """A snapshot and a live push of one liquidation's legs, the other leg only over REST: one whole event."""
    builder = ScenarioBuilder(seed=6)
    maker_a, maker_b = builder.address(), builder.address()
    liquidation = builder.market_liquidation(makers=[maker_a, maker_b])
    scenario = builder.build()
    pairs = decoded(blocks_of(scenario)[0])
    clock = ManualClock(1000.0)
    async with running_fake() as fake:
        fake.add_fills(maker_b, scenario.fills[maker_b])
        fake.fail_next(UNAVAILABLE, match=lambda body: body.get("type") == "userFillsByTime")
        async with offline_source(fake.url, [maker_a, maker_b], clock) as source:
            source.take(Connected("ws://x", resumed=False, down_for=None), NOW_MS)
            snapshot = [f for a, f in pairs if a == maker_a]
            source.take(UserFills(UserFillsData(user=maker_a, fills=snapshot, is_snapshot=True)), NOW_MS)
            source.take(UserFills(UserFillsData(user=maker_a, fills=snapshot)), NOW_MS)  # the same fills, live
            clock.now += 1
            first = await source.poll(NOW_MS)  # one read refused: everything waits for the gap-fill
            assert first.events == [] and first.errors
            published = []
            for _ in range(5):  # the gap-fill, its confirming sweep, then a quiet time for pushes on their way
                published += (await source.poll(NOW_MS)).events
                clock.now += 0.25
            (event,) = published
            assert isinstance(event, LiquidationEvent) and set(event.tids) == set(liquidation.tids)


async def test_a_refused_subscription_makes_the_source_unhealthy(stream: str) -> None:
    """Another process on the same IP holds the exchange's user slots: the health check says so."""
    builder = ScenarioBuilder(seed=2)
    users = [builder.address() for _ in range(3)]
    async with running_fake() as fake:
        fake.feeds.max_users = 2
        async with offline_source(fake.url, users, ManualClock(1000.0), fake.feeds.public_url) as source:
            await source.poll(NOW_MS)
            await wait_until(lambda: subscribed(fake, 2), within=10, message="two subscriptions")
            problem = None
            for _ in range(50):
                await source.wait(0.1)
                problem = (await source.poll(NOW_MS)).problem
                if problem:
                    break
            assert problem is not None and "Cannot track more than 2 total users" in problem


async def test_a_reconnect_during_a_gap_fill_read_has_that_address_read_again() -> None:
    """The read began before the reconnect, so it cannot cover what the dead connection missed after it began."""
    maker = ScenarioBuilder(seed=9).address()
    async with running_fake() as fake, offline_source(fake.url, [maker], ManualClock(1000.0)) as source:
        source.take(Connected("ws://x", resumed=False, down_for=None), NOW_MS)
        fake.fail_next(Fault.delay(0.5), match=lambda body: body.get("type") == "userFillsByTime")
        polling = asyncio.ensure_future(source.poll(NOW_MS))
        await wait_until(lambda: bool(fake.requests_of("userFillsByTime")), within=5, message="the gap-fill read")
        source.take(Connected("ws://x", resumed=False, down_for=1.0), NOW_MS)
        await polling
        await source.poll(NOW_MS)
        assert len(fake.requests_of("userFillsByTime")) == 2
        await source.poll(NOW_MS)
        assert len(fake.requests_of("userFillsByTime")) == 2  # then it is done
