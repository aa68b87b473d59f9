"""Partial liquidations completed from the liquidated user's own fills: a watchlist producer publishes the exact
figures a node would, under the same key, after the partial ones, while the weight budget has room."""

from __future__ import annotations

import asyncio
from decimal import Decimal

from producer.client import HyperliquidClient
from producer.completion import Completer
from producer.ratelimit import WeightBudget
from producer.simulation.fake_exchange import FakeHyperliquid, Fault, running_fake
from producer.simulation.scenarios import ScenarioBuilder
from schemas import LiquidationEvent
from tests.helpers import config_for, make_event, make_producer, stream_events, wait_until


async def test_a_liquidation_seen_on_one_maker_is_published_partial_then_complete(stream: str) -> None:
    builder = ScenarioBuilder(seed=11)
    watched, other = builder.address(), builder.address()
    truth = builder.market_liquidation(makers=[watched, other, builder.address()])
    async with running_fake(builder.build()) as fake:
        producer = make_producer(config_for(fake, stream, watchlist=(watched,), complete=True))  # the default
        try:
            for _ in range(3):
                await producer.poll_once()
        finally:
            await producer.close()
        reads = [body["user"] for body in fake.requests_of("userFillsByTime")]
    partial, complete = [e for e in await stream_events(stream) if isinstance(e, LiquidationEvent)]
    assert partial.key == complete.key and not partial.complete and complete.complete
    assert partial.fills == 1 and set(complete.tids) == set(truth.tids)
    assert (complete.size, complete.value_usd) == (truth.size, truth.value_usd)
    assert complete.liquidation_side == truth.side and complete.mark_price == Decimal(truth.mark_price)
    assert reads.count(truth.key[2]) == 1  # one read of the liquidated user, at the event's millisecond
    assert producer.completer is not None and producer.completer.completed == 1


async def test_partial_events_the_full_queue_leaves_are_counted_in_the_metric(stream: str) -> None:
    builder = ScenarioBuilder(seed=11)
    watched = builder.address()
    builder.market_liquidation(makers=[watched, builder.address()])
    async with running_fake(builder.build()) as fake:
        producer = make_producer(config_for(fake, stream, watchlist=(watched,), complete=True))
        assert producer.completer is not None
        producer.completer.max_waiting = 0  # a cascade has filled the queue
        try:
            for _ in range(3):
                await producer.poll_once()
        finally:
            await producer.close()
    (partial,) = await stream_events(stream)
    assert isinstance(partial, LiquidationEvent) and not partial.complete
    assert producer.metrics.registry.get_sample_value("hl_producer_events_left_partial_total") == 1


async def test_the_partial_event_is_in_the_stream_before_the_completion_is_read(stream: str) -> None:
    # The completion's read answers late (an exchange under load): the poll's own events must not wait for it.
    builder = ScenarioBuilder(seed=12)
    watched = builder.address()
    truth = builder.market_liquidation(makers=[watched, builder.address()])
    liquidated = truth.key[2]
    async with running_fake(builder.build()) as fake:
        fake.fail_next(Fault.delay(1.0), match=lambda body: body.get("user") == liquidated)
        producer = make_producer(config_for(fake, stream, watchlist=(watched,), complete=True))
        try:
            polling = asyncio.ensure_future(producer.poll_once())
            while not any(body["user"] == liquidated for body in fake.requests_of("userFillsByTime")):
                assert not polling.done()
                await asyncio.sleep(0.01)
            seen_while_reading = await stream_events(stream)
            await polling
        finally:
            await producer.close()
    assert [e.complete for e in seen_while_reading if isinstance(e, LiquidationEvent)] == [False]
    assert [e.complete for e in await stream_events(stream) if isinstance(e, LiquidationEvent)] == [False, True]


async def test_without_room_in_the_budget_or_the_queue_events_stay_partial_and_are_counted(
    fake_hl: FakeHyperliquid,
) -> None:
    client = HyperliquidClient(fake_hl.url, budget=WeightBudget(60))  # 20 weight at most: less than the reserve
    completer = Completer(client, max_waiting=1)
    try:
        completer.offer([make_event(complete=False, source="ws"), make_event(complete=False, source="ws")])
        completer.offer([make_event(complete=True, source="ws"), make_event(complete=False, source="node")])
        assert completer.left_partial == 1 and len(completer.waiting) == 1
        assert await completer.run(0) == [] and fake_hl.requests_of("userFillsByTime") == []
    finally:
        await client.close()


async def test_a_full_minute_holds_the_reads_back_even_with_the_bucket_full(fake_hl: FakeHyperliquid) -> None:
    """A read the rolling minute has no room for would wait inside the poll: it is not sent, the event waits."""
    now = [0.0]
    budget = WeightBudget(600, clock=lambda: now[0])
    for _ in range(25):  # 500 of the minute's 600
        now[0] += budget.reserve(20)
    now[0] += 10  # the bucket full again
    client = HyperliquidClient(fake_hl.url, budget=budget)
    completer = Completer(client)
    try:
        completer.offer([make_event(complete=False, source="ws")])
        assert budget.available >= 80 and await completer.run(0) == []
        assert fake_hl.requests_of("userFillsByTime") == [] and len(completer.waiting) == 1
    finally:
        await client.close()


async def test_a_stop_during_the_completion_reads_publishes_what_was_completed_and_requeues_the_read(
    stream: str,
) -> None:
    builder = ScenarioBuilder(seed=13)
    watched = builder.address()
    first = builder.market_liquidation(makers=[watched, builder.address()])
    second = builder.market_liquidation(makers=[watched, builder.address()])
    slow_user = second.key[2]
    async with running_fake(builder.build()) as fake:
        fake.fail_next(Fault.delay(5.0), match=lambda body: body.get("user") == slow_user)
        producer = make_producer(config_for(fake, stream, watchlist=(watched,), complete=True))
        running = asyncio.create_task(producer.run())
        await wait_until(lambda: any(body["user"] == slow_user for body in fake.requests_of("userFillsByTime")))
        producer.stop()  # while the second completion's read hangs
        assert await asyncio.wait_for(running, 5) == 0
    versions: dict[str, list[bool]] = {}
    for event in await stream_events(stream):
        assert isinstance(event, LiquidationEvent)
        versions.setdefault(event.tx_hash, []).append(event.complete)
    assert versions == {first.tx_hash: [False, True], second.tx_hash: [False]}
    assert producer.completer is not None and [e.tx_hash for e in producer.completer.waiting] == [second.tx_hash]
