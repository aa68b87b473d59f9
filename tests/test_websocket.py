"""The WebSocket transport against the fake feeds: subscribe, stay alive, notice silence, reconnect, resume."""

from __future__ import annotations

import asyncio
import logging
import random
import re
from collections.abc import Callable
from contextlib import aclosing, suppress
from typing import Any

import pytest

from plumbing.errors import ConfigError
from producer.feed_messages import (
    GoldRushLiquidationFills,
    HydromancerLiquidationFills,
    Subscription,
    Trades,
    UserFills,
    liquidation_fills,
    trades,
    user_fills,
)
from producer.simulation.fake_feeds import FakeFeeds, blocks_of
from producer.simulation.scenarios import ScenarioBuilder
from producer.websocket import (
    Connected,
    Disconnected,
    FeedEvent,
    FeedRejected,
    FeedSettings,
    FeedStats,
    Gap,
    Malformed,
    WebSocketFeed,
    feed_healthy,
    heartbeat,
    mask_url,
    next_seq,
    redact,
    url_secrets,
    with_session,
)

MAKER = "0x80bcb7855595980d4a20f0c8454039762a6d6a28"
FAST = {"ping_after": 0.15, "silence_limit": 0.6, "backoff_base": 0.01, "backoff_cap": 0.05, "connect_timeout": 2.0}
"""Timings a test can afford: pings after 150 ms of silence, a dead connection noticed within 600 ms."""


def cascade(n: int, seed: int = 5) -> list[list[tuple[str, dict[str, Any]]]]:
    """``n`` market liquidations each absorbed by :data:`MAKER` and one other maker, as blocks of (address, fill)."""
    builder = ScenarioBuilder(seed=seed)
    for i in range(n):
        builder.market_liquidation(coin=("BTC", "ETH", "SOL")[i % 3], side="long", makers=[MAKER, builder.address()])
    return blocks_of(builder.build())


class Reader:
    """Reads a feed in the background so a test can drive the fake server and wait for what the feed saw."""

    def __init__(self, feed: WebSocketFeed) -> None:
        self.feed = feed
        self.events: list[FeedEvent] = []
        self.error: BaseException | None = None
        self._changed = asyncio.Event()
        self._task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        try:
            async with aclosing(self.feed.events()) as events:
                async for event in events:
                    self.events.append(event)
                    self._changed.set()
        except Exception as exc:
            self.error = exc
            self._changed.set()

    def of(self, kind: type[Any]) -> list[Any]:
        return [event for event in self.events if isinstance(event, kind)]

    async def wait_for(self, condition: Callable[[Reader], bool], within: float = 5.0) -> None:
        async with asyncio.timeout(within):
            while not condition(self):
                if self.error is not None:
                    raise self.error
                self._changed.clear()
                await self._changed.wait()

    async def stop(self) -> None:
        self._task.cancel()
        with suppress(asyncio.CancelledError):
            await self._task


def settings(url: str, dialect: Any, *subscriptions: Subscription, **timings: Any) -> FeedSettings:
    return FeedSettings(dialect=dialect, url=url, subscriptions=subscriptions, **{**FAST, **timings})


def fill_tids(reader: Reader) -> list[int]:
    """Every fill tid the feed delivered, repeats included."""
    tids: list[int] = []
    for event in reader.events:
        if isinstance(event, HydromancerLiquidationFills):
            tids += [fill.tid for _, fill in event.fills]
        elif isinstance(event, GoldRushLiquidationFills):
            tids += [fill.tid for _, fill in event.pairs]
        elif isinstance(event, UserFills):
            tids += [fill.tid for fill in event.data.fills]
    return tids


# ---------------------------------------------------------------------------------------------- pure parts


def test_a_silent_connection_is_pinged_once_then_replaced() -> None:
    timing = {"ping_after": 50.0, "silence_limit": 65.0}
    assert heartbeat(10.0, 0.0, None, **timing) == ("wait", 40.0)
    assert heartbeat(50.0, 0.0, None, **timing) == ("ping", 0.0)
    assert heartbeat(55.0, 0.0, 50.0, **timing) == ("wait", 10.0)  # pinged: only the silence limit is left
    assert heartbeat(65.0, 0.0, 50.0, **timing) == ("replace", 0.0)
    assert heartbeat(101.0, 51.0, 50.0, **timing) == ("ping", 0.0)  # the pong came at 51: a new spell


