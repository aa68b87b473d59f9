"""The producer's poll loop, in process, against the fake exchange and a real Redis."""

from __future__ import annotations

import asyncio
import logging
from decimal import Decimal

import pytest
import redis.asyncio as aioredis

from producer.config import LIQUIDATOR_VAULTS
from producer.service import RedisAccessDenied
from producer.simulation.fake_exchange import SERVER_ERROR, TRUNCATED_JSON, FakeHyperliquid
from producer.simulation.scenarios import (
    DEMO_BUSY,
    DEMO_WATCHLIST,
    HLP_LIQUIDATOR,
    Scenario,
    ScenarioBuilder,
    demo_scenario,
)
from schemas import LiquidationEvent
from tests.helpers import RedisServer, config_for, make_producer, stream_events, stream_liquidations
from tests.support.truth import adl_truth, assert_matches_truth, visible_from


@pytest.fixture
async def scenario(fake_hl: FakeHyperliquid) -> Scenario:
    built = demo_scenario(seed=11)
    fake_hl.load(built)
    return built


async def test_one_poll_publishes_every_visible_liquidation_once(
    fake_hl: FakeHyperliquid, scenario: Scenario, stream: str
) -> None:
    producer = make_producer(config_for(fake_hl, stream))
    try:
        summary = await producer.poll_once()
    finally:
        await producer.close()
    all_events = await stream_events(stream)
    events = [e for e in all_events if isinstance(e, LiquidationEvent)]
    truth = visible_from(scenario, DEMO_WATCHLIST)
    adl = adl_truth(scenario, DEMO_WATCHLIST)
    assert len(adl) == scenario.adl_fill_count == 3
    assert_matches_truth(all_events, truth, adl)
    assert summary.published == len(truth) + len(adl) and summary.pending == 0
    assert len(truth) < len(scenario.liquidations)  # the unwatched one is not invented
    assert [e.timestamp for e in events] == sorted(e.timestamp for e in events)
    # The busy address needed three pages, each from the last page's time, inclusive. Its fills run past every
    # liquidation, so it holds all their legs: confirming them does not read its thousands of fills again.
    requests = [r for r in fake_hl.requests_of("userFillsByTime") if r["user"] == DEMO_BUSY]
    pages = requests[:3]
    assert len(requests) == 3
    assert pages[1]["startTime"] == max(
        f["time"] for f in sorted(scenario.fills[DEMO_BUSY], key=lambda f: (f["time"], f["tid"]))[:2000]
    )


async def test_a_restarted_producer_resumes_from_its_watermarks(
    fake_hl: FakeHyperliquid, scenario: Scenario, stream: str
) -> None:
    first = make_producer(config_for(fake_hl, stream))
    await first.poll_once()
    await first.close()
    published = len(await stream_liquidations(stream))
    fake_hl.requests.clear()

    second = make_producer(config_for(fake_hl, stream))
    try:
        summary = await second.poll_once()
        assert summary.published == 0
        newest = {a: max(f["time"] for f in scenario.fills[a.lower()]) for a in DEMO_WATCHLIST}
        assert {r["user"]: r["startTime"] for r in fake_hl.requests_of("userFillsByTime")} == newest

        later = ScenarioBuilder(seed=12, start_ms=max(newest.values()) + 1000)
        new_liquidation = later.market_liquidation(coin="ETH", side="short", makers=[DEMO_WATCHLIST[0]])
        fake_hl.load(later.build())
        summary = await second.poll_once()
        assert summary.published == 1
    finally:
        await second.close()
    events = await stream_liquidations(stream)
    assert len(events) == published + 1
    assert (events[-1].tx_hash, events[-1].coin, events[-1].liquidated_user) == new_liquidation.key


async def test_two_producers_side_by_side_publish_each_liquidation_once(
    fake_hl: FakeHyperliquid, scenario: Scenario, stream: str
) -> None:
    producers = [make_producer(config_for(fake_hl, stream)) for _ in range(2)]
    try:
        summaries = await asyncio.gather(*(p.poll_once() for p in producers))
    finally:
        for p in producers:
            await p.close()
    truth = visible_from(scenario, DEMO_WATCHLIST)
    assert_matches_truth(await stream_events(stream), truth)
    expected = len(truth) + len(adl_truth(scenario, DEMO_WATCHLIST))
    assert sum(s.published for s in summaries) == expected
    assert sum(s.duplicates for s in summaries) == expected


