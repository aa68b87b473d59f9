"""The hosted source as a user runs it: ``python -m producer --source hosted`` against the fake providers, a real
Redis; and its decisions (which blocks are complete, what a reconnect missed) directly."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Any

import msgspec
import pytest

from plumbing.options import Secret
from producer.config import load_config
from producer.exchange_types import Fill
from producer.feed_messages import GoldRushLiquidationFills, HydromancerLiquidationFills
from producer.simulation.fake_feeds import FakeFeeds, blocks_of
from producer.simulation.scenarios import ADL_DIR, Scenario, ScenarioBuilder
from producer.sources.hosted import (
    HostedDialect,
    HostedSource,
    backfill_command,
    block_of,
    complete_blocks,
    feed_settings,
    gap_message,
    missed_window,
)
from producer.websocket import WebSocketFeed
from schemas import LiquidationEvent
from tests.helpers import (
    NOW_MS,
    REDIS_URL,
    ManualClock,
    free_port,
    scrape,
    start_producer,
    stream_events,
    terminate,
    wait_until,
)
from tests.support.truth import assert_node_truth, cascade

KEYS = {"hydromancer": "hydromancer-test-token", "goldrush": "goldrush-test-key"}
PATHS = {"hydromancer": "/hydromancer/ws", "goldrush": "/goldrush/ws"}


def hosted_env(fake: FakeFeeds, dialect: str, stream: str, key: str | None = None) -> dict[str, str]:
    return {
        "REDIS_URL": REDIS_URL,
        "LIQ_STREAM": stream,
        "HL_HOSTED_DIALECT": dialect,
        "HL_HOSTED_URL": fake.base_url.replace("http://", "ws://") + PATHS[dialect],
        "HL_HOSTED_KEY": key or KEYS[dialect],
        "HL_HOSTED_QUIET": "0.2",
        # Far longer than any test waits: events arrive in time only because a push wakes the loop.
        "HL_POLL_INTERVAL": "60",
    }


def subscribed(fake: FakeFeeds, dialect: str) -> bool:
    if dialect == "goldrush":
        return any(conn.liquidations for conn in fake.live("goldrush"))
    return any(conn.session is not None and conn.session.subscribed for conn in fake.live("hydromancer"))


def expected_events(scenario: Scenario) -> int:
    adl = sum(1 for fills in scenario.fills.values() for fill in fills if fill["dir"] == ADL_DIR)
    return len(scenario.liquidations) + adl


async def run_burst(dialect: str, stream: str, *, drop_after: int | None = None) -> tuple[Scenario, str, float]:
    """Start the producer on ``dialect``, push a cascade (dropping the connection after ``drop_after`` blocks), wait
    until the stream settles; the scenario, the producer's output and its gap counter."""
    scenario = cascade(40, start_ms=1_760_130_900_000)
    port = free_port()
    async with FakeFeeds() as fake:
        env = {**hosted_env(fake, dialect, stream), "METRICS_PORT": str(port)}
        proc = await start_producer("--source", "hosted", env=env)
        try:
            await wait_until(lambda: subscribed(fake, dialect), within=15, message="the producer to subscribe")
            await fake.burst(blocks_of(scenario), drop_after=drop_after)
            if drop_after is None:
                want = expected_events(scenario)
                await wait_until(lambda: _count(stream, want), within=15, message=f"{want} events in the stream")
            else:
                await wait_until(lambda: subscribed(fake, dialect), within=15, message="the producer to reconnect")
                await fake.push(blocks_of(cascade(1, seed=99, start_ms=1_760_140_000_000))[0])  # a block after it
                await asyncio.sleep(1.0)
            gap = (await scrape(port)).get("hl_producer_gap_seconds_total", 0.0)
        finally:
            out, _ = await terminate(proc)
    assert proc.returncode == 0, out.decode()
    return scenario, out.decode(), gap


async def _count(stream: str, want: int) -> bool:
    return len(await stream_events(stream)) >= want