def test_a_seq_jump_is_a_gap_and_a_repeat_is_not() -> None:
    assert next_seq(1, 1) == (2, None)
    assert next_seq(2, 5) == (6, Gap(2, 5)) and Gap(2, 5).missed == 3
    assert next_seq(6, 3) == (6, None)
    assert next_seq(6, None) == (6, None)


def test_health_tolerates_a_short_reconnect_but_not_a_long_outage() -> None:
    assert feed_healthy(FeedStats(connected=True), 1_000.0, 30.0)
    assert feed_healthy(FeedStats(down_since=100.0), 129.0, 30.0)
    assert not feed_healthy(FeedStats(down_since=100.0), 131.0, 30.0)


def test_urls_are_logged_with_every_query_value_masked() -> None:
    url = "wss://api.hydromancer.xyz/ws?token=s3cr%2Bet&sessionId=abc"
    assert mask_url(url) == "wss://api.hydromancer.xyz/ws?token=***&sessionId=***"
    assert mask_url("wss://api.hyperliquid.xyz/ws") == "wss://api.hyperliquid.xyz/ws"
    assert (
        redact("failed: GET /ws?token=s3cr%2Bet\nnext s3cr+et", url_secrets(url))
        == "failed: GET /ws?token=*** next ***"
    )


def test_a_session_id_replaces_the_previous_one_in_the_url() -> None:
    once = with_session("ws://h/ws?token=t", "one")
    assert with_session(once, "two") == "ws://h/ws?token=t&sessionId=two"


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"url": "https://api.hydromancer.xyz/ws?token=t"}, "not a ws:// or wss:// URL"),
        ({"url": "wss://api.hydromancer.xyz/ws"}, "no ?token=: add your API key"),
        ({"subscriptions": ()}, "nothing to subscribe to"),
        ({"ping_after": 70.0}, "below its silence limit"),
        ({"backoff_base": 5.0, "backoff_cap": 1.0}, "at most its cap"),
    ],
)
def test_settings_that_cannot_work_are_refused_in_one_line(changes: dict[str, Any], message: str) -> None:
    base: dict[str, Any] = {
        "dialect": "hydromancer",
        "url": "wss://api.hydromancer.xyz/ws?token=t",
        "subscriptions": (liquidation_fills(),),
    }
    with pytest.raises(ConfigError, match=re.escape(message)) as refused:
        FeedSettings(**{**base, **changes}).check()
    assert "\n" not in str(refused.value)


# ---------------------------------------------------------------------------------------------- against the fakes


async def test_public_feed_delivers_the_snapshot_then_pushes_then_trades() -> None:
    first, second = cascade(2)
    async with FakeFeeds() as fake:
        await fake.push(first)
        reader = Reader(WebSocketFeed(settings(fake.public_url, "public", user_fills(MAKER), trades("BTC"))))
        try:
            await reader.wait_for(lambda r: len(r.of(UserFills)) == 1)
            await fake.push(second)
            await fake.push_trades("BTC", [{**TRADE, "coin": "BTC"}])
            await reader.wait_for(lambda r: len(r.of(UserFills)) == 2 and len(r.of(Trades)) == 1)
        finally:
            await reader.stop()
    snapshot, push = reader.of(UserFills)
    assert snapshot.data.is_snapshot and not push.data.is_snapshot
    assert [f.tid for f in push.data.fills] == [f["tid"] for a, f in second if a == MAKER]
    assert isinstance(reader.events[0], Connected) and reader.events[0].down_for is None


TRADE: dict[str, Any] = {
    "side": "A",
    "px": "64159.0",
    "sz": "0.13722",
    "time": 1787047504010,
    "hash": "0x292f4dcc51901beb2aa904426dff020202cf00b1ec933abdccf7f91f1093f5d5",
    "tid": 1016897150094344,
    "users": ["0x07fd7e702ba749ffa49c3a6c17fcd9e6c7b7082a", "0x4a8a68b2ec7c67cbb79060d98157b68c47eba0e6"],
}


