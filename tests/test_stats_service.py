"""The aggregator against a real Redis: totals equal the events, across restarts, replicas and a published snapshot."""

from __future__ import annotations

import asyncio
import io
import json
import time
from decimal import Decimal

import pytest
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from consumers import ConsumerConfig, Runner, RunnerSettings
from consumers.stats import StatsConfig, StatsService
from consumers.stats.service import describe_view
from plumbing.stream_keys import stream_key
from schemas import Event, LiquidationEvent, encode_entry
from tests.faults.poison import HUGE_AMOUNTS, UNUSABLE_AMOUNTS, UNUSABLE_TIMES, with_field
from tests.helpers import make_event, wait_until

SETTINGS = RunnerSettings(block_ms=100, count=10, claim_idle_ms=300, retry_delay_ms=50)


@pytest.fixture
def redis(redis_client: Redis) -> Redis:
    return redis_client


def config(stream: str, consumer: str, group: str = "stats", **kw: object) -> StatsConfig:
    return StatsConfig(
        consumer=ConsumerConfig(stream=stream, group=group, consumer=consumer, settings=SETTINGS),
        interval_s=3600,
        **kw,  # type: ignore[arg-type]
    )


async def publish(redis: Redis, stream: str, n: int, seed: int = 0) -> list[LiquidationEvent]:
    events = [
        make_event(
            coin=("BTC", "ETH", "SOL")[i % 3],
            liquidation_side=("long", "short")[i % 2],
            value_usd=Decimal(f"{1000 + seed + i}.{i:02d}"),
        )
        for i in range(n)
    ]
    async with redis.pipeline(transaction=False) as pipe:
        for event in events:
            pipe.xadd(stream, encode_entry(event))  # type: ignore[arg-type]
        await pipe.execute()
    return events


def assert_totals(service: StatsService, events: list[LiquidationEvent]) -> None:
    stats = service.totals.statistics()
    assert stats["count"] == len(events)
    assert Decimal(stats["value_usd"]) == sum(e.value_usd for e in events)
    for coin in ("BTC", "ETH", "SOL"):
        assert Decimal(stats["by_coin"][coin]["value_usd"]) == sum(e.value_usd for e in events if e.coin == coin)


async def start(service: StatsService, *, rebuild: bool = True) -> asyncio.Task[None]:
    if rebuild:
        await service.rebuild()
    return asyncio.create_task(service.runner.run())


async def stop(service: StatsService, task: asyncio.Task[None]) -> None:
    service.runner.stop()
    await asyncio.wait_for(task, 5)


async def test_totals_equal_the_events_and_survive_a_restart(redis: Redis, stream: str) -> None:
    history = await publish(redis, stream, 30)
    first = StatsService(config(stream, "s1"), redis, out=io.StringIO())
    task = await start(first)
    assert first.rebuilt == 30, "a new group starting at $ still counts the retained history"
    live = await publish(redis, stream, 20, seed=100)
    await wait_until(lambda: first.totals.count == 50, message="the live events counted")
    await stop(first, task)
    assert_totals(first, history + live)

    while_down = await publish(redis, stream, 10, seed=200)
    second = StatsService(config(stream, "s2"), redis, out=io.StringIO())
    task = await start(second)
    assert second.rebuilt == 50
    await wait_until(lambda: second.totals.count == 60, message="the events published while down counted")
    await asyncio.sleep(0.3)  # a little longer: nothing may be counted twice
    await stop(second, task)
    assert_totals(second, history + live + while_down)


async def test_entries_left_pending_by_a_dead_aggregator_are_not_counted_twice(redis: Redis, stream: str) -> None:
    events = await publish(redis, stream, 25)
    hang = asyncio.Event()

    async def dies_holding(batch: list[Event]) -> None:
        await hang.wait()

    doomed = Runner(
        redis,
        stream=stream,
        group="stats",
        consumer="doomed",
        batch_handler=dies_holding,
        settings=RunnerSettings(block_ms=100, count=10, group_start="0"),
    )
    doomed_task = asyncio.create_task(doomed.run())
    await wait_until(lambda: _pending_is(redis, stream, 10), message="the doomed aggregator holds a batch")
    doomed_task.cancel()
    await asyncio.gather(doomed_task, return_exceptions=True)

    heir = StatsService(config(stream, "heir"), redis, out=io.StringIO())
    task = await start(heir)
    assert heir.rebuilt == 10, "the history up to the last delivered entry"
    await wait_until(lambda: heir.totals.count == 25, message="the rest counted")
    await wait_until(lambda: _pending_is(redis, stream, 0), message="the dead aggregator's batch claimed and acked")
    await stop(heir, task)
    assert heir.runner.counters.skipped == 10 and heir.runner.counters.claimed == 10
    assert_totals(heir, events)


async def _pending_is(redis: Redis, stream: str, n: int) -> bool:
    try:
        return int((await redis.xpending(stream, "stats"))["pending"]) == n
    except ResponseError:  # no group yet
        return False


