"""The adaptive watchlist: the pinned addresses plus the biggest makers, within the WebSocket's 10 users.

The decision (:func:`plan`) and the settings are tested directly; then the feed's and the source's changes of
subscription on an open connection against the fake feeds. What it gains on the simulated market is measured in
``tests/test_market_modes.py``; the REST tier's reads in ``tests/test_polled_makers.py``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import replace
from decimal import Decimal

import pytest

from plumbing.errors import ConfigError
from producer.adaptive import AdaptiveWatchlist, Watch, margin, plan
from producer.client import HyperliquidClient, RetryPolicy
from producer.config import load_config
from producer.coverage import MakerRanking
from producer.feed_messages import user_fills
from producer.simulation.fake_exchange import FakeHyperliquid, Fault
from producer.simulation.fake_feeds import FakeFeeds
from producer.simulation.scenarios import ScenarioBuilder
from producer.sources.ws import WsSource, ws_settings
from producer.websocket import WebSocketFeed
from schemas import LiquidationEvent
from tests.helpers import wait_until
from tests.support.public_feed import long_history, ws_source

A, B, C, D = ("0x" + letter * 40 for letter in "abcd")
VAULT = "0x" + "e" * 40


# ---------------------------------------------------------------------------------------------- who is watched


def test_the_pinned_addresses_come_first_and_the_biggest_unpinned_makers_take_the_slots_left() -> None:
    assert plan([VAULT], [A, VAULT, B, C], 3).pushed == [VAULT, A, B]
    assert plan([VAULT.upper().replace("0X", "0x")], [A.upper().replace("0X", "0x")], 10).pushed == [VAULT, A]
    assert plan([VAULT], [], 10) == Watch([VAULT], [])  # no trades ranked yet: the pinned alone
    assert plan([VAULT, A], [B, C], 2).pushed == [VAULT, A]  # no slot left for a maker
    assert plan([VAULT, A, B], [C], 2).pushed == [VAULT, A]  # the pinned first even when they overflow the cap
    assert plan([], [A, B, A, C], 2).pushed == [A, B]


MAKERS = ["0x" + f"{n:040x}" for n in range(1, 30)]
"""Makers in the order of a ranking, biggest first."""


def test_the_makers_after_the_websocket_slots_are_polled_biggest_first() -> None:
    watch = plan([VAULT], [VAULT, *MAKERS], 3, polled=4)
    assert watch == Watch([VAULT, *MAKERS[:2]], MAKERS[2:6])
    assert plan([VAULT], MAKERS[:3], 3, polled=4) == Watch([VAULT, *MAKERS[:2]], MAKERS[2:3])  # few ranked yet
    assert plan([VAULT], MAKERS, 1, polled=2) == Watch([VAULT], MAKERS[:2])  # the default vaults leave one slot


def test_a_watched_maker_keeps_its_tier_until_it_falls_beyond_the_margin() -> None:
    now = plan([], MAKERS, 4, polled=8)
    assert now == Watch(MAKERS[:4], MAKERS[4:12])
    # The 4th maker slips to 5th (within the margin of one): it keeps its slot, the riser stays polled.
    slipped = [*MAKERS[:3], MAKERS[4], MAKERS[3], *MAKERS[5:]]
    assert plan([], slipped, 4, polled=8, current=now) == now
    # Without the current watch, the same ranking swaps them: what the margin saves is that churn.
    assert plan([], slipped, 4, polled=8) == Watch([*MAKERS[:3], MAKERS[4]], [MAKERS[3], *MAKERS[5:12]])
    # Fallen to 6th, beyond the margin: the riser takes the slot and the fallen maker is polled instead.
    fallen = [*MAKERS[:3], MAKERS[4], MAKERS[5], MAKERS[3], *MAKERS[6:]]
    assert plan([], fallen, 4, polled=8, current=now) == Watch(
        [*MAKERS[:3], MAKERS[4]], [MAKERS[5], MAKERS[3], *MAKERS[6:12]]
    )
    # A polled maker that drops out of the ranking altogether leaves; the next one joins.
    gone = [m for m in MAKERS if m != MAKERS[6]]
    assert plan([], gone, 4, polled=8, current=now) == Watch(MAKERS[:4], [*MAKERS[4:6], *MAKERS[7:13]])


def test_margins_grow_with_the_tier() -> None:
    assert [margin(size) for size in (1, 4, 8, 20)] == [1, 1, 2, 5]


def test_the_adaptive_watchlist_is_on_where_it_can_run_and_its_bad_settings_are_named() -> None:
    config = load_config([])  # the ws source and the coverage measure: auto turns it on
    assert config.adaptive and config.adaptive_slots == 10 and config.adaptive_every == 300.0
    assert config.adaptive_polled == 20
    assert not load_config(["--source", "fills"]).adaptive and not load_config(["--coverage", "false"]).adaptive
    assert not load_config(["--adaptive", "off"]).adaptive
    with pytest.raises(ConfigError, match="must be auto, true or false"):
        load_config(["--adaptive", "maybe"])
    on = load_config(["--adaptive", "true", "--watchlist", VAULT, "--adaptive-slots", "4", "--adaptive-every", "9"])
    assert on.adaptive and on.adaptive_slots == 4 and on.adaptive_every == 9.0
    assert load_config([], {"HL_ADAPTIVE": "true", "HL_WATCHLIST": VAULT}).adaptive
    bad = {
        "needs the ws source": ["--source", "fills"],
        "needs --coverage": ["--coverage", "false"],
        "between 1 and 10": ["--adaptive-slots", "11"],
        "between 0 and 200": ["--adaptive-polled", "201"],
        "pins 9 addresses": ["--adaptive-slots", "5"],  # the default watchlist, the 9 protocol vaults
    }
    for message, argv in bad.items():
        with pytest.raises(ConfigError, match=message):
            load_config(["--adaptive", "true", *argv])
    with pytest.raises(ConfigError, match="HL_ADAPTIVE_EVERY"):
        load_config([], {"HL_ADAPTIVE_EVERY": "0"})
    with pytest.raises(ConfigError, match=r"HL_ADAPTIVE_POLLED.*0 or more"):
        load_config([], {"HL_ADAPTIVE_POLLED": "-1"})
    assert load_config(["--adaptive", "true", "--adaptive-polled", "0"]).adaptive_polled == 0  # the REST tier off


class _Failing(WsSource):
    """A ws source whose changes of watchlist fail, as an unforeseen bug would."""

    calls = 0

    async def follow(self, watchlist: Sequence[str], polled: Sequence[str] = ()) -> tuple[list[str], list[str]]:
        self.calls += 1
        raise ValueError("boom")


async def test_a_failing_re_rank_is_logged_and_the_task_restarted_the_producer_going_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    client = HyperliquidClient("http://127.0.0.1:1")
    source = _Failing(client, [VAULT], url="ws://127.0.0.1:1/ws", lookback_ms=1)
    ranking = MakerRanking()
    watch = AdaptiveWatchlist(source, ranking, [VAULT], every=0.01)

    def a_poll() -> bool:
        watch.start()  # the producer calls it at every poll
        return source.calls >= 2

    try:
        await wait_until(a_poll, message="the re-ranking tried again")
    finally:
        watch.close()
        await client.close()
    assert "adaptive watchlist: the task failed (ValueError: boom); restarting it" in caplog.text


# ---------------------------------------------------------------------------------------------- on the connection


async def test_the_feed_changes_its_subscriptions_on_the_open_connection_and_a_reconnect_keeps_the_new_set() -> None:
    async with FakeFeeds() as fake:
        feed = WebSocketFeed(ws_settings(fake.public_url, [A, B]))
        reader = asyncio.create_task(_drain(feed))
        try:
            await wait_until(lambda: [c.users for c in fake.live("public")] == [{A, B}], message="A and B followed")
            assert await feed.follow([user_fills(B), user_fills(C)])
            await wait_until(lambda: [c.users for c in fake.live("public")] == [{B, C}], message="A out, C in")
            requests = [(r["method"], r["subscription"]["user"]) for r in fake.received if "subscription" in r]
            assert requests == [("subscribe", A), ("subscribe", B), ("unsubscribe", A), ("subscribe", C)]
            with pytest.raises(ConfigError):
                await feed.follow([])  # a feed of nothing: refused, and the feed keeps what it follows
            assert feed.settings.subscriptions == (user_fills(B), user_fills(C))
            await fake.drop_all()
            await wait_until(lambda: feed.stats.connects == 2 and [c.users for c in fake.live("public")] == [{B, C}])
        finally:
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)


async def test_a_subscription_dropped_while_the_first_ones_are_still_paced_out_is_never_sent() -> None:
    """The connection's first subscriptions go out one by one; a change meanwhile is not undone by the queue."""
    async with FakeFeeds() as fake:
        feed = WebSocketFeed(replace(ws_settings(fake.public_url, [A, B, C]), subscribe_interval=0.05))
        reader = asyncio.create_task(_drain(feed))
        try:
            await wait_until(lambda: [c.users for c in fake.live("public")] == [{A}], message="A subscribed first")
            assert await feed.follow([user_fills(A), user_fills(D)])
            await wait_until(lambda: [c.users for c in fake.live("public")] == [{A, D}], message="D joined")
            await asyncio.sleep(0.5)  # ten pacing intervals: B's and C's turns in the queue have come and gone
            assert [c.users for c in fake.live("public")] == [{A, D}]
            subscribed = [r["subscription"]["user"] for r in fake.received if r.get("method") == "subscribe"]
            assert C not in subscribed and D in subscribed  # B may have gone before the change (then unsubscribed)
        finally:
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)