async def test_pings_keep_a_quiet_public_connection_open() -> None:
    async with FakeFeeds(idle_close=0.4) as fake:  # the fake drops a client silent for 0.4 s
        feed = WebSocketFeed(settings(fake.public_url, "public", user_fills(MAKER), ping_after=0.1, silence_limit=1.0))
        reader = Reader(feed)
        try:
            await reader.wait_for(lambda r: len(r.of(UserFills)) == 1)
            await asyncio.sleep(1.5)
        finally:
            await reader.stop()
    assert feed.stats.connects == 1 and not reader.of(Disconnected)
    assert sum(1 for request in fake.received if request == {"method": "ping"}) >= 3


async def test_without_pings_the_quiet_connection_is_dropped_and_replaced() -> None:
    """The counterpart of the test above: what the pings prevent."""
    async with FakeFeeds(idle_close=0.3) as fake:
        feed = WebSocketFeed(settings(fake.public_url, "public", user_fills(MAKER), ping_after=5.0, silence_limit=10.0))
        reader = Reader(feed)
        try:
            # resubscribed: a fresh snapshot on the new connection
            await reader.wait_for(lambda r: len(r.of(Connected)) == 2 and len(r.of(UserFills)) == 2)
        finally:
            await reader.stop()
    assert "closed by the server" in reader.of(Disconnected)[0].reason


async def test_hydromancer_server_pings_are_answered_and_keep_the_connection() -> None:
    async with FakeFeeds(ping_interval=0.1) as fake:  # drops a client that leaves a ping unanswered
        feed = WebSocketFeed(settings(fake.hydromancer_url(), "hydromancer", liquidation_fills(), silence_limit=2.0))
        reader = Reader(feed)
        try:
            await reader.wait_for(lambda r: len(r.of(Connected)) == 1)
            await asyncio.sleep(0.8)
        finally:
            await reader.stop()
    assert feed.stats.connects == 1 and not reader.of(Disconnected)
    assert sum(1 for request in fake.received if request == {"type": "pong"}) >= 5


async def test_a_stalled_server_is_noticed_and_the_connection_replaced() -> None:
    (block,) = cascade(1)
    async with FakeFeeds() as fake:
        feed = WebSocketFeed(settings(fake.goldrush_url(), "goldrush", liquidation_fills()))
        reader = Reader(feed)
        try:
            await reader.wait_for(lambda r: len(r.of(Connected)) == 1)
            fake.stall()  # connection open, nothing sent, pings unanswered
            await reader.wait_for(lambda r: len(r.of(Disconnected)) == 1)
            fake.stall(False)
            await reader.wait_for(lambda r: len(r.of(Connected)) == 2)
            await wait_subscribed(fake)
            await fake.push(block)
            await reader.wait_for(lambda r: len(r.of(GoldRushLiquidationFills)) == 1)
        finally:
            await reader.stop()
    (gone,) = reader.of(Disconnected)
    assert gone.reason.startswith("silent for") and 0.5 <= gone.lasted < 3.0
    assert reader.of(Connected)[1].down_for is not None
    assert sorted(fill_tids(reader)) == sorted(f["tid"] for _, f in block)


async def test_a_drop_mid_burst_resumes_the_hydromancer_session_and_replays_what_was_missed() -> None:
    blocks = cascade(8)
    async with FakeFeeds() as fake:
        feed = WebSocketFeed(settings(fake.hydromancer_url(), "hydromancer", liquidation_fills()))
        reader = Reader(feed)
        try:
            await reader.wait_for(lambda r: len(r.of(Connected)) == 1)
            await wait_subscribed(fake)
            await fake.burst(blocks, drop_after=3)
            expected = {f["tid"] for block in blocks for _, f in block}
            await reader.wait_for(lambda r: set(fill_tids(r)) == expected)
        finally:
            await reader.stop()
    first, second = reader.of(Connected)
    assert not first.resumed and second.resumed  # the session came back: no resubscription needed
    assert fake.upgrades[1][1]["sessionId"] == feed.session_id
    subscribes = [r for r in fake.received if isinstance(r, dict) and r.get("type") == "subscribe"]
    assert len(subscribes) == 1
    tids = fill_tids(reader)
    assert len(tids) > len(set(tids))  # replay and live overlapped: the source must dedup (by tid)
    assert not reader.of(Gap)  # seq restarted at 1 on the new connection: not a gap