async def test_replicas_split_the_work_and_say_their_view_is_partial(redis: Redis, stream: str) -> None:
    replicas = [StatsService(config(stream, name), redis, out=io.StringIO()) for name in ("r1", "r2")]
    full = StatsService(config(stream, "f1", group="stats-full"), redis, out=io.StringIO())
    tasks = [await start(s) for s in (*replicas, full)]
    await wait_until(lambda: _both_registered(redis, stream), message="both replicas read")
    events = await publish(redis, stream, 200)
    await wait_until(
        lambda: sum(r.totals.count for r in replicas) == 200 and full.totals.count == 200,
        message="every event counted once per group",
    )
    snapshots = [await s.snapshot() for s in (*replicas, full)]
    for s, t in zip((*replicas, full), tasks, strict=True):
        await stop(s, t)
    assert [snap["view"]["note"] for snap in snapshots] == [
        "partial view: 1 of 2 consumers",
        "partial view: 1 of 2 consumers",
        "full view",
    ]
    assert sum(Decimal(s["totals"]["value_usd"]) for s in snapshots[:2]) == sum(e.value_usd for e in events)
    assert_totals(full, events)


async def test_a_replica_that_outlived_the_others_still_says_its_view_is_partial(redis: Redis, stream: str) -> None:
    replicas = [StatsService(config(stream, name), redis, out=io.StringIO()) for name in ("r1", "r2")]
    tasks = [await start(s) for s in replicas]
    await wait_until(lambda: _both_registered(redis, stream), message="both replicas read")
    await publish(redis, stream, 380)
    await wait_until(lambda: sum(r.totals.count for r in replicas) == 380, message="every event counted once")
    for s, t in zip(replicas, tasks, strict=True):
        await stop(s, t)  # each leaves the group: the last one's exit table sees no other consumer
    last = replicas[0]
    assert 0 < last.totals.count < 380, "the two replicas split the work"
    snapshot = await last.snapshot()
    assert snapshot["view"]["partial"] is True
    assert snapshot["view"]["note"] == (
        "partial view: this consumer's share; other consumers of the group handled "
        f"{380 - last.totals.count:,} of its 380 entries since this one started"
    )


def test_the_view_is_full_only_when_this_consumer_handled_everything_the_group_was_delivered() -> None:
    assert describe_view(2, 380, own=100, pending=0)["note"] == "partial view: 1 of 2 consumers"
    shared = describe_view(1, 380, own=100, pending=0)
    assert shared["partial"] and "handled 280 of its 380 entries" in shared["note"]
    assert describe_view(1, 100, own=100, pending=0) == {"partial": False, "consumers": 1, "note": "full view"}
    assert not describe_view(1, 105, own=100, pending=5)["partial"], "entries in hand are not someone else's"
    assert not describe_view(1, None, own=100, pending=0)["partial"], "Redis < 7: only the active consumers tell"


async def _both_registered(redis: Redis, stream: str) -> bool:
    try:
        return len(await redis.xinfo_consumers(stream, "stats")) == 2
    except ResponseError:  # no group yet
        return False


async def test_the_snapshot_is_published_as_json_and_printed(redis: Redis, stream: str) -> None:
    events = await publish(redis, stream, 5)
    out = io.StringIO()
    service = StatsService(config(stream, "s1", snapshot_ttl_s=120), redis, out=out)
    task = await start(service)
    await service.report()
    await stop(service, task)
    key = stream_key(stream, "stats:stats:s1")
    published = await redis.get(key)
    assert published is not None, "no snapshot was published"
    snapshot = json.loads(published)
    assert 110 < await redis.ttl(key) <= 120
    assert snapshot["totals"]["count"] == 5
    assert Decimal(snapshot["totals"]["value_usd"]) == sum(e.value_usd for e in events)
    assert snapshot["view"] == {"partial": False, "consumers": 1, "note": "full view"}
    assert snapshot["runner"]["lag"] == 0 and snapshot["rebuilt_from_history"] == 5
    table = out.getvalue()
    assert "full view" in table and "top coins: " in table and "largest: " in table
    lines = table.splitlines()
    assert lines[1].split() == ["window", "count", "value", "longs", "shorts"]
    assert lines[5].split()[:2] == ["all", "5"]


async def test_unusable_amounts_and_times_are_dead_lettered_live_and_skipped_by_the_rebuild(
    redis: Redis, stream: str
) -> None:
    """``NaN`` on the stream killed the report task at its first report, and every restart's rebuild raised and
    exited 1 until the entry was trimmed. Now each such entry is a dead letter, the report goes out, the rebuild
    skips it, and the huge-but-finite ones are counted like any other."""
    out = io.StringIO()
    first = StatsService(config(stream, "s1"), redis, out=out)
    task = await start(first)
    good = await publish(redis, stream, 6)
    template = good[0]
    poison = [with_field(template, "value_usd", value) for value in UNUSABLE_AMOUNTS]
    poison += [with_field(template, "timestamp", value) for value in UNUSABLE_TIMES]
    huge = [make_event(value_usd=Decimal(value)) for value in HUGE_AMOUNTS]
    async with redis.pipeline(transaction=False) as pipe:
        for fields in poison:
            pipe.xadd(stream, fields)  # type: ignore[arg-type]
        for event in huge:
            pipe.xadd(stream, encode_entry(event))  # type: ignore[arg-type]
        await pipe.execute()
    await wait_until(lambda: first.totals.count == len(good) + len(huge), message="the usable events counted")
    await first.report()
    await stop(first, task)
    assert first.runner.counters.dead_lettered == len(poison)
    assert_totals(first, good + huge)
    assert "$1.2e+38" in out.getvalue(), "the table shows the largest value"

    second = StatsService(config(stream, "s2"), redis, out=io.StringIO())
    assert await second.rebuild() == len(good) + len(huge)
    assert second.rebuild_skipped == len(poison)
    windows = second.totals.statistics(int(time.time() * 1000))["windows"]
    assert windows["24h"]["count"] == len(good) + len(huge), "impossible times no longer blank the windows"
