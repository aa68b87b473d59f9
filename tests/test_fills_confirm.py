"""The fills source's hold-and-confirm rules, on a scripted client: no HTTP, every read decided by the test.

A liquidation absorbed by two watched makers is the case that matters: publishing it from one maker's leg would
be for good (a published event is never amended), so the source publishes only what a second sweep confirmed,
and holds liquidations back while a watched address cannot be read.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, cast

import msgspec

from producer.client import MAX_FILLS_PER_ANSWER, FillsPage, HyperliquidClient
from producer.errors import ExchangeUnavailable
from producer.exchange_types import Fill
from producer.simulation.scenarios import ExpectedLiquidation, ScenarioBuilder
from producer.sources import FillsSource
from schemas import Event, LiquidationEvent

LOOKBACK_MS = 3_600_000


class ScriptedClient:
    """Stands in for :class:`HyperliquidClient`'s one call the fills source makes, with each address's reads
    scripted: down (every read fails) or not written yet (the next few reads find nothing)."""

    def __init__(self, fills: dict[str, list[dict[str, Any]]]) -> None:
        self.fills = {address: msgspec.convert(items, list[Fill]) for address, items in fills.items()}
        self.down: set[str] = set()
        self.unwritten: dict[str, int] = {}
        """Per address, reads still to come that find none of its fills (a block not yet written there)."""
        self.reads: list[str] = []

    async def user_fills_by_time(self, user: str, start_time: int, end_time: int | None = None) -> FillsPage:
        self.reads.append(user)
        if user in self.down:
            raise ExchangeUnavailable(f"{user}: 503 Service Unavailable")
        if self.unwritten.get(user, 0) > 0:
            self.unwritten[user] -= 1
            return FillsPage([], 0)
        page = [fill for fill in self.fills.get(user, []) if fill.time >= start_time][:MAX_FILLS_PER_ANSWER]
        return FillsPage(page, len(page))


def two_maker_liquidation() -> tuple[ScriptedClient, list[str], ExpectedLiquidation]:
    """One market liquidation absorbed by two makers, both watched: each holds one of its two legs."""
    builder = ScenarioBuilder(seed=11)
    makers = [builder.address(), builder.address()]
    liquidation = builder.market_liquidation(coin="BTC", side="long", makers=makers)
    scenario = builder.build()
    return ScriptedClient({m: scenario.fills[m] for m in makers}), makers, liquidation


def source_for(client: ScriptedClient, watchlist: list[str], *, max_hold_polls: int = 6) -> FillsSource:
    return FillsSource(
        cast(HyperliquidClient, client), watchlist, lookback_ms=LOOKBACK_MS, max_hold_polls=max_hold_polls
    )


def liquidations(events: Iterable[Event]) -> list[LiquidationEvent]:
    return [event for event in events if isinstance(event, LiquidationEvent)]


def assert_whole(events: list[Event], truth: ExpectedLiquidation) -> None:
    (event,) = liquidations(events)
    assert (event.tx_hash, event.coin, event.liquidated_user) == truth.key
    assert set(event.tids) == truth.tids and event.size == truth.size and event.value_usd == truth.value_usd


async def test_a_liquidation_whose_block_had_landed_before_the_sweep_is_published_without_a_second_read() -> None:
    client, makers, truth = two_maker_liquidation()
    source = source_for(client, makers)
    now = truth.timestamp + 10_000

    result = await source.poll(now)

    assert_whole(result.events, truth)
    # The first read returned a leg, so the block had landed: every address read from then on holds its legs.
    assert client.reads == makers
    client.reads.clear()
    assert (await source.poll(now + 1_000)).events == []  # handed over once: a re-read returns it no more
    assert client.reads == makers  # nothing new, so one sweep


async def test_a_liquidation_landing_mid_sweep_is_published_with_both_legs() -> None:
    client, makers, truth = two_maker_liquidation()
    client.unwritten[makers[0]] = 1  # read before the block reached it: the first sweep sees the second leg only
    source = source_for(client, makers)

    result = await source.poll(truth.timestamp + 10_000)

    assert_whole(result.events, truth)
    assert client.reads == [*makers, makers[0]]  # only the maker read before the block landed is read again


async def test_only_the_addresses_read_before_the_block_and_not_past_it_are_read_again() -> None:
    """Watched: maker 1 (read before the block landed), a busy address (read before it was seen too, but its read
    returned a newer fill, so a later block had landed: it holds every fill up to then), maker 2 (where the block
    is first seen) and two quiet addresses read after it. Only maker 1 may lack a leg."""
    builder = ScenarioBuilder(seed=12)
    m1, busy, quiet_1, m2, quiet_2 = (builder.address() for _ in range(5))
    truth = builder.market_liquidation(coin="ETH", side="short", makers=[m1, m2])
    builder.ordinary_fills(busy, 2, time_ms=truth.timestamp + 5)
    builder.ordinary_fills(quiet_1, 1, time_ms=truth.timestamp - 5_000)
    scenario = builder.build()
    client = ScriptedClient({a: scenario.fills.get(a, []) for a in (m1, busy, quiet_1, m2, quiet_2)})
    client.unwritten[m1] = 1
    watchlist = [m1, busy, m2, quiet_1, quiet_2]
    source = source_for(client, watchlist)

    result = await source.poll(truth.timestamp + 10_000)

    assert_whole(result.events, truth)
    assert client.reads == [*watchlist, m1]


async def test_a_restart_while_a_liquidation_waits_reads_its_legs_again() -> None:
    """The held legs live in memory; the checkpoint stays before them, so a restarted producer finds them all,
    though the readable maker was read past them (it traded after the liquidation)."""
    builder = ScenarioBuilder(seed=13)
    makers = [builder.address(), builder.address()]
    truth = builder.market_liquidation(coin="BTC", side="long", makers=makers)
    builder.ordinary_fills(makers[1], 2, time_ms=truth.timestamp + 1_000)
    scenario = builder.build()
    client = ScriptedClient({m: scenario.fills[m] for m in makers})
    client.down.add(makers[0])
    source = source_for(client, makers)
    held = await source.poll(truth.timestamp + 10_000)
    assert held.events == []
    # Held back to the unreadable maker's lookback, not before it: a restart does not read all history again.
    assert truth.timestamp + 10_000 - LOOKBACK_MS <= int(held.checkpoint[f"fills:{makers[1]}"]) <= truth.timestamp

    client.down.clear()
    restarted = source_for(client, makers)
    restarted.restore(held.checkpoint)
    assert_whole((await restarted.poll(truth.timestamp + 11_000)).events, truth)


async def test_a_liquidation_waits_while_one_of_its_makers_cannot_be_read_then_publishes_whole() -> None:
    client, makers, truth = two_maker_liquidation()
    client.down.add(makers[0])
    source = source_for(client, makers)
    now = truth.timestamp + 10_000

    for i in range(3):  # more than one poll: a second sighting of the one readable leg must not confirm it
        held = await source.poll(now + i)
        assert held.events == [] and held.errors and not held.unreachable
        # The readable maker's position stays before the liquidation, so it is read again once the other answers.
        assert int(held.checkpoint[f"fills:{makers[1]}"]) <= truth.timestamp

    client.down.clear()
    assert_whole((await source.poll(now + 1_000)).events, truth)


async def test_after_too_many_polls_without_an_address_the_others_are_published_without_it() -> None:
    client, makers, truth = two_maker_liquidation()
    client.down.add(makers[0])
    source = source_for(client, makers, max_hold_polls=2)
    now = truth.timestamp + 10_000

    assert (await source.poll(now)).events == []
    assert (await source.poll(now + 1)).events == []
    (partial,) = liquidations((await source.poll(now + 2)).events)

    reachable_leg = {fill.tid for fill in client.fills[makers[1]] if fill.liquidation is not None}
    assert set(partial.tids) == reachable_leg and len(reachable_leg) < len(truth.tids)


async def test_an_outage_of_every_address_uses_up_no_addresss_allowance() -> None:
    client, makers, truth = two_maker_liquidation()
    client.down.update(makers)
    source = source_for(client, makers, max_hold_polls=2)
    now = truth.timestamp + 10_000

    for i in range(5):
        outage = await source.poll(now + i)
        assert outage.unreachable and outage.events == []

    client.down = {makers[0]}  # the exchange is back, but one maker still fails: its allowance is untouched
    assert (await source.poll(now + 10)).events == []
    client.down.clear()
    assert_whole((await source.poll(now + 20)).events, truth)