async def wait_subscribed(fake: FakeFeeds, within: float = 2.0) -> None:
    """The feed sent its subscription; wait until the fake has read it (the server reads on its own schedule)."""

    def subscribed() -> bool:
        goldrush = any(conn.liquidations for conn in fake.live("goldrush"))
        return goldrush or any(conn.session.subscribed for conn in fake.live("hydromancer") if conn.session)

    async with asyncio.timeout(within):
        while not subscribed():  # noqa: ASYNC110 - the server's state: there is no event to wait on
            await asyncio.sleep(0.01)


async def test_an_unknown_hydromancer_session_is_a_fresh_start_with_a_resubscription() -> None:
    (block,) = cascade(1)
    async with FakeFeeds() as fake:
        feed = WebSocketFeed(settings(fake.hydromancer_url(), "hydromancer", liquidation_fills()))
        reader = Reader(feed)
        try:
            await reader.wait_for(lambda r: len(r.of(Connected)) == 1)
            fake.sessions.clear()  # the provider forgot us (expired)
            await fake.drop_all()
            await reader.wait_for(lambda r: len(r.of(Connected)) == 2)
            await wait_subscribed(fake)
            await fake.push(block)
            await reader.wait_for(lambda r: len(r.of(HydromancerLiquidationFills)) == 1)
        finally:
            await reader.stop()
    assert not reader.of(Connected)[1].resumed


async def test_a_lost_hydromancer_message_is_reported_as_a_gap() -> None:
    blocks = cascade(3)
    async with FakeFeeds() as fake:
        reader = Reader(WebSocketFeed(settings(fake.hydromancer_url(), "hydromancer", liquidation_fills())))
        try:
            await reader.wait_for(lambda r: len(r.of(Connected)) == 1)
            await wait_subscribed(fake)
            await fake.push(blocks[0])
            fake.lose_next(2)
            await fake.push(blocks[1])
            await reader.wait_for(lambda r: len(r.of(HydromancerLiquidationFills)) == 2)
        finally:
            await reader.stop()
    assert reader.of(Gap) == [Gap(expected=2, received=4)]
    assert reader.feed.stats.gaps == 1


async def test_garbage_frames_are_counted_and_skipped_and_the_feed_goes_on(caplog: pytest.LogCaptureFixture) -> None:
    (block,) = cascade(1)
    garbage: list[str | bytes] = [
        "not json",
        b"\xff\xfe",
        '{"channel":"userFills","data":7}',
        "[" * 10_000,
        '{"channel":"newThing"}',
    ]
    async with FakeFeeds() as fake:
        feed = WebSocketFeed(settings(fake.public_url, "public", user_fills(MAKER)))
        reader = Reader(feed)
        try:
            await reader.wait_for(lambda r: len(r.of(UserFills)) == 1)
            await fake.send_garbage(garbage * 3)
            await fake.push(block)
            await reader.wait_for(lambda r: len(r.of(UserFills)) == 2)
        finally:
            await reader.stop()
    assert feed.stats.malformed == 12 and feed.stats.ignored == 3  # an unknown channel is not garbage
    assert len(reader.of(Malformed)) == 12  # each told to the source, which may read again what it carried
    assert feed.stats.connects == 1
    skipped = [r for r in caplog.records if "skipped a frame" in r.getMessage()]
    assert len(skipped) == 3  # logged a few at a time, the rest only counted