async def _drain(feed: WebSocketFeed) -> None:
    async for _ in feed.events():
        pass


async def test_a_joining_address_is_gap_filled_and_published_and_a_leaving_ones_pushes_are_ignored(
    fake_hl: FakeHyperliquid,
) -> None:
    """A maker that joins after its liquidation happened: its snapshot or its REST read brings it, once; one that
    left is not read."""
    builder = ScenarioBuilder(seed=3)
    builder.market_liquidation(coin="ETH", side="long", makers=[C])
    scenario = builder.build()
    fake_hl.load(scenario)
    client = HyperliquidClient(fake_hl.url)
    async with ws_source(client, [A, B], url=fake_hl.feeds.public_url, quiet=0.01) as source:
        await source.poll(_now())  # starts the feed
        await wait_until(lambda: [c.users for c in fake_hl.feeds.live("public")] == [{A, B}])
        assert not (await source.poll(_now())).events  # A and B took no part in the liquidation
        assert await source.follow([A, C]) == ([C], [B])
        await wait_until(lambda: [c.users for c in fake_hl.feeds.live("public")] == [{A, C}])
        events = await _poll_until_events(source)
        (event,) = events
        assert isinstance(event, LiquidationEvent)
        (truth,) = scenario.liquidations
        assert (event.tx_hash, event.liquidated_user, Decimal(event.size)) == (
            truth.tx_hash,
            truth.liquidated_user,
            truth.size,
        )
        assert source.watchlist == [A, C]

        async def c_read() -> bool:
            assert not (await source.poll(_now())).events  # the snapshot and the REST read overlap: once
            return C in [r["user"] for r in fake_hl.requests_of("userFillsByTime")]

        await wait_until(c_read, message="C's history read over REST")
        assert [r["user"] for r in fake_hl.requests_of("userFillsByTime")][-1:] == [C]  # C read over REST, not B


