"""A ws producer that follows the makers while a simulated market is played into a fresh fake exchange.

The producer starts on the pinned addresses, the first part of the market is played so the ranking has makers to
rank, the adaptive watchlist fills its slots, then the rest is played (:meth:`MarketRun.play`); the test checks
what the stream holds against the market's truth, and what the exchange would have charged (``run.fake.charges``).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass

from producer.service import Producer
from producer.simulation.fake_exchange import FakeHyperliquid
from producer.simulation.market import Market, MarketLiquidation
from producer.simulation.market_replay import MarketReplay
from tests.helpers import config_for, make_producer, wait_until

LEARNING = 5
"""The replay's first 1/LEARNING, played before the rest so the ranking has something to rank."""

Key = tuple[str, str, str]
"""(tx_hash, coin, liquidated user): a liquidation's identity, as the truth and the events both give it."""


def key_of(tx_hash: str, coin: str, user: str) -> Key:
    return (tx_hash, coin, user.lower())


def touched(market: Market, watched: Iterable[str]) -> dict[Key, MarketLiquidation]:
    """The liquidations a leg of which ``watched`` took: what a producer watching them can publish."""
    addresses = {address.lower() for address in watched}
    return {
        key_of(liquidation.truth.tx_hash, liquidation.truth.coin, liquidation.truth.liquidated_user): liquidation
        for liquidation in market.liquidations
        if any(leg.counterparty in addresses for leg in liquidation.legs)
    }


@dataclass
class MarketRun:
    market: Market
    fake: FakeHyperliquid
    producer: Producer
    replay: MarketReplay

    def users(self) -> set[str]:
        """The addresses followed right now."""
        return set().union(*(c.users for c in self.fake.feeds.live("public")))

    def subscribed(self) -> set[str]:
        """Every address the producer ever subscribed to."""
        return {
            r["subscription"]["user"]
            for r in self.fake.feeds.received
            if isinstance(r, dict) and r.get("method") == "subscribe" and r["subscription"].get("type") == "userFills"
        }

    async def play(self) -> None:
        """The learning part, the makers' slots filled, then the rest; returns once every trade is ranked."""
        await self.replay.play(len(self.replay.blocks) // LEARNING)
        if self.producer.adaptive is not None:
            slots = self.producer.config.adaptive_slots
            await wait_until(lambda: len(self.users()) == slots, within=15, message="the makers' slots filled")
        await self.replay.play()
        every = len(self.market.trades())
        value = self.producer.metrics.registry.get_sample_value
        await wait_until(
            lambda: value("hl_producer_watch_coverage_trades_total") == every, within=30, message="every trade ranked"
        )


@asynccontextmanager
async def market_producer(
    market: Market, stream: str, *, pinned: Sequence[str], budget: bool = False, **overrides: object
) -> AsyncIterator[MarketRun]:
    """``async with market_producer(market, stream, pinned=...) as run:`` a running producer following the pinned
    addresses and every coin's trades, before the market is played (``await run.play()``); stopped on exit.
    ``budget`` keeps the producer's client to its weight budget; ``overrides`` are the producer's settings (the ws
    source with coverage, the adaptive watchlist and completion by default)."""
    fake = FakeHyperliquid()
    await fake.start()
    fake.list_coins(coin for coin, _ in market.spec.coins)
    settings: dict[str, object] = dict(
        source="ws",
        watchlist=tuple(pinned),
        coverage=True,
        coverage_every=0.5,
        adaptive=True,
        adaptive_every=0.1,
        complete=True,
    )
    settings.update(overrides)
    producer = make_producer(config_for(fake, stream, **settings), budget=budget)
    running = asyncio.create_task(producer.run())
    run = MarketRun(market, fake, producer, MarketReplay(market, exchange=fake))
    try:
        await wait_until(
            lambda: (
                sum(len(c.coins) for c in fake.feeds.live("public")) == len(market.spec.coins)
                and run.users() == {address.lower() for address in pinned}
            ),
            within=15,
            message="every coin's trades and the pinned addresses followed",
        )
        yield run
    finally:
        producer.stop()
        await asyncio.wait_for(running, 15)
        await fake.stop()