async def test_liquidations_wait_while_a_watched_address_cannot_be_read_then_publish_whole(
    fake_hl: FakeHyperliquid, stream: str
) -> None:
    # Two watched makers absorbed one liquidation; one of them answers garbage at the poll that first sees it.
    m1, m2 = DEMO_WATCHLIST[:2]
    builder = ScenarioBuilder(seed=41)
    builder.ordinary_fills(m1, 3)
    builder.ordinary_fills(m2, 3)
    fake_hl.load(builder.build())
    producer = make_producer(config_for(fake_hl, stream, watchlist=(m1, m2)))
    try:
        await producer.poll_once()  # both read: watermarks set
        later = ScenarioBuilder(seed=42, start_ms=builder.now_ms + 1000)
        truth = later.market_liquidation(coin="ETH", side="short", makers=[m1, m2])
        fake_hl.load(later.build())
        fake_hl.fail_next(TRUNCATED_JSON, match=lambda body: body.get("user") == m2)  # malformed: not retried
        held = await producer.poll_once()
        assert held.errors == 1 and held.published == 0
        whole = await producer.poll_once()
        assert whole.published == 1
    finally:
        await producer.close()
    assert_matches_truth(await stream_events(stream), [truth])  # both legs: the size and value of both trades
    assert len(truth.tids) == 2


async def test_a_block_landing_mid_sweep_is_published_with_every_watched_leg(
    fake_hl: FakeHyperliquid, stream: str
) -> None:
    m1, m2 = DEMO_WATCHLIST[:2]
    builder = ScenarioBuilder(seed=43)
    truth = builder.market_liquidation(coin="BTC", side="long", makers=[m1, m2])
    block = builder.build()
    landed = False

    def land_when_m2_is_asked(body: dict[str, object]) -> bool:
        # m1 has been read already: the block appears between the two reads of the sweep.
        nonlocal landed
        if body.get("user") == m2 and not landed:
            fake_hl.load(block)
            landed = True
        return False

    fake_hl.fail_next(SERVER_ERROR, match=land_when_m2_is_asked)  # never fires: the match only lands the block
    producer = make_producer(config_for(fake_hl, stream, watchlist=(m1, m2)))
    try:
        summary = await producer.poll_once()
    finally:
        await producer.close()
    assert landed and summary.published == 1
    assert_matches_truth(await stream_events(stream), [truth])  # both makers' trades, not m2's alone


async def test_an_address_failing_for_too_long_no_longer_holds_the_others_back(
    fake_hl: FakeHyperliquid, scenario: Scenario, stream: str, caplog: pytest.LogCaptureFixture
) -> None:
    fake_hl.fail_next(SERVER_ERROR, times=100, match=lambda body: body.get("user") == HLP_LIQUIDATOR)
    producer = make_producer(config_for(fake_hl, stream, http_attempts=1))
    producer.source.max_hold_polls = 2  # type: ignore[attr-defined]
    try:
        for _ in range(2):
            assert (await producer.poll_once()).published == 0  # held: the vault may hold legs of any of them
        await producer.poll_once()
    finally:
        await producer.close()
    assert "publishing without it" in caplog.text
    reachable = [
        t
        for t in visible_from(scenario, DEMO_WATCHLIST)
        if t.key not in {v.key for v in visible_from(scenario, [HLP_LIQUIDATOR])}
    ]
    published = {(e.tx_hash, e.coin, e.liquidated_user) for e in await stream_liquidations(stream)}
    assert published == {t.key for t in reachable}


async def test_trades_source_publishes_the_liquidator_trades(fake_hl: FakeHyperliquid, stream: str) -> None:
    scenario = demo_scenario(seed=11)
    fake_hl.load(scenario)
    producer = make_producer(config_for(fake_hl, stream, source="trades"))
    try:
        await producer.poll_once()
        await producer.poll_once()  # the same trades again: nothing new
    finally:
        await producer.close()
    vaults = set(LIQUIDATOR_VAULTS)
    expected = sorted(
        (t["coin"], t["hash"], "long" if t["users"][0] in vaults else "short", Decimal(t["sz"]))
        for trades in scenario.trades.values()
        for t in trades[:10]
        if vaults & set(t["users"])
    )
    assert len(expected) >= 2
    events = await stream_events(stream)
    liquidations = [e for e in events if isinstance(e, LiquidationEvent)]
    assert liquidations == events, "the trades source finds no ADL"
    assert sorted((e.coin, e.tx_hash, e.liquidation_side, e.size) for e in liquidations) == expected
    assert all(e.source == "trades" and e.method == "unknown" for e in liquidations)