async def test_a_joining_addresss_history_read_holds_none_of_the_others_pushed_blocks(fake_hl: FakeHyperliquid) -> None:
    """A maker's history may take many pages, or fail: the watched ones' blocks go out meanwhile, as they did
    before it joined, and its reads are tried again."""
    builder = ScenarioBuilder(seed=4)
    builder.market_liquidation(coin="BTC", side="short", makers=[A])
    scenario = builder.build()
    client = HyperliquidClient(fake_hl.url, retry=RetryPolicy(attempts=1))
    async with ws_source(client, [A], url=fake_hl.feeds.public_url, quiet=0.01) as source:
        await source.poll(_now())  # starts the feed
        await wait_until(lambda: [c.users for c in fake_hl.feeds.live("public")] == [{A}])
        while source._unfilled:  # the connect's gap-fill of A
            await source.poll(_now())
        fake_hl.fail_next(Fault.http(500), times=1000, match=lambda body: body.get("user") == C)
        await source.follow([A, C])
        await wait_until(lambda: [c.users for c in fake_hl.feeds.live("public")] == [{A, C}])
        await fake_hl.feeds.push([(A, fill) for fill in scenario.fills[A]])
        (event,) = await _poll_until_events(source)
        assert isinstance(event, LiquidationEvent) and event.tx_hash == scenario.liquidations[0].tx_hash
        tries = [r for r in fake_hl.requests_of("userFillsByTime") if r["user"] == C]
        assert 1 <= len(tries) < source.max_hold_polls  # out while C's reads still fail, not once it was given up


