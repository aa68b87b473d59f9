"""Fault scenarios for the ws source: the public WebSocket misbehaving during a burst of liquidations.

Each runs ``python -m producer`` (its default source, no key) against the fake exchange with a cascade's first blocks
as history and the rest pushed live, injects one fault on the way, and checks what a user would: every liquidation
the watchlist touched is in the stream once, with the watched legs' exact figures. Figures in RELIABILITY.md.
"""

from __future__ import annotations

import asyncio

from producer.simulation.fake_exchange import RATE_LIMITED, FakeHyperliquid
from producer.simulation.fake_feeds import Pair
from tests.helpers import free_port, healthz
from tests.support.public_feed import assert_published_once, run_ws, subscribed

FAST_HEARTBEAT = {"HL_FEED_PING_AFTER": "0.3", "HL_FEED_SILENCE_LIMIT": "1", "HL_FEED_UNHEALTHY_AFTER": "1"}
"""A dead connection noticed within a second, and reported unhealthy a second later."""


async def test_a_disconnect_mid_burst_loses_none_and_doubles_none(stream: str) -> None:
    """Blocks pushed while the connection is down reach the stream through the gap-fill, each once."""

    async def drop_mid_burst(fake: FakeHyperliquid, blocks: list[list[Pair]]) -> None:
        await fake.feeds.burst(blocks, drop_after=8)

    scenario, watchlist, out = await run_ws(stream, burst=drop_mid_burst)
    await assert_published_once(stream, scenario, watchlist)
    assert "disconnected after" in out


async def test_a_push_that_arrives_garbled_is_read_again_over_rest(stream: str) -> None:
    """The exchange has the fills; only their push was lost. Skipping the frame alone would lose them."""

    async def garble(fake: FakeHyperliquid, blocks: list[list[Pair]]) -> None:
        await fake.feeds.burst(blocks[:5])
        fake.feeds.garble_next(3)
        await fake.feeds.burst(blocks[5:])

    scenario, watchlist, out = await run_ws(stream, burst=garble)
    await assert_published_once(stream, scenario, watchlist)
    assert "skipped a frame" in out


async def test_a_stalled_connection_is_replaced_and_what_it_hid_is_gap_filled(stream: str) -> None:
    """The server stops sending without closing (a hung load balancer): silence is noticed, the connection
    replaced once the server answers again, and the blocks it never pushed are read over REST."""

    async def stall(fake: FakeHyperliquid, blocks: list[list[Pair]]) -> None:
        await fake.feeds.burst(blocks[:8])
        fake.feeds.stall()
        await fake.feeds.burst(blocks[8:])
        await asyncio.sleep(2.5)  # beyond the silence limit: the producer gives up on the connection
        fake.feeds.stall(False)

    scenario, watchlist, out = await run_ws(stream, burst=stall, env=FAST_HEARTBEAT)
    await assert_published_once(stream, scenario, watchlist)
    assert "silent for" in out


async def test_rate_limited_gap_fills_delay_the_events_and_lose_none(stream: str) -> None:
    """A reconnect's gap-fill meets 429s: the client backs off and retries; the held blocks wait, then go out."""

    async def drop_into_429s(fake: FakeHyperliquid, blocks: list[list[Pair]]) -> None:
        await fake.feeds.burst(blocks[:8])
        fake.fail_next(RATE_LIMITED, times=3, match=lambda body: body.get("type") == "userFillsByTime")
        await fake.feeds.burst(blocks[8:], drop_after=0)

    scenario, watchlist, out = await run_ws(stream, burst=drop_into_429s)
    await assert_published_once(stream, scenario, watchlist)
    assert "429" in out


async def test_healthz_fails_while_the_feed_stays_down_and_recovers_with_nothing_lost(stream: str) -> None:
    port = free_port()
    health: list[int] = []

    async def refuse_for_a_while(fake: FakeHyperliquid, blocks: list[list[Pair]]) -> None:
        await fake.feeds.burst(blocks[:8])
        fake.feeds.refuse(seconds=3.0)
        await fake.feeds.burst(blocks[8:], drop_after=0)
        health.append(await healthz(port))
        await asyncio.sleep(2.0)  # down beyond HL_FEED_UNHEALTHY_AFTER
        health.append(await healthz(port))
        await _wait_for_resubscription(fake)
        health.append(await _healthz_once_recovered(port))

    env = {**FAST_HEARTBEAT, "METRICS_PORT": str(port)}
    scenario, watchlist, out = await run_ws(stream, burst=refuse_for_a_while, env=env, within=30)
    await assert_published_once(stream, scenario, watchlist)
    assert "upgrade refused (HTTP 503)" in out
    assert health == [200, 503, 200]


async def _healthz_once_recovered(port: int, within: float = 10.0) -> int:
    """The health check's answer once the source's next poll after the reconnect has run (its gap-fill reads
    every address first, which on a loaded machine takes more than a moment); the last answer if it never did."""
    status = await healthz(port)
    deadline = asyncio.get_running_loop().time() + within
    while status != 200 and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.1)
        status = await healthz(port)
    return status


async def _wait_for_resubscription(fake: FakeHyperliquid) -> None:
    for _ in range(200):
        if subscribed(fake, 1):
            return
        await asyncio.sleep(0.05)
