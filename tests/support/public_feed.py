"""The public WebSocket as the ws source's tests drive it: a watchlist of a scenario's busiest makers, the producer's
environment against the fake exchange (``/ws`` beside ``/info``), and a scenario split into history and pushes."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

import pytest

from producer.client import HyperliquidClient
from producer.simulation.fake_exchange import FakeHyperliquid, running_fake
from producer.simulation.fake_feeds import Pair, blocks_of
from producer.simulation.scenarios import HLP_LIQUIDATOR, Fill, Scenario, ScenarioBuilder
from producer.sources import fills as fills_source
from producer.sources.ws import WsSource
from schemas import LiquidationEvent
from tests.helpers import REDIS_URL, start_producer, stream_events, terminate, wait_until
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
        "HL_COVERAGE": "false",  # its connection and info requests would take faults queued for the source
        "HL_COMPLETE": "false",  # the truth compared with is the watched legs' (tests/test_completion.py completes)
    }


def subscribed(fake: FakeHyperliquid, users: int) -> bool:
    return sum(len(conn.users) for conn in fake.feeds.live("public")) >= users


def split(scenario: Scenario, at: int) -> tuple[Scenario, list[list[Pair]]]:
    """The scenario's first ``at`` blocks as history the exchange already has, and the rest as blocks to push."""
    blocks = blocks_of(scenario)
    history: dict[str, list[Fill]] = {}
    for address, fill in (pair for block in blocks[:at] for pair in block):
        history.setdefault(address, []).append(fill)
    return Scenario(fills=history, trades={}, liquidations=[]), blocks[at:]


Burst = Callable[[FakeHyperliquid, list[list[Pair]]], Awaitable[None]]
"""How a test pushes the live blocks, with whatever fault it injects on the way."""


async def push_all(fake: FakeHyperliquid, blocks: list[list[Pair]]) -> None:
    await fake.feeds.burst(blocks)


async def run_ws(
    stream: str, *, burst: Burst = push_all, env: dict[str, str] | None = None, within: float = 20
) -> tuple[Scenario, list[str], str]:
    """A cascade's first blocks as history before the start, the rest pushed by ``burst`` while ``python -m
    producer`` runs with its default source, until every liquidation the watchlist sees is in the stream; returns
    the scenario, the watchlist and the producer's output."""
    scenario = cascade(40, start_ms=START_MS)
    watchlist = watched(scenario)
    want = len(visible_from(scenario, watchlist))
    history, live = split(scenario, 15)
    async with running_fake(history) as fake:
        proc = await start_producer(env={**ws_env(fake, stream, watchlist), **(env or {})})
        try:
            await wait_until(lambda: subscribed(fake, len(watchlist)), within=15, message="the producer to subscribe")
            await burst(fake, live)
            await wait_until(
                lambda: count_liquidations(stream, want), within=within, message=f"{want} liquidations in the stream"
            )
            await asyncio.sleep(0.5)  # anything published twice would have landed by now
        except BaseException:
            out, _ = await terminate(proc)
            print(out.decode())  # pytest shows it with the failure
            raise
        out, _ = await terminate(proc)
    assert proc.returncode == 0, out.decode()
    return scenario, watchlist, out.decode()


async def count_liquidations(stream: str, want: int) -> bool:
    return sum(isinstance(e, LiquidationEvent) for e in await stream_events(stream)) >= want


async def assert_published_once(stream: str, scenario: Scenario, watchlist: Sequence[str]) -> None:
    """Every liquidation and ADL fill the watchlist sees, once, with the watched legs' exact figures."""
    events = await stream_events(stream)
    assert_matches_truth(events, visible_from(scenario, watchlist), adl_truth(scenario, watchlist))


@asynccontextmanager
async def ws_source(client: HyperliquidClient, watchlist: Sequence[str], **settings: Any) -> AsyncIterator[WsSource]:
    """``async with ws_source(client, [address], url=...) as source:`` a ws source reading every fill of its
    addresses' history, polled by the test; closed with its client on exit."""
    source = WsSource(client, watchlist, lookback_ms=10**12, **settings)
    try:
        yield source
    finally:
        source.close()
        await client.close()


def long_history(fake: FakeHyperliquid, monkeypatch: pytest.MonkeyPatch, maker: str, taker: str, trades: int) -> None:
    """``maker``'s ``trades`` ordinary fills then a liquidation leg, served in pages of 3 (the exchange's 2,000,
    scaled down): a history that takes several reads."""
    builder = ScenarioBuilder(seed=trades)
    for _ in range(trades):
        builder.book_trade("ETH", maker=maker, taker=taker, taker_side="B")
    builder.market_liquidation(coin="ETH", side="long", makers=[maker])
    fake.load(builder.build())
    fake.max_fills_per_answer = 3
    monkeypatch.setattr(fills_source, "MAX_FILLS_PER_ANSWER", 3)
