"""The ws source as a user runs it: ``python -m producer`` with no source named (ws is the default without a key)
against the fake exchange's ``/ws`` and ``/info``, a real Redis; and its decisions directly.

What a user would notice: every liquidation the watched addresses touched, once, with the figures the watched legs
give, whether it happened before the producer started (the snapshot and the REST gap-fill), while it was running
(the pushes) or while its connection was down (the gap-fill after the reconnect).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

import msgspec
import pytest

from plumbing.errors import ConfigError
from producer.client import HyperliquidClient, RetryPolicy
from producer.exchange_types import Fill
from producer.feed_messages import UserFills, UserFillsData
from producer.simulation.fake_exchange import UNAVAILABLE, FakeHyperliquid, running_fake
from producer.simulation.fake_feeds import blocks_of
from producer.simulation.scenarios import HLP_LIQUIDATOR, Scenario, ScenarioBuilder
from producer.sources.ws import MAX_USERS, WsSource, public_ws_url, releasable, watchlist_problem, watermark, whole
from producer.websocket import Connected
from schemas import LiquidationEvent
from tests.helpers import NOW_MS, REDIS_URL, start_producer, stream_events, terminate, wait_until
from tests.support.truth import adl_truth, assert_matches_truth, cascade, visible_from

START_MS = 1_760_130_900_000


def watched(scenario: Scenario, n: int = 8) -> list[str]:
    """The ``n`` addresses with the most liquidation legs that are not the liquidated users, and the vault."""
    liquidated = {liq.key[2] for liq in scenario.liquidations}
    legs = Counter(
        address
        for address, fills in scenario.fills.items()
        for fill in fills
        if fill.get("liquidation") and address not in liquidated and address != HLP_LIQUIDATOR
    )
    return [address for address, _ in legs.most_common(n)] + [HLP_LIQUIDATOR]


def ws_env(fake: FakeHyperliquid, stream: str, watchlist: Sequence[str]) -> dict[str, str]:
    return {
        "REDIS_URL": REDIS_URL,
        "HL_API_URL": fake.url,
        "LIQ_STREAM": stream,
        "HL_WATCHLIST": ",".join(watchlist),
        "HL_LOOKBACK": str(10 * 365 * 86400),
        "HL_WEIGHT_PER_MINUTE": "100000",
        "HL_WS_QUIET": "0.2",
        # Far longer than any test waits: live events arrive in time only because a push wakes the loop.
        "HL_POLL_INTERVAL": "60",
    }


def subscribed(fake: FakeHyperliquid, users: int) -> bool:
    return sum(len(conn.users) for conn in fake.feeds.live("public")) >= users


def split(scenario: Scenario, at: int) -> tuple[Scenario, list[list[tuple[str, dict[str, object]]]]]:
    """The scenario's first ``at`` blocks as history the exchange already has, and the rest as blocks to push."""
    blocks = blocks_of(scenario)
    history: dict[str, list[dict[str, object]]] = {}
    for address, fill in (pair for block in blocks[:at] for pair in block):
        history.setdefault(address, []).append(fill)
    return Scenario(fills=history, trades={}, liquidations=[]), blocks[at:]


async def run_ws(stream: str, *, drop_after: int | None = None) -> tuple[Scenario, list[str], str]:
    """History before the start, a burst while running (dropped after ``drop_after`` blocks), through
    ``python -m producer`` with its default source; returns the scenario, the watchlist and the output."""
    scenario = cascade(40, start_ms=START_MS)
    watchlist = watched(scenario)
    truth = visible_from(scenario, watchlist)
    history, live = split(scenario, 15)
    async with running_fake(history) as fake:
        proc = await start_producer(env=ws_env(fake, stream, watchlist))
        try:
            await wait_until(lambda: subscribed(fake, len(watchlist)), within=15, message="the producer to subscribe")
            await fake.feeds.burst(live, drop_after=drop_after)
            if drop_after is not None:
                await wait_until(lambda: subscribed(fake, len(watchlist)), within=15, message="a resubscription")
            await wait_until(
                lambda: _count(stream, len(truth)), within=20, message=f"{len(truth)} liquidations in the stream"
            )
            await asyncio.sleep(0.5)  # anything published twice would have landed by now
        finally:
            out, _ = await terminate(proc)
    assert proc.returncode == 0, out.decode()
    return scenario, watchlist, out.decode()


async def _count(stream: str, want: int) -> bool:
    return sum(isinstance(e, LiquidationEvent) for e in await stream_events(stream)) >= want


