"""The REST tier of the adaptive watchlist: makers beyond the WebSocket's slots, read in turn within the budget.

The order and the room are tested on a fake clock; then the ws source reading a polled maker from the fake
exchange: its liquidations published once, its position checkpointed, its reads never taking the weight a
completion needs nor delaying a pushed event, and a failed read made good at the next turn.
"""

from __future__ import annotations

import asyncio
import time
from decimal import Decimal

import pytest

from producer.client import HyperliquidClient
from producer.completion import Completer
from producer.ratelimit import BASE_WEIGHT, WeightBudget
from producer.simulation.fake_exchange import FakeHyperliquid, Fault
from producer.simulation.scenarios import ScenarioBuilder
from producer.sources.polled_makers import ROOM, PolledMakers, has_room, room_in
from schemas import LiquidationEvent
from tests.helpers import ManualClock, wait_until
from tests.support.public_feed import long_history, ws_source

A, B, C, D = ("0x" + letter * 40 for letter in "abcd")


# ---------------------------------------------------------------------------------------------- whose turn


def test_the_maker_never_read_goes_first_then_the_one_read_longest_ago_each_at_most_every_interval() -> None:
    clock = ManualClock(1000.0)
    makers = PolledMakers(10.0, clock=clock)
    assert makers.due_in() is None and makers.oldest_read_age() == 0.0  # nothing polled
    assert makers.set([A, B.upper().replace("0X", "0x")]) == ([A, B], [])
    assert makers.due() == [A, B] and makers.due_in() == 0.0
    makers.read(B)
    clock.now += 3
    makers.read(A)
    assert makers.due() == [] and makers.due_in() == 7.0  # B, read first, is due first
    assert makers.oldest_read_age() == 3.0
    assert makers.set([A, B, C]) == ([C], [])
    assert makers.due() == [C]  # a joining maker is read at once: its first read is its gap-fill
    clock.now += 8
    assert makers.due() == [C, B]
    assert makers.oldest_read_age() == 11.0
    assert makers.set([C]) == ([], [A, B])
    makers.read(A)  # a late answer for one that left is not remembered
    assert makers.due() == [C] and A not in makers.last_read


def test_a_polled_read_waits_for_room_beyond_a_completion_and_says_how_long() -> None:
    """In the bucket; the rolling minute's share is in the next test."""
    clock = ManualClock(1000.0)
    budget = WeightBudget(1150, clock=clock)
    assert has_room(budget) and room_in(budget) == 0.0 and has_room(None)
    budget.reserve(budget.capacity - ROOM + 1)  # one short of a read and a completion after it
    assert not has_room(budget)
    assert room_in(budget) == pytest.approx(1 / budget.per_second)
    clock.now += room_in(budget) * 1.001
    assert has_room(budget)


def test_the_minute_holds_a_polled_read_back_until_its_oldest_weight_leaves_it() -> None:
    clock = ManualClock(1000.0)
    budget = WeightBudget(1150, clock=clock)
    for _ in range(55):  # 55 s of weight at the bucket's refill rate: the bucket stays full, the minute fills
        budget.charge(19)
        clock.now += 1.0
    assert budget.available > ROOM  # the bucket has refilled: the minute is what holds the read back
    assert not has_room(budget)
    wait = room_in(budget)
    assert 0 < wait < 61
    clock.now += wait
    assert has_room(budget)


def test_the_tier_leaves_a_quarter_of_the_minute_to_the_completions_which_read_after_it_in_a_poll() -> None:
    clock = ManualClock(1000.0)
    budget = WeightBudget(1150, clock=clock)
    completer = Completer(HyperliquidClient("http://127.0.0.1:1", budget=budget))
    for _ in range(36):  # 36 s of polled reads at the bucket's refill rate: 684 weight, past the tier's share
        budget.charge(19)
        clock.now += 1.0
    assert budget.available > ROOM  # the bucket is full: the minute's share is what stops the tier
    assert not has_room(budget)
    assert completer._has_room()  # a completion still goes


def test_a_small_budget_whose_bucket_holds_less_than_the_room_still_reads_when_full() -> None:
    clock = ManualClock(1000.0)
    budget = WeightBudget(240, clock=clock)  # a bucket of 40: two base weights
    assert budget.capacity == 2 * BASE_WEIGHT < ROOM
    assert has_room(budget)
    budget.reserve(1)
    assert not has_room(budget) and room_in(budget) == pytest.approx(1 / budget.per_second)


# ---------------------------------------------------------------------------------------------- the source reading


def _now() -> int:
    return int(time.time() * 1000)


def _reads(fake: FakeHyperliquid, address: str) -> list[int]:
    return [r["startTime"] for r in fake.requests_of("userFillsByTime") if r["user"] == address]


async def test_a_polled_makers_liquidation_is_published_once_and_its_position_checkpointed(
    fake_hl: FakeHyperliquid,
) -> None:
    builder = ScenarioBuilder(seed=5)
    builder.market_liquidation(coin="ETH", side="long", makers=[C, D], sizes=["1.5", "2.25"])
    scenario = builder.build()
    fake_hl.load(scenario)
    (truth,) = scenario.liquidations
    client = HyperliquidClient(fake_hl.url)
    async with ws_source(client, [A], url=fake_hl.feeds.public_url, polled_every=0.05) as source:
        await source.follow([A], [C])
        result = await source.poll(_now())
        (event,) = [e for e in result.events if isinstance(e, LiquidationEvent)]
        # C's leg only, from REST: partial (the completion brings the rest), named as the REST read it came from.
        assert (event.tx_hash, event.source, event.complete, Decimal(event.size)) == (
            truth.tx_hash,
            "fills",
            False,
            Decimal("1.5"),
        )
        mark = int(result.checkpoint["fills:" + C])
        assert mark == max(f["time"] for f in scenario.fills[C])

        async def read_again() -> bool:
            return not (await source.poll(_now())).events and len(_reads(fake_hl, C)) >= 2

        await wait_until(read_again, message="C read a second time, publishing nothing new")
        assert _reads(fake_hl, C)[1] == mark  # from where the first read left it
        assert D not in {r["user"] for r in fake_hl.requests_of("userFillsByTime")}  # never watched


