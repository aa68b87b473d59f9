"""Coverage, measured live: the producer follows every perp coin's trades and says what share of the market
liquidations its watchlist can see.

The pure parts (which coins, what the log line says, the gauges) are tested directly; the last test replays the
simulated market through the fake exchange into a running producer and checks its gauges against the market's
truth (``pytest -s`` prints the figures).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace
from decimal import Decimal

import msgspec
import pytest
from prometheus_client import CollectorRegistry

from plumbing.errors import ConfigError
from producer.client import ClientStats, HyperliquidClient, PerpAsset, PerpMeta, RetryPolicy
from producer.config import load_config
from producer.coverage import MakerRanking
from producer.coverage_watch import (
    MAX_COINS,
    SUBSCRIBE_INTERVAL,
    CoverageWatch,
    build_coverage,
    coverage_line,
    followed,
    least_covered,
    perp_coins,
    trades_settings,
)
from producer.errors import MalformedResponse
from producer.exchange_types import Trade
from producer.feed_messages import Trades
from producer.metrics import ProducerMetrics
from producer.simulation.fake_exchange import SERVER_ERROR, FakeHyperliquid, Fault
from producer.simulation.fake_feeds import FakeFeeds
from producer.simulation.market import MarketSpec, build_market
from producer.simulation.market_replay import MarketReplay
from producer.simulation.scenarios import HLP_LIQUIDATOR
from producer.websocket import WebSocketFeed, subscribe_wait
from tests.helpers import config_for, make_producer, wait_until

MAKER_A = "0x" + "a" * 40
MAKER_B = "0x" + "b" * 40
MAKER_C = "0x" + "c" * 40
TAKER = "0x" + "f" * 40


def trade(coin: str, maker: str, px: str, sz: str, tid: int, time: int = 1_760_130_000_000) -> Trade:
    """A trade ``maker`` made: the taker bought (``B``), so the maker is the seller."""
    return Trade(coin=coin, side="B", px=px, sz=sz, time=time, hash="0x" + "0" * 64, tid=tid, users=(TAKER, maker))


def meta(*names: str, delisted: tuple[str, ...] = ()) -> PerpMeta:
    return PerpMeta([PerpAsset(name, name in delisted) for name in names])


# ---------------------------------------------------------------------------------------------- which coins


def test_every_listed_coin_is_followed_main_dex_first_without_delisted_or_repeated_ones() -> None:
    main = meta("BTC", "ETH", "LUNA", delisted=("LUNA",))
    dexes = {"xyz": meta("xyz:CRWV", "xyz:NVDA"), "flx": meta("flx:TSLA", "xyz:CRWV")}
    assert perp_coins(main, dexes) == ["BTC", "ETH", "xyz:CRWV", "xyz:NVDA", "flx:TSLA"]


def test_the_subscription_limit_leaves_room_for_the_ws_sources_users_and_names_what_it_leaves_out() -> None:
    coins = [f"C{i}" for i in range(1200)]
    kept, left_out = followed(coins)
    assert len(kept) == MAX_COINS == 990 and kept == coins[:990] and left_out == coins[990:]
    assert followed(["BTC"]) == (["BTC"], [])


def test_the_trades_feed_paces_its_subscriptions_under_the_exchanges_message_limit() -> None:
    settings = trades_settings("wss://api.hyperliquid.xyz/ws", ["BTC", "ETH"])
    assert [s.coin for s in settings.subscriptions] == ["BTC", "ETH"]
    assert all(s.type == "trades" for s in settings.subscriptions)
    assert 60 / settings.subscribe_interval <= 1000  # 2,000 messages a minute per IP: at most half of it
    assert subscribe_wait(10.0, None, SUBSCRIBE_INTERVAL) == 0.0  # the first goes at once
    assert subscribe_wait(10.0, 10.0, 0.5) == 0.5 and subscribe_wait(10.6, 10.0, 0.5) == 0.0
    assert subscribe_wait(10.0, 10.0, 0.0) == 0.0  # unpaced: all at once
    with pytest.raises(ConfigError, match="subscribe interval"):
        replace(settings, subscribe_interval=-1).check()


async def test_paced_subscriptions_all_arrive_and_trades_flow_meanwhile() -> None:
    coins = [f"C{i}" for i in range(8)]
    async with FakeFeeds() as fake:
        feed = WebSocketFeed(trades_settings(fake.public_url, coins, subscribe_interval=0.02))
        got: list[Trade] = []

        async def read() -> None:
            async for event in feed.events():
                if isinstance(event, Trades):
                    got.extend(event.data)

        reader = asyncio.create_task(read())
        try:
            await wait_until(lambda: bool(fake.live("public")) and "C0" in fake.live("public")[0].coins)
            await wait_until(lambda: fake.live("public")[0].coins == set(coins), message="every subscription")
            await fake.push_trades("C7", [msgspec.to_builtins(trade("C7", MAKER_A, "1.0", "2.0", tid=1))])
            await wait_until(lambda: len(got) == 1, message="the pushed trade")
        finally:
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)
    assert [r["subscription"]["coin"] for r in fake.received if r.get("method") == "subscribe"] == coins


# ---------------------------------------------------------------------------------------------- what is said


def ranked() -> MakerRanking:
    """BTC: A made $600 of $1,000, B $400; ETH: C made all $300."""
    ranking = MakerRanking()
    ranking.add_many(
        [
            trade("BTC", MAKER_A, "100.0", "6.0", tid=1),
            trade("BTC", MAKER_B, "100.0", "4.0", tid=2),
            trade("ETH", MAKER_C, "10.0", "30.0", tid=3),
        ]
    )
    return ranking


def test_the_least_covered_coins_are_those_where_the_most_usd_is_missed() -> None:
    coverage = ranked().coverage([MAKER_A])
    assert [(coin, share.total_usd - share.watched_usd) for coin, share in least_covered(coverage)] == [
        ("BTC", Decimal(400)),
        ("ETH", Decimal(300)),
    ]
    assert least_covered(ranked().coverage([MAKER_A, MAKER_B, MAKER_C])) == []  # nothing missed, nothing named


def test_the_log_line_gives_the_share_the_coins_missed_most_and_the_makers_to_watch_next() -> None:
    ranking = ranked()
    line = coverage_line(ranking.coverage([MAKER_A]), ranking, [MAKER_A], followed_coins=4)
    print(line)
    assert "made 46.2% of maker volume (33.3% of trades)" in line  # 600 of 1,300 USD, 1 of 3 trades
    assert "3 trades, $1.3k by 3 makers on 2/4 coins" in line
    assert "least covered: BTC 60.0% ($400 missed), ETH 0.0% ($300 missed)" in line
    assert f"biggest unwatched makers: {MAKER_B} 30.8%, {MAKER_C} 23.1%" in line
    assert MAKER_A not in line.split("unwatched")[1]
    assert coverage_line(MakerRanking().coverage([MAKER_A]), MakerRanking(), [MAKER_A], followed_coins=4) == (
        "coverage: no trades yet on the 4 coins followed"
    )


def test_the_gauges_give_each_coins_share_and_drop_a_coin_that_left_the_window() -> None:
    metrics = ProducerMetrics(ClientStats(), CollectorRegistry())
    value = metrics.registry.get_sample_value
    ranking = ranked()
    metrics.set_coverage(ranking.coverage([MAKER_A, MAKER_C]))
    assert value("hl_producer_watch_coverage_ratio", {"coin": "BTC", "by": "usd"}) == pytest.approx(0.6)
    assert value("hl_producer_watch_coverage_ratio", {"coin": "ETH", "by": "trades"}) == 1.0
    assert value("hl_producer_watch_coverage_overall_ratio", {"by": "usd"}) == pytest.approx(900 / 1300)
    assert value("hl_producer_watch_coverage_overall_ratio", {"by": "trades"}) == pytest.approx(2 / 3)
    assert value("hl_producer_watch_coverage_window_trades") == 3
    later = MakerRanking()
    later.add(trade("BTC", MAKER_B, "100.0", "1.0", tid=9))
    metrics.set_coverage(later.coverage([MAKER_A]))
    assert value("hl_producer_watch_coverage_ratio", {"coin": "ETH", "by": "usd"}) is None
    assert value("hl_producer_watch_coverage_ratio", {"coin": "BTC", "by": "usd"}) == 0.0


# ---------------------------------------------------------------------------------------------- settings


def test_coverage_is_on_for_the_sources_that_watch_addresses_and_can_be_turned_off() -> None:
    metrics = ProducerMetrics(ClientStats(), CollectorRegistry())
    client = HyperliquidClient()
    for source in ("ws", "fills"):
        assert build_coverage(load_config(["--source", source]), client, metrics) is not None
    assert build_coverage(load_config(["--source", "trades"]), client, metrics) is None
    assert build_coverage(load_config(["--coverage", "false"]), client, metrics) is None
    assert build_coverage(load_config([], {"HL_COVERAGE": "false"}), client, metrics) is None
    assert load_config(["--coverage-every", "5"]).coverage_every == 5.0
    with pytest.raises(ConfigError, match="HL_COVERAGE_EVERY"):
        load_config([], {"HL_COVERAGE_EVERY": "0"})


# ---------------------------------------------------------------------------------------------- the exchange


async def test_the_client_lists_every_dexs_coins_as_the_exchange_serves_them(fake_hl: FakeHyperliquid) -> None:
    fake_hl.list_coins(["BTC", "ETH", "xyz:CRWV", "xyz:NVDA", "flx:TSLA"])
    async with HyperliquidClient(fake_hl.url) as client:
        dexes = await client.perp_dexs()
        assert [dex.name for dex in dexes] == ["flx", "xyz"]
        main = await client.perp_meta()
        by_dex = {dex.name: await client.perp_meta(dex.name) for dex in dexes}
        assert perp_coins(main, by_dex) == ["BTC", "ETH", "flx:TSLA", "xyz:CRWV", "xyz:NVDA"]
        fake_hl.fail_next(Fault.json({"universe": "not a list"}))
        with pytest.raises(MalformedResponse, match="meta"):
            await client.perp_meta()
    assert fake_hl.requests_of("meta")[1] == {"type": "meta", "dex": "flx"}


async def test_the_fake_lists_the_coins_it_holds_when_told_none() -> None:
    fake = FakeHyperliquid()
    fake.add_trades("BTC", [msgspec.to_builtins(trade("BTC", MAKER_A, "1.0", "1.0", tid=1))])
    fake.add_trades("xyz:CRWV", [])
    assert fake.answer({"type": "perpDexs"})[1][0] is None
    assert [d["name"] for d in fake.answer({"type": "perpDexs"})[1][1:]] == ["xyz"]
    assert [a["name"] for a in fake.answer({"type": "meta"})[1]["universe"]] == ["BTC"]
    assert fake.answer({"type": "meta", "dex": "nope"})[0] == 422


async def test_a_failed_listing_is_retried_and_the_coins_then_followed(
    fake_hl: FakeHyperliquid, caplog: pytest.LogCaptureFixture
) -> None:
    fake_hl.list_coins(["BTC", "xyz:CRWV"])
    fake_hl.fail_next(SERVER_ERROR, match=lambda body: body.get("type") == "perpDexs")
    metrics = ProducerMetrics(ClientStats(), CollectorRegistry())
    client = HyperliquidClient(fake_hl.url, retry=RetryPolicy(attempts=1))
    watch = CoverageWatch(
        client,
        [MAKER_A],
        metrics,
        feed_settings=lambda coins: trades_settings(fake_hl.feeds.public_url, coins),
        list_retry=0.01,
    )
    try:
        watch.start()
        await wait_until(
            lambda: any(c.coins == {"BTC", "xyz:CRWV"} for c in fake_hl.feeds.live("public")),
            message="both coins followed",
        )
        await fake_hl.feeds.push_trades("BTC", [msgspec.to_builtins(trade("BTC", MAKER_A, "2.0", "3.0", tid=1))])
        await wait_until(lambda: watch.ranking.maker_count == 1, message="the trade counted")
    finally:
        watch.close()
        await client.close()
    assert watch.report().overall.fraction == 1.0
    assert metrics.registry.get_sample_value("hl_producer_watch_coverage_coins") == 2
    assert "coverage: cannot list the perp coins" in caplog.text


# ---------------------------------------------------------------------------------------------- live, measured


USD_TOLERANCE = 0.05
LEG_TOLERANCE = 0.04
"""As in tests/test_market.py: a few standard deviations of the shares over the market's ~1,900 legs."""