async def test_redis_going_away_holds_events_and_publishes_them_when_back(
    fake_hl: FakeHyperliquid, scenario: Scenario, redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    stream = "liq"
    producer = make_producer(config_for(fake_hl, stream, redis_url=redis_server.url))
    try:
        redis_server.kill()
        summary = await producer.poll_once()
        truth = visible_from(scenario, DEMO_WATCHLIST)
        expected = len(truth) + len(adl_truth(scenario, DEMO_WATCHLIST))
        assert summary.published == 0 and summary.pending == expected
        assert "Redis unreachable" in caplog.text
        again = await producer.poll_once()  # still down: the re-read adds nothing to what is held
        assert again.pending == expected

        redis_server.start()
        back = await producer.poll_once()
        assert back.published == expected and back.pending == 0
        assert "Redis is back" in caplog.text
    finally:
        await producer.close()
    assert_matches_truth(await stream_events(stream, redis_server.url), truth)


async def test_a_full_outbox_pauses_polling_instead_of_dropping(
    fake_hl: FakeHyperliquid, scenario: Scenario, redis_server: RedisServer
) -> None:
    producer = make_producer(config_for(fake_hl, "liq", redis_url=redis_server.url, max_pending=1))
    try:
        redis_server.kill()
        await producer.poll_once()
        requests = len(fake_hl.requests)
        held = len(producer.outbox)
        await producer.poll_once()
        assert len(fake_hl.requests) == requests  # did not poll
        assert len(producer.outbox) == held
    finally:
        await producer.close()


async def test_wrong_redis_credentials_are_a_clear_fatal_error(
    fake_hl: FakeHyperliquid, tmp_path: object, stream: str
) -> None:
    server = RedisServer(tmp_path, password="s3cret")  # type: ignore[arg-type]
    server.start()
    try:
        producer = make_producer(config_for(fake_hl, stream, redis_url=server.url, once=True))
        with pytest.raises(RedisAccessDenied, match="Redis refused us"):
            await producer.run()
    finally:
        server.kill()


async def test_the_interval_stretches_when_the_budget_needs_it(
    fake_hl: FakeHyperliquid, stream: str, caplog: pytest.LogCaptureFixture
) -> None:
    producer = make_producer(config_for(fake_hl, stream, poll_interval=10.0, weight_per_minute=1000))
    try:
        assert producer._interval(weight_used=100) == 10.0
        assert producer._interval(weight_used=60 * 20) == pytest.approx(72.0)
        assert "stretching the poll interval from 10.0s to 72.0s" in caplog.text
    finally:
        await producer.close()


async def test_run_stops_cleanly_when_asked(fake_hl: FakeHyperliquid, scenario: Scenario, stream: str) -> None:
    producer = make_producer(config_for(fake_hl, stream, poll_interval=3600))
    task = asyncio.create_task(producer.run())
    for _ in range(200):
        if producer.polls:
            break
        await asyncio.sleep(0.02)
    producer.stop()
    assert await asyncio.wait_for(task, 5) == 0
    assert len(await stream_liquidations(stream)) == len(visible_from(scenario, DEMO_WATCHLIST))


def test_once_fails_on_an_outage_or_an_unreachable_redis_but_not_on_a_quiet_poll() -> None:
    from producer.service import PollSummary, once_failure

    assert once_failure(PollSummary(), redis_reachable=True) is None
    assert once_failure(PollSummary(errors=3), redis_reachable=True) is None  # some reads failed, not all
    outage = once_failure(PollSummary(errors=9, unreachable=True), redis_reachable=True)
    assert outage is not None and "all 9 reads of the poll failed" in outage and "\n" not in outage
    assert once_failure(PollSummary(), redis_reachable=False) == (
        "Redis was unreachable: the poll's positions were not recorded; exiting 1"
    )


@pytest.mark.parametrize("refusal", ["oom", "readonly"])
async def test_redis_refusing_writes_holds_events_like_an_outage_and_publishes_each_once(
    fake_hl: FakeHyperliquid,
    scenario: Scenario,
    redis_server: RedisServer,
    caplog: pytest.LogCaptureFixture,
    refusal: str,
) -> None:
    """Full under ``noeviction`` (OOM) or demoted to replica by a failover (READONLY): Redis answers but takes no
    write. That is an outage to wait out, not a crash: nothing is lost, and nothing doubles once it takes writes."""
    caplog.set_level(logging.INFO)
    admin = aioredis.Redis.from_url(redis_server.url)
    producer = make_producer(config_for(fake_hl, "liq", redis_url=redis_server.url))
    try:
        if refusal == "oom":
            await admin.config_set("maxmemory", 1)  # anything in use is over it: every write is refused
        else:
            await admin.execute_command("REPLICAOF", "127.0.0.1", "1")  # type: ignore[no-untyped-call]  # no such master
        truth = visible_from(scenario, DEMO_WATCHLIST)
        expected = len(truth) + len(adl_truth(scenario, DEMO_WATCHLIST))
        held = await producer.poll_once()
        assert held.published == 0 and held.pending == expected
        assert (await producer.poll_once()).pending == expected
        assert caplog.text.count("refusing writes") == 1, "one line per outage, not one per poll"

        if refusal == "oom":
            await admin.config_set("maxmemory", 0)
        else:
            await admin.execute_command("REPLICAOF", "NO", "ONE")  # type: ignore[no-untyped-call]
        back = await producer.poll_once()
        assert back.published == expected and back.pending == 0
        assert "Redis is back" in caplog.text
    finally:
        await producer.close()
        await admin.aclose()
    assert_matches_truth(await stream_events("liq", redis_server.url), truth)