async def test_a_failed_polled_read_loses_nothing_the_next_turn_reads_from_the_same_place(
    fake_hl: FakeHyperliquid,
) -> None:
    builder = ScenarioBuilder(seed=6)
    builder.market_liquidation(coin="BTC", side="short", makers=[C])
    scenario = builder.build()
    fake_hl.load(scenario)
    client = HyperliquidClient(fake_hl.url)
    async with ws_source(client, [A], url=fake_hl.feeds.public_url, polled_every=0.05) as source:
        mark = min(f["time"] for f in scenario.fills[C]) - 1
        source.restore({"fills:" + C: str(mark)})  # where an earlier run left C
        fake_hl.fail_next(
            Fault.http(500), times=5, match=lambda body: body.get("user") == C
        )  # beyond the client's retries
        await source.follow([A], [C])
        first = await source.poll(_now())
        assert not first.events and any(C in error for error in first.errors)
        assert "fills:" + C not in first.checkpoint

        async def published() -> bool:
            return bool((await source.poll(_now())).events)

        await wait_until(published, message="C's liquidation published once its read answered")
        assert _reads(fake_hl, C)[:6] == [mark] * 6  # the five failed tries and the answered one: nothing skipped


async def test_no_polled_read_takes_a_completions_weight_and_the_wait_ends_when_there_is_room(
    fake_hl: FakeHyperliquid,
) -> None:
    clock = ManualClock(1000.0)
    budget = WeightBudget(1150, clock=clock)
    client = HyperliquidClient(fake_hl.url, budget=budget)
    # No WebSocket to connect to: no connect, so no gap-fill of A to spend the budget (not the subject here).
    async with ws_source(client, [A], url="ws://127.0.0.1:1/ws", polled_every=0.05) as source:
        await source.follow([A], [C])
        budget.reserve(budget.available - ROOM + 10)  # 10 weight short of a read's room
        await source.poll(_now())
        assert _reads(fake_hl, C) == []
        assert source._due_in() == room_in(budget) == pytest.approx(10 / budget.per_second)
        clock.now += 10 / budget.per_second * 1.001
        await source.poll(_now())
        assert len(_reads(fake_hl, C)) == 1


async def test_a_pushed_liquidation_goes_out_before_the_polled_reads_which_follow_at_once(
    fake_hl: FakeHyperliquid,
) -> None:
    builder = ScenarioBuilder(seed=7)
    builder.market_liquidation(coin="SOL", side="long", makers=[A])
    scenario = builder.build()
    client = HyperliquidClient(fake_hl.url)
    async with ws_source(client, [A], url=fake_hl.feeds.public_url, quiet=0.01, polled_every=60) as source:
        await source.poll(_now())  # connects
        await wait_until(lambda: [c.users for c in fake_hl.feeds.live("public")] == [{A}])
        while source._unfilled:  # the connect's gap-fill of A
            await source.poll(_now())
        await source.follow([A], [C])  # C is due at once
        await fake_hl.feeds.push([(A, fill) for fill in scenario.fills[A]])
        await wait_until(lambda: bool(source._pending), message="the push taken")
        await asyncio.sleep(0.02)  # its quiet time
        pushed = await source.poll(_now())
        assert len(pushed.events) == 1 and _reads(fake_hl, C) == []  # released without waiting for C's read
        assert source._arrived.is_set()  # the loop polls again at once
        await source.poll(_now())
        assert len(_reads(fake_hl, C)) == 1


async def test_a_polled_read_takes_one_page_a_turn_and_the_next_turns_read_on(
    fake_hl: FakeHyperliquid, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A maker's first read may span the lookback's thousands of fills: one page a turn keeps the poll short."""
    long_history(fake_hl, monkeypatch, C, D, trades=8)
    client = HyperliquidClient(fake_hl.url)
    async with ws_source(client, [A], url="ws://127.0.0.1:1/ws", polled_every=0.0) as source:
        await source.follow([A], [C])
        events = []
        for _ in range(6):
            before = len(_reads(fake_hl, C))
            result = await source.poll(_now())
            assert len(_reads(fake_hl, C)) == before + 1  # one page a poll, never the whole history at once
            events.extend(result.events)
        (event,) = events
        assert isinstance(event, LiquidationEvent) and event.coin == "ETH"
        starts = _reads(fake_hl, C)
        assert starts == sorted(starts) and len(set(starts)) >= 3  # each turn on from where the last stopped


async def test_while_a_gap_fill_is_pending_the_polled_reads_do_not_hurry_the_next_poll(
    fake_hl: FakeHyperliquid,
) -> None:
    """A failing gap-fill is retried at the poll's own pace: a polled maker being due must not spin the loop."""
    client = HyperliquidClient(fake_hl.url)
    async with ws_source(client, [A], url="ws://127.0.0.1:1/ws", polled_every=0.0) as source:
        await source.follow([A], [C])
        source._unfilled = {A: 1}  # as after a connect whose gap-fill of A failed once
        assert source._due_in() is None
        source._unfilled = {}
        assert source._due_in() == 0.0  # C is due at once