async def test_a_joining_addresss_long_history_is_read_a_page_a_poll_and_checkpointed_once_read(
    fake_hl: FakeHyperliquid, monkeypatch: pytest.MonkeyPatch
) -> None:
    long_history(fake_hl, monkeypatch, C, D, trades=7)
    client = HyperliquidClient(fake_hl.url)
    # No WebSocket to connect to: only the REST reads of C's history are under test (no snapshot, no gap-fill).
    async with ws_source(client, [A], url="ws://127.0.0.1:1/ws") as source:
        await source.follow([A, C])
        for expected_reads in range(1, 5):  # 8 fills, pages of 3, each from the last one's millisecond: 4 reads
            result = await source.poll(_now())
            assert len([r for r in fake_hl.requests_of("userFillsByTime") if r["user"] == C]) == expected_reads
            assert ("fills:" + C in result.checkpoint) == (expected_reads == 4)  # only once its history is read
        assert C not in source._joining
        # Its liquidation leg is held as a push would be, until a live connection shows its block complete.
        assert [address for pairs in source._pending.values() for address, _ in pairs] == [C]


async def test_a_joining_address_is_read_from_its_checkpointed_watermark_not_the_whole_lookback(
    fake_hl: FakeHyperliquid,
) -> None:
    """A maker watched before (by an earlier run, say) is read from where it was left: a cheaper, exact read."""
    client = HyperliquidClient(fake_hl.url)
    async with ws_source(client, [A], url=fake_hl.feeds.public_url) as source:
        mark = _now() - 60_000
        source.restore({"fills:" + C: str(mark), "fills:" + A: str(mark - 1)})
        assert await source.follow([A, C]) == ([C], [])  # not connected yet: the connect subscribes both

        async def both_read() -> bool:
            await source.poll(_now())
            return {r["user"] for r in fake_hl.requests_of("userFillsByTime")} >= {A, C}

        await wait_until(both_read, message="the gap-fill of A and C")
        starts = {r["user"]: r["startTime"] for r in fake_hl.requests_of("userFillsByTime")}
        assert starts == {A: mark - 1, C: mark}


def _now() -> int:
    return int(time.time() * 1000)


async def _poll_until_events(source: WsSource) -> Sequence[object]:
    for _ in range(200):
        result = await source.poll(_now())
        if result.events:
            return result.events
        await asyncio.sleep(0.01)
    raise AssertionError("no event published")