async def test_without_a_key_the_public_websocket_publishes_history_and_pushes_exactly_once(stream: str) -> None:
    scenario, watchlist, out = await run_ws(stream)
    events = await stream_events(stream)
    assert_matches_truth(events, visible_from(scenario, watchlist), adl_truth(scenario, watchlist))
    assert {e.source for e in events} == {"ws"}
    assert "from source 'ws'" in out and "as the feed pushes them" in out


async def test_a_disconnect_mid_burst_loses_none_and_doubles_none(stream: str) -> None:
    """Blocks pushed while the connection is down reach the stream through the gap-fill, each once."""
    scenario, watchlist, out = await run_ws(stream, drop_after=8)
    assert_matches_truth(await stream_events(stream), visible_from(scenario, watchlist), adl_truth(scenario, watchlist))
    assert "disconnected after" in out


async def test_a_restart_reads_the_snapshot_again_and_publishes_nothing_twice(stream: str) -> None:
    scenario = cascade(12, start_ms=START_MS)
    watchlist = watched(scenario)
    truth = visible_from(scenario, watchlist)
    async with running_fake(scenario) as fake:
        for _ in range(2):
            proc = await start_producer(env=ws_env(fake, stream, watchlist))
            try:
                await wait_until(lambda: subscribed(fake, len(watchlist)), within=15, message="a subscription")
                await wait_until(lambda: _count(stream, len(truth)), within=15, message=f"{len(truth)} liquidations")
                await asyncio.sleep(0.5)
            finally:
                out, _ = await terminate(proc)
            assert proc.returncode == 0, out.decode()
    assert_matches_truth(await stream_events(stream), visible_from(scenario, watchlist), adl_truth(scenario, watchlist))


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


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@asynccontextmanager
async def ws_source(
    api_url: str, watchlist: list[str], clock: Clock, ws_url: str = "ws://127.0.0.1:1/ws"
) -> AsyncIterator[WsSource]:
    """A source reading ``api_url`` over REST; its WebSocket connects nowhere unless ``ws_url`` says where."""
    client = HyperliquidClient(api_url, retry=RetryPolicy(attempts=1))
    source = WsSource(client, watchlist, url=ws_url, lookback_ms=10**12, quiet=0.2, clock=clock)
    try:
        yield source
    finally:
        source.close()
        await source.client.close()


async def test_legs_of_one_liquidation_on_two_makers_are_published_as_one_event_after_the_quiet_time() -> None:
    builder = ScenarioBuilder(seed=4)
    maker_a, maker_b = builder.address(), builder.address()
    liquidation = builder.market_liquidation(makers=[maker_a, maker_b])
    pairs = decoded(blocks_of(builder.build())[0])
    clock = Clock()
    async with running_fake() as fake:
        async with ws_source(fake.url, [maker_a, maker_b], clock) as source:
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
    clock = Clock()
    async with running_fake() as fake:
        fake.add_fills(maker_b, scenario.fills[maker_b])
        fake.fail_next(UNAVAILABLE, match=lambda body: body.get("type") == "userFillsByTime")
        async with ws_source(fake.url, [maker_a, maker_b], clock) as source:
            source.take(Connected("ws://x", resumed=False, down_for=None), NOW_MS)
            snapshot = [f for a, f in pairs if a == maker_a]
            source.take(UserFills(UserFillsData(user=maker_a, fills=snapshot, is_snapshot=True)), NOW_MS)
            source.take(UserFills(UserFillsData(user=maker_a, fills=snapshot)), NOW_MS)  # the same fills, live
            clock.now += 1
            first = await source.poll(NOW_MS)  # one read refused: everything waits for the gap-fill
            assert first.events == [] and first.errors
            assert (await source.poll(NOW_MS)).events == []  # in, but a push may still be on its way
            clock.now += 0.2
            (event,) = (await source.poll(NOW_MS)).events
            assert isinstance(event, LiquidationEvent) and set(event.tids) == set(liquidation.tids)
            assert (await source.poll(NOW_MS)).events == []


async def test_a_refused_subscription_makes_the_source_unhealthy(stream: str) -> None:
    """Another process on the same IP holds the exchange's user slots: the health check says so."""
    builder = ScenarioBuilder(seed=2)
    users = [builder.address() for _ in range(3)]
    async with running_fake() as fake:
        fake.feeds.max_users = 2
        async with ws_source(fake.url, users, Clock(), fake.feeds.public_url) as source:
            await source.poll(NOW_MS)
            await wait_until(lambda: subscribed(fake, 2), within=10, message="two subscriptions")
            problem = None
            for _ in range(50):
                await source.wait(0.1)
                problem = (await source.poll(NOW_MS)).problem
                if problem:
                    break
            assert problem is not None and "Cannot track more than 2 total users" in problem