async def test_the_producer_measures_the_watchlists_coverage_within_a_few_points_of_the_truth(
    fake_hl: FakeHyperliquid, stream: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The simulated market played into the fake exchange while the producer runs with the ws source: its gauges
    say what share of the market liquidations the watchlist took, and the market knows the real share."""
    market = build_market(MarketSpec(seed=1))
    fake_hl.list_coins(coin for coin, _ in market.spec.coins)
    watchlist = [*market.makers[:9], HLP_LIQUIDATOR]
    config = config_for(fake_hl, stream, source="ws", watchlist=tuple(watchlist), coverage=True, coverage_every=0.2)
    producer = make_producer(config)
    value = producer.metrics.registry.get_sample_value
    caplog.set_level(logging.INFO, logger="producer")
    running = asyncio.create_task(producer.run())
    try:
        coins = len(market.spec.coins)
        await wait_until(
            lambda: (
                sum(len(c.coins) for c in fake_hl.feeds.live("public")) == coins
                and sum(len(c.users) for c in fake_hl.feeds.live("public")) == len(watchlist)
            ),
            within=15,
            message="the producer to subscribe to every coin's trades and every watched address",
        )
        await MarketReplay(market, exchange=fake_hl).play()
        every = len(market.trades())
        await wait_until(
            lambda: value("hl_producer_watch_coverage_window_trades") == every,
            within=30,
            message=f"a coverage report over all {every} trades",
        )
    finally:
        producer.stop()
        await asyncio.wait_for(running, 15)
    estimate_usd = value("hl_producer_watch_coverage_overall_ratio", {"by": "usd"})
    estimate_trades = value("hl_producer_watch_coverage_overall_ratio", {"by": "trades"})
    assert estimate_usd is not None and estimate_trades is not None
    truth = market.absorbed(watchlist)
    print(
        f"\nwatching the 9 biggest makers: estimated {estimate_usd:.1%} of liquidated USD and {estimate_trades:.1%} "
        f"of legs; the market's truth {truth.usd_share:.1%} of USD and {truth.leg_share:.1%} of legs "
        f"({truth.watched_legs}/{truth.legs}), {truth.touched_share:.1%} of liquidations touched"
    )
    for coin, _ in market.spec.coins:
        in_coin = market.absorbed(watchlist, coin=coin)
        usd = value("hl_producer_watch_coverage_ratio", {"coin": coin, "by": "usd"})
        legs = value("hl_producer_watch_coverage_ratio", {"coin": coin, "by": "trades"})
        assert usd is not None and legs is not None
        print(
            f"  {coin:9} estimated {usd:6.1%} USD {legs:6.1%} legs; truth {in_coin.usd_share:6.1%} USD "
            f"{in_coin.leg_share:6.1%} legs ({in_coin.legs} legs)"
        )
    assert abs(estimate_usd - truth.usd_share) < USD_TOLERANCE
    assert abs(estimate_trades - truth.leg_share) < LEG_TOLERANCE
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("coverage: the watched")]
    assert lines and f"made {estimate_usd:.1%} of maker volume" in lines[-1]
    assert f"{every} trades" in lines[-1] and f"on {coins}/{coins} coins" in lines[-1]
    assert producer.coverage is not None
    (first_unwatched,) = [m.address for m in producer.coverage.ranking.top(11) if m.address not in watchlist][:1]
    assert first_unwatched in lines[-1] and first_unwatched in market.makers[9:20]  # a big maker, to watch next