@pytest.mark.parametrize("dialect", ["hydromancer", "goldrush"])
async def test_a_refused_key_ends_at_once_with_one_line_and_no_secret(
    dialect: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    secret = "wrong-key-0123456789"
    async with FakeFeeds() as fake:
        url = fake.hydromancer_url(secret) if dialect == "hydromancer" else fake.goldrush_url(secret)
        feed = WebSocketFeed(settings(url, dialect, liquidation_fills()))
        with pytest.raises(FeedRejected) as refused:
            async with asyncio.timeout(5), aclosing(feed.events()) as events:
                async for _ in events:
                    pass
    message = str(refused.value)
    assert "HTTP 401" in message and "\n" not in message and secret not in message
    assert len(fake.upgrades) == 1  # no reconnect loop
    assert all(secret not in record.getMessage() for record in caplog.records)


class FakeClock:
    """Time that moves only when the feed sleeps, so backoff schedules are read exactly and at once."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def time(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)


class Highest(random.Random):
    """Full jitter at its upper bound: the backoff's exponential schedule itself."""

    def uniform(self, a: float, b: float) -> float:
        return b


async def test_reconnects_back_off_with_jitter_and_keep_under_the_per_minute_cap(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = FakeClock()

    async with FakeFeeds(clock=clock.time) as fake:
        fake.refuse(times=40, status=503)
        feed = WebSocketFeed(
            settings(fake.public_url, "public", user_fills(MAKER), backoff_base=0.5, backoff_cap=1.0),
            clock=clock.time,
            sleep=clock.sleep,
            rng=random.Random(3),
        )
        async with asyncio.timeout(10), aclosing(feed.events()) as events:
            async for event in events:
                if isinstance(event, Connected):
                    break
    assert len(fake.upgrades) == 41 and feed.stats.connect_failures == 40
    assert clock.sleeps[0] <= 0.5 and all(0 <= s for s in clock.sleeps)  # jittered under the exponential bound
    assert len({round(s, 6) for s in clock.sleeps}) > 10  # jittered, not a fixed schedule
    times = fake.upgrade_times
    assert all(sum(1 for t in times if start <= t < start + 60.0) <= 30 for start in times)
    assert max(clock.sleeps) > 1.0  # the per-minute cap, not the backoff (capped at 1 s), held the 31st attempt back
    assert times[30] - times[0] >= 60.0
    assert "retrying in" in caplog.text


async def test_the_backoff_grows_while_attempts_keep_failing() -> None:
    clock = FakeClock()

    async with FakeFeeds(clock=clock.time) as fake:
        fake.refuse(times=6, status=502)
        feed = WebSocketFeed(
            settings(fake.public_url, "public", user_fills(MAKER), backoff_base=0.5, backoff_cap=8.0),
            clock=clock.time,
            sleep=clock.sleep,
            rng=Highest(),
        )
        async with asyncio.timeout(10), aclosing(feed.events()) as events:
            async for event in events:
                if isinstance(event, Connected):
                    break
    assert clock.sleeps == [0.5, 1.0, 2.0, 4.0, 8.0, 8.0]


async def test_a_connection_that_dies_without_a_close_frame_is_replaced_and_resubscribed() -> None:
    async with FakeFeeds() as fake:
        reader = Reader(WebSocketFeed(settings(fake.public_url, "public", user_fills(MAKER))))
        try:
            await reader.wait_for(lambda r: len(r.of(UserFills)) == 1)
            await fake.drop_all(abrupt=True)  # a crash: the TCP connection just goes
            await reader.wait_for(lambda r: len(r.of(Connected)) == 2 and len(r.of(UserFills)) == 2)
        finally:
            await reader.stop()
    assert len(reader.of(Disconnected)) == 1 and reader.feed.stats.reconnects == 1


async def test_a_working_connection_resets_the_backoff_and_health_follows_the_outage() -> None:
    clock = FakeClock()

    async with FakeFeeds(clock=clock.time) as fake:
        fake.refuse(times=3, status=502)
        feed = WebSocketFeed(
            settings(
                fake.public_url, "public", user_fills(MAKER), backoff_base=0.5, backoff_cap=8.0, unhealthy_after=2.0
            ),
            clock=clock.time,
            sleep=clock.sleep,
            rng=Highest(),
        )
        reader = Reader(feed)
        try:
            await reader.wait_for(lambda r: len(r.of(UserFills)) == 1)
            assert clock.sleeps == [0.5, 1.0, 2.0]  # 3.5 s down: longer than unhealthy_after, but connected now
            assert feed.is_healthy()
            fake.refuse(times=1000, status=502)
            await fake.drop_all()
            await reader.wait_for(lambda r: len(r.of(Disconnected)) == 1)
            assert feed.is_healthy(clock.now + 1.0) and not feed.is_healthy(clock.now + 60.0)
            await reader.wait_for(lambda r: len(clock.sleeps) >= 5)
        finally:
            await reader.stop()
    assert clock.sleeps[3:5] == [0.5, 1.0]  # back to the base after the snapshot (not 4.0); refusals grow it again