@pytest.mark.parametrize("dialect", ["hydromancer", "goldrush"])
async def test_a_burst_is_in_the_stream_exactly_once_with_exact_figures(dialect: str, stream: str) -> None:
    scenario, out, gap = await run_burst(dialect, stream)
    await asyncio.sleep(0.5)  # anything published twice would have landed by now
    assert_node_truth(await stream_events(stream), scenario, source="hosted")
    assert gap == 0 and "may be missing" not in out


async def test_a_hydromancer_drop_mid_burst_loses_none_and_doubles_none(stream: str) -> None:
    """The session resumes and replays what was missed, overlapping what was delivered: the stream has each once."""
    scenario, out, gap = await run_burst("hydromancer", stream, drop_after=10)
    hashes = {fill["hash"] for fills in scenario.fills.values() for fill in fills}
    everything = await stream_events(stream)
    assert_node_truth([e for e in everything if e.tx_hash in hashes], scenario, source="hosted")
    assert "session resumed" in out and gap == 0 and "may be missing" not in out


async def test_a_goldrush_drop_is_logged_with_the_backfill_command_and_counted(stream: str) -> None:
    """GoldRush is live only: what it pushed while we were away is gone, and the log says how to backfill it."""
    scenario, out, gap = await run_burst("goldrush", stream, drop_after=10)
    assert gap > 0
    (line,) = [line for line in out.splitlines() if "may be missing" in line]
    assert "python -m producer --source node --node-path <archive> --node-from " in line
    assert "--node-follow false" in line
    published = [e for e in await stream_events(stream) if isinstance(e, LiquidationEvent)]
    assert 0 < len(published) < len(scenario.liquidations)


@pytest.mark.parametrize("dialect", ["hydromancer", "goldrush"])
async def test_a_refused_key_exits_1_with_one_line_and_no_key(dialect: str, stream: str) -> None:
    async with FakeFeeds() as fake:
        env = {**hosted_env(fake, dialect, stream, key="not-the-key-s3cr3t"), "LOG_LEVEL": "WARNING"}
        proc = await start_producer("--source", "hosted", env=env)
        out, _ = await asyncio.wait_for(proc.communicate(), 30)
    text = out.decode()
    assert proc.returncode == 1, text
    (line,) = text.splitlines()
    assert "refused HL_HOSTED_KEY" in line and "not-the-key-s3cr3t" not in text


async def test_without_a_key_the_hosted_source_is_a_bad_setting(stream: str) -> None:
    proc = await start_producer("--source", "hosted", env={"REDIS_URL": REDIS_URL, "LIQ_STREAM": stream})
    out, _ = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 2
    assert out.decode().splitlines() == [
        "configuration error: HL_HOSTED_KEY is not set: the hosted source needs the provider's API key, from the "
        "environment only"
    ]


def test_a_key_in_the_environment_makes_hosted_the_default_source() -> None:
    assert load_config([], {"HL_HOSTED_KEY": "k"}).source == "hosted"
    assert load_config([], {}).source == "ws"  # without a key: the public real-time source
    assert load_config(["--source", "node", "--node-path", "/"], {"HL_HOSTED_KEY": "k"}).source == "node"


def test_the_key_goes_into_the_providers_query_parameter() -> None:
    assert feed_settings("hydromancer", None, Secret("t")).url == "wss://api.hydromancer.xyz/ws?token=t"
    assert feed_settings("goldrush", None, Secret("k")).url == "wss://hypercore.goldrushdata.com/ws?key=k"
    assert feed_settings("goldrush", "ws://h/ws?v=1", Secret("k")).url == "ws://h/ws?v=1&key=k"


def test_a_block_is_complete_once_a_later_one_arrived_or_the_feed_was_quiet() -> None:
    pending: dict[int, list[Any]] = {7: [], 8: [], 9: []}
    assert complete_blocks(pending, 9, quiet=False) == [7, 8]
    assert complete_blocks(pending, 9, quiet=True) == [7, 8, 9]
    assert complete_blocks({}, None, quiet=True) == []


def test_a_block_is_named_by_hydromancers_cursor_else_by_its_time() -> None:
    assert block_of(HydromancerLiquidationFills(fills=[], cursor="758800641:1760130900000:0")) == 758800641
    assert block_of(GoldRushLiquidationFills(fills=[])) == 0


def test_what_a_reconnect_missed_depends_on_the_providers_replay() -> None:
    now = 1_760_130_900_000
    assert missed_window(resumed=True, down_for=5, now_ms=now, replay_seconds=30, silence_limit=65) is None
    assert missed_window(resumed=False, down_for=5, now_ms=now, replay_seconds=30, silence_limit=65) == (
        now - 70_000,
        now,
    )
    assert missed_window(resumed=True, down_for=40, now_ms=now, replay_seconds=30, silence_limit=65) == (
        now - 105_000,
        now - 30_000,
    )


def test_the_gap_line_spells_out_the_backfill_command_with_real_flags() -> None:
    from producer.config import build_parser

    command = backfill_command(1, 2)
    flags = command.replace("<archive>", "/a").split()[3:]
    build_parser().parse_args(flags)  # every flag of the command exists
    assert "1970-01-01T00:00:00+00:00" in gap_message("goldrush", 1, 2) and command in gap_message("goldrush", 1, 2)


def offline_source(clock: ManualClock, dialect: HostedDialect = "goldrush") -> HostedSource:
    """A source whose feed connects nowhere that answers (port 1), on a clock the test moves."""
    settings = replace(feed_settings(dialect, "ws://127.0.0.1:1/ws", Secret("t")), unhealthy_after=30)
    return HostedSource(settings, quiet=1.0, feed=WebSocketFeed(settings, clock=clock), clock=clock)


def legs(scenario: Scenario) -> list[tuple[str, Fill]]:
    """The scenario's liquidation fills as the feed decodes them."""
    pairs = [(address, fill) for block in blocks_of(scenario) for address, fill in block if fill.get("liquidation")]
    return msgspec.json.decode(msgspec.json.encode(pairs), type=list[tuple[str, Fill]])


LATER_MS = 1_760_140_000_000
"""After every block the builders make by default."""


async def test_a_goldrush_block_split_over_two_messages_is_published_whole_once_the_next_block_arrives() -> None:
    clock = ManualClock(1000.0)
    source = offline_source(clock)
    builder = ScenarioBuilder(seed=5)
    builder.market_liquidation(coin="BTC", side="long", makers=[builder.address(), builder.address()])
    first, second = legs(builder.build())[:1], legs(builder.build())[1:]
    try:
        source.take(GoldRushLiquidationFills(fills=first))
        source.take(GoldRushLiquidationFills(fills=second))
        assert (await source.poll(NOW_MS)).events == []  # the block may have more legs coming
        source.take(GoldRushLiquidationFills(fills=legs(cascade(1, seed=8, start_ms=LATER_MS))))
        (event, *_) = (await source.poll(NOW_MS)).events
        assert isinstance(event, LiquidationEvent) and event.fills == len(builder.build().liquidations[0].tids)
        assert event.source == "hosted"
    finally:
        source.close()


async def test_a_hydromancer_message_is_a_whole_block_published_as_it_arrives() -> None:
    source = offline_source(ManualClock(1000.0), "hydromancer")
    try:
        source.take(HydromancerLiquidationFills(fills=legs(cascade(1, seed=8)), cursor="11:2:0"))
        assert len((await source.poll(NOW_MS)).events) >= 1
    finally:
        source.close()


async def test_the_newest_goldrush_block_is_published_after_the_quiet_time() -> None:
    clock = ManualClock(1000.0)
    source = offline_source(clock)
    try:
        source.take(GoldRushLiquidationFills(fills=legs(cascade(1, seed=8))))
        assert (await source.poll(NOW_MS)).events == []
        clock.now += 1.0
        assert len((await source.poll(NOW_MS)).events) >= 1
    finally:
        source.close()


async def test_a_feed_disconnected_beyond_its_bound_makes_the_source_unhealthy() -> None:
    clock = ManualClock(1000.0)
    source = offline_source(clock, "hydromancer")
    try:
        assert (await source.poll(NOW_MS)).problem is None  # reconnecting is normal for a while
        clock.now += 31
        problem = (await source.poll(NOW_MS)).problem
        assert problem is not None and "hydromancer feed has been disconnected for more than 30s" in problem
    finally:
        source.close()
