"""The group runner against a real Redis: splitting, fan-out, take-over, retries, poison, stop."""

from __future__ import annotations

import asyncio
import logging
import time
from functools import partial
from typing import Any

import pytest
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

from consumers import ConsumerConfig, Runner, RunnerSettings, SocketTimeoutTooShort, connect
from consumers.entries import id_text
from plumbing.errors import ConfigError
from plumbing.redis_connect import socket_timeout_of
from plumbing.stream_keys import stream_key
from schemas import Event, LiquidationEvent, encode_entry
from tests.faults.invariants import raw_entries
from tests.helpers import Recorder, make_event, stop, wait_until

FAST = RunnerSettings(block_ms=100, count=10, claim_idle_ms=300, retry_delay_ms=50, group_start="0")


@pytest.fixture
def redis(redis_client: Redis) -> Redis:
    """The shared client; the ``stream`` fixture (tests/conftest.py) deletes every key under the test's prefix."""
    return redis_client


async def publish(redis: Redis, stream: str, events: list[LiquidationEvent]) -> list[str]:
    async with redis.pipeline(transaction=False) as pipe:
        for event in events:
            pipe.xadd(stream, encode_entry(event))  # type: ignore[arg-type]
        ids = await pipe.execute()
    return [i.decode() for i in ids]


def runner(redis: Redis, stream: str, handler: Any, *, group: str = "g", consumer: str = "c1", **kw: Any) -> Runner:
    settings = kw.pop("settings", FAST)
    return Runner(redis, stream=stream, group=group, consumer=consumer, handler=handler, settings=settings, **kw)


async def group_pending(redis: Redis, stream: str, group: str = "g") -> int:
    return int((await redis.xpending(stream, group))["pending"])


async def test_two_consumers_in_one_group_split_the_stream(redis: Redis, stream: str) -> None:
    events = [make_event() for _ in range(200)]
    await publish(redis, stream, events)
    a, b = Recorder(delay=0.001), Recorder(delay=0.001)
    ra, rb = runner(redis, stream, a, consumer="a"), runner(redis, stream, b, consumer="b")
    tasks = [asyncio.create_task(ra.run()), asyncio.create_task(rb.run())]
    await wait_until(lambda: len(a.keys) + len(b.keys) >= 200, message="200 events handled")
    await stop(ra, tasks[0])
    await stop(rb, tasks[1])
    assert sorted(a.keys + b.keys) == sorted(e.key for e in events)
    assert not set(a.keys) & set(b.keys)
    assert a.keys and b.keys, "both consumers should have taken a share"
    assert await group_pending(redis, stream) == 0


async def test_two_groups_each_see_every_entry(redis: Redis, stream: str) -> None:
    events = [make_event() for _ in range(50)]
    await publish(redis, stream, events)
    a, b = Recorder(), Recorder()
    ra, rb = runner(redis, stream, a, group="alerts"), runner(redis, stream, b, group="stats")
    tasks = [asyncio.create_task(ra.run()), asyncio.create_task(rb.run())]
    await wait_until(lambda: len(a.keys) == 50 and len(b.keys) == 50, message="both groups saw 50 events")
    await stop(ra, tasks[0])
    await stop(rb, tasks[1])
    assert a.keys == b.keys == [e.key for e in events]


async def test_entries_of_a_consumer_killed_mid_batch_are_claimed_by_another(redis: Redis, stream: str) -> None:
    events = [make_event() for _ in range(25)]
    await publish(redis, stream, events)
    hang = asyncio.Event()

    async def stuck(event: Event) -> None:
        await hang.wait()  # never set: this consumer dies holding its batch

    dead = runner(redis, stream, stuck, consumer="dead")
    dead_task = asyncio.create_task(dead.run())
    await wait_until(lambda: _pending_of(redis, stream, "dead", 10), message="the doomed consumer holds a batch")
    dead_task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await dead_task
    assert await _pending_count(redis, stream, "dead") == 10

    live = Recorder()
    heir = runner(redis, stream, live, consumer="heir")
    task = asyncio.create_task(heir.run())
    await wait_until(lambda: len(live.keys) == 25, message="the heir handled every event")
    await stop(heir, task)
    assert sorted(live.keys) == sorted(e.key for e in events)
    assert heir.counters.claimed == 10
    assert heir.counters.retried == 10
    assert await group_pending(redis, stream) == 0


async def _pending_count(redis: Redis, stream: str, consumer: str) -> int:
    try:
        summary = await redis.xpending(stream, "g")
    except ResponseError:  # the group does not exist yet
        return 0
    for row in summary["consumers"]:
        if row["name"].decode() == consumer:
            return int(row["pending"])
    return 0


async def _pending_of(redis: Redis, stream: str, consumer: str, n: int) -> bool:
    return await _pending_count(redis, stream, consumer) == n


async def test_poison_entries_go_to_the_dead_letter_stream_and_the_group_keeps_flowing(
    redis: Redis, stream: str
) -> None:
    good = [make_event() for _ in range(3)]
    valid = encode_entry(good[0])
    wrong_types = dict(valid, data=valid["data"].replace(b'"long"', b'"sideways"'))
    poison: dict[str, dict[str, bytes]] = {
        "bad_json": dict(valid, data=b"{not json"),
        "version": dict(valid, v=b"2"),
        "wrong_types": wrong_types,
        "no_data": {"type": b"liquidation", "v": b"1", "key": b"k"},
    }
    await publish(redis, stream, [good[0]])
    poison_ids = {name: id_text(await redis.xadd(stream, fields)) for name, fields in poison.items()}  # type: ignore[arg-type]
    await redis.xadd(stream, {"type": b"funding", "v": b"1", "key": b"f-1", "data": b'{"type":"funding"}'})
    await publish(redis, stream, good[1:])

    seen = Recorder()
    r = runner(redis, stream, seen)
    task = asyncio.create_task(r.run())
    await wait_until(lambda: len(seen.keys) == 3 and r.counters.dead_lettered == 4, message="good events handled")
    await stop(r, task)

    assert seen.keys == [e.key for e in good]
    assert r.counters.unknown_type == 1
    assert r.counters.dead_lettered == 4
    assert await group_pending(redis, stream) == 0
    letters = {
        fields[b"original_id"].decode(): fields
        for _, fields in raw_entries(await redis.xrange(stream_key(stream, "dead")))
    }
    assert set(letters) == set(poison_ids.values())
    reasons = {name: letters[entry_id][b"reason"].decode() for name, entry_id in poison_ids.items()}
    assert reasons["bad_json"].startswith("malformed: data does not decode")
    assert reasons["version"].startswith("unsupported_version: schema version 2")
    assert reasons["wrong_types"].startswith("malformed:") and "liquidation_side" in reasons["wrong_types"]
    assert reasons["no_data"] == "malformed: entry has no 'data' field"
    letter = letters[poison_ids["bad_json"]]
    assert letter[b"data"] == b"{not json" and letter[b"type"] == b"liquidation" and letter[b"key"] == valid["key"]
    assert letter[b"group"] == b"g" and letter[b"consumer"] == b"c1"


async def test_a_failed_entry_is_retried_without_holding_up_the_rest(redis: Redis, stream: str) -> None:
    events = [make_event() for _ in range(20)]
    flaky = events[3].key
    seen = Recorder(fail=lambda event, n: event.key == flaky and n <= 2)
    await publish(redis, stream, events)
    r = runner(redis, stream, seen)
    task = asyncio.create_task(r.run())
    await wait_until(lambda: len(seen.keys) == 20, message="every event handled, the flaky one last")
    await stop(r, task)
    assert seen.keys[-1] == flaky
    assert seen.calls[flaky] == 3
    assert (r.counters.failed, r.counters.retried, r.counters.processed) == (2, 2, 20)
    assert await group_pending(redis, stream) == 0


async def test_an_entry_that_keeps_failing_is_dead_lettered_after_max_deliveries(redis: Redis, stream: str) -> None:
    events = [make_event() for _ in range(5)]
    doomed = events[1].key
    seen = Recorder(fail=lambda event, n: event.key == doomed)
    ids = await publish(redis, stream, events)
    settings = RunnerSettings(
        block_ms=100, count=10, claim_idle_ms=300, retry_delay_ms=20, max_deliveries=3, group_start="0"
    )
    r = runner(redis, stream, seen, settings=settings)
    task = asyncio.create_task(r.run())
    await wait_until(lambda: r.counters.dead_lettered == 1, message="the doomed entry dead-lettered")
    await stop(r, task)
    assert seen.calls[doomed] == 3
    assert len(seen.keys) == 4
    [(_, letter)] = raw_entries(await redis.xrange(stream_key(stream, "dead")))
    assert letter[b"original_id"].decode() == ids[1]
    assert letter[b"reason"] == b"max_deliveries: delivered 4 times, more than the limit of 3"
    assert await group_pending(redis, stream) == 0


async def test_entries_trimmed_while_pending_are_acknowledged_and_counted(redis: Redis, stream: str) -> None:
    await publish(redis, stream, [make_event() for _ in range(6)])
    hang = asyncio.Event()

    async def stuck(event: Event) -> None:
        await hang.wait()

    holders = []
    for name in ("gone", "again"):
        holder = runner(
            redis,
            stream,
            stuck,
            consumer=name,
            settings=RunnerSettings(block_ms=100, count=3, claim_idle_ms=60_000, group_start="0"),
        )
        holders.append(asyncio.create_task(holder.run()))
        await wait_until(partial(_pending_of, redis, stream, name, 3), message=f"{name} holds 3 entries")
    for t in holders:
        t.cancel()
    await asyncio.gather(*holders, return_exceptions=True)
    await redis.xtrim(stream, maxlen=0)

    # "again" restarts under its name: its re-read finds its entries gone; its claim finds those of "gone" (and
    # XAUTOCLAIM reports trimmed entries whatever their idle time).
    seen = Recorder()
    same = runner(
        redis,
        stream,
        seen,
        consumer="again",
        settings=RunnerSettings(block_ms=100, count=10, claim_idle_ms=60_000, group_start="0"),
    )
    task = asyncio.create_task(same.run())
    await wait_until(lambda: same.counters.deleted == 6, message="the restarted consumer acked the trimmed entries")
    await stop(same, task)
    assert seen.keys == []
    assert await group_pending(redis, stream) == 0


async def test_stop_finishes_the_entry_in_hand_hands_back_the_rest_and_flushes_acks(redis: Redis, stream: str) -> None:
    events = [make_event() for _ in range(5)]
    await publish(redis, stream, events)
    entered, release = asyncio.Event(), asyncio.Event()
    done: list[str] = []

    async def slow(event: Event) -> None:
        entered.set()
        await release.wait()
        done.append(event.key)

    r = runner(redis, stream, slow)
    task = asyncio.create_task(r.run())
    await asyncio.wait_for(entered.wait(), 5)
    r.stop()
    release.set()
    await asyncio.wait_for(task, 5)
    assert done == [events[0].key]
    assert await _pending_count(redis, stream, "c1") == 4

    # The same name re-reads its handed-back entries first on its next start.
    seen = Recorder()
    again = runner(redis, stream, seen)
    task = asyncio.create_task(again.run())
    await wait_until(lambda: len(seen.keys) == 4, message="the handed-back entries handled")
    await stop(again, task)
    assert seen.keys == [e.key for e in events[1:]]
    assert await group_pending(redis, stream) == 0
    assert await redis.xinfo_consumers(stream, "g") == [], "a consumer leaving with nothing pending leaves the group"


async def test_stop_interrupts_a_blocked_read_at_once(redis: Redis, stream: str) -> None:
    r = runner(redis, stream, Recorder(), settings=RunnerSettings(block_ms=8_000, claim_idle_ms=60_000))
    task = asyncio.create_task(r.run())
    await wait_until(lambda: _consumer_exists(redis, stream, "c1"), message="the consumer reads")
    await asyncio.sleep(0.05)
    started = time.monotonic()
    await stop(r, task)
    assert time.monotonic() - started < 1.0


async def _consumer_exists(redis: Redis, stream: str, name: str) -> bool:
    try:
        consumers = await redis.xinfo_consumers(stream, "g")
    except ResponseError:  # the group does not exist yet
        return False
    return any(c["name"].decode() == name for c in consumers)


async def test_batch_mode_hands_lists_and_acks_once_per_batch(
    redis: Redis, stream: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    events = [make_event() for _ in range(30)]
    await publish(redis, stream, events)
    acks: list[int] = []
    real_xack = redis.xack

    async def counting_xack(name: str, group: str, *ids: Any) -> Any:
        acks.append(len(ids))
        return await real_xack(name, group, *ids)

    monkeypatch.setattr(redis, "xack", counting_xack)
    batches: list[list[str]] = []

    async def handle(batch: list[Event]) -> None:
        batches.append([e.key for e in batch])

    r = Runner(
        redis,
        stream=stream,
        group="g",
        consumer="c1",
        batch_handler=handle,
        settings=RunnerSettings(block_ms=100, count=30, claim_idle_ms=60_000, group_start="0"),
    )
    task = asyncio.create_task(r.run())
    await wait_until(lambda: r.counters.processed == 30, message="the batch handled")
    await stop(r, task)
    assert batches == [[e.key for e in events]]
    assert acks == [30]


async def test_a_failed_batch_stays_pending_and_is_retried_whole(redis: Redis, stream: str) -> None:
    events = [make_event() for _ in range(4)]
    await publish(redis, stream, events)
    calls: list[int] = []

    async def handle(batch: list[Event]) -> None:
        calls.append(len(batch))
        if len(calls) == 1:
            raise RuntimeError("downstream unavailable")

    r = Runner(redis, stream=stream, group="g", consumer="c1", batch_handler=handle, settings=FAST)
    task = asyncio.create_task(r.run())
    await wait_until(lambda: r.counters.processed == 4, message="the batch handled on retry")
    await stop(r, task)
    assert calls == [4, 4]
    assert (r.counters.failed, r.counters.retried) == (4, 4)
    assert await group_pending(redis, stream) == 0


async def test_lag_and_metrics(redis: Redis, stream: str) -> None:
    await publish(redis, stream, [make_event() for _ in range(5)])
    r = runner(redis, stream, Recorder())
    await r.consumer_group.ensure()
    assert await r.consumer_group.lag() == 5
    task = asyncio.create_task(r.run())
    await wait_until(lambda: r.counters.processed == 5, message="five events handled")
    metrics = await r.metrics()
    await stop(r, task)
    assert metrics["lag"] == 0 and metrics["processed"] == 5 and metrics["dead_lettered"] == 0


async def test_a_group_created_from_now_skips_history(redis: Redis, stream: str) -> None:
    await publish(redis, stream, [make_event() for _ in range(3)])
    seen = Recorder()
    r = runner(redis, stream, seen, settings=RunnerSettings(block_ms=100, claim_idle_ms=60_000, group_start="$"))
    task = asyncio.create_task(r.run())
    await wait_until(lambda: _consumer_exists(redis, stream, "c1"), message="the consumer reads")
    new = make_event()
    await publish(redis, stream, [new])
    await wait_until(lambda: seen.keys == [new.key], message="only the new event handled")
    await stop(r, task)


async def test_skip_through_acks_entries_already_accounted_for(redis: Redis, stream: str) -> None:
    events = [make_event() for _ in range(6)]
    ids = await publish(redis, stream, events)
    seen = Recorder()
    r = runner(redis, stream, seen, skip_through=ids[3])
    task = asyncio.create_task(r.run())
    await wait_until(lambda: len(seen.keys) == 2, message="the entries after the boundary handled")
    await stop(r, task)
    assert seen.keys == [e.key for e in events[4:]]
    assert r.counters.skipped == 4
    assert await group_pending(redis, stream) == 0


async def test_the_group_is_recreated_when_the_stream_is_deleted(redis: Redis, stream: str) -> None:
    seen = Recorder()
    r = runner(redis, stream, seen)
    task = asyncio.create_task(r.run())
    first = make_event()
    await publish(redis, stream, [first])
    await wait_until(lambda: seen.keys == [first.key], message="the first event handled")
    await redis.delete(stream)
    second = make_event()
    await publish(redis, stream, [second])
    await wait_until(lambda: seen.keys == [first.key, second.key], message="the event after the deletion handled")
    await stop(r, task)


async def test_a_client_that_would_time_out_a_blocked_read_is_refused(redis: Redis, stream: str) -> None:
    short = Redis(host="127.0.0.1", port=6379, socket_timeout=1)
    try:
        r = runner(short, stream, Recorder(), settings=RunnerSettings(block_ms=1_000))
        with pytest.raises(SocketTimeoutTooShort, match=r"socket_timeout \(1 s\) must be longer than the read block"):
            await r.run()
    finally:
        await short.aclose()
    config = ConsumerConfig(
        stream=stream,
        group="g",
        consumer="c",
        settings=RunnerSettings(block_ms=30_000),
        redis_url="redis://127.0.0.1:6379/0",
    )
    client = connect(config)
    try:
        assert (socket_timeout_of(client) or 0) > 30
    finally:
        await client.aclose()


async def test_the_runner_needs_exactly_one_handler(redis: Redis) -> None:
    async def one(event: Event) -> None: ...
    async def many(events: list[Event]) -> None: ...

    with pytest.raises(ConfigError, match="exactly one"):
        Runner(redis, stream="s", group="g", consumer="c")
    with pytest.raises(ConfigError, match="exactly one"):
        Runner(redis, stream="s", group="g", consumer="c", handler=one, batch_handler=many)
    with pytest.raises(ConfigError, match="max_deliveries"):
        RunnerSettings(max_deliveries=0)


async def test_a_redis_outage_is_waited_out(redis_server: Any) -> None:
    client = Redis.from_url(redis_server.url, socket_timeout=5)
    try:
        seen = Recorder()
        r = runner(client, "test:outage:liq", seen)
        task = asyncio.create_task(r.run())
        first = make_event()
        await client.xadd("test:outage:liq", encode_entry(first))  # type: ignore[arg-type]
        await wait_until(lambda: seen.keys == [first.key], message="the first event handled")
        redis_server.kill()
        await asyncio.sleep(0.3)  # let the runner hit the outage
        redis_server.start()  # same port, empty: the group comes back through NOGROUP
        second = make_event()
        await client.xadd("test:outage:liq", encode_entry(second))  # type: ignore[arg-type]
        await wait_until(lambda: seen.keys == [first.key, second.key], message="the event after the outage handled")
        await stop(r, task)
    finally:
        await client.aclose()


async def test_a_redis_demoted_to_replica_is_waited_out_and_said_once(
    redis_server: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """After a failover our Redis answers READONLY to every XREADGROUP and XACK: the runner waits, says so once,
    and resumes the group where it was when Redis takes writes again; the health check sees no read meanwhile."""
    caplog.set_level(logging.INFO, logger="consumers.runner")
    client = Redis.from_url(redis_server.url, socket_timeout=5)
    stream = "test:readonly:liq"
    try:
        seen = Recorder()
        r = runner(client, stream, seen)
        task = asyncio.create_task(r.run())
        first, second = make_event(), make_event()
        await client.xadd(stream, encode_entry(first))  # type: ignore[arg-type]
        await wait_until(lambda: seen.keys == [first.key], message="the first event handled")
        await client.execute_command("REPLICAOF", "127.0.0.1", "1")  # type: ignore[no-untyped-call]
        await asyncio.sleep(0.1)
        read_before = r.last_read_ok
        await asyncio.sleep(0.5)
        assert not task.done(), "the runner gave up on a READONLY answer"
        assert r.last_read_ok == read_before, "no read succeeded while Redis refused them"
        await client.execute_command("REPLICAOF", "NO", "ONE")  # type: ignore[no-untyped-call]
        await client.xadd(stream, encode_entry(second))  # type: ignore[arg-type]
        await wait_until(lambda: seen.keys == [first.key, second.key], message="the event after the failover")
        await stop(r, task)
    finally:
        await client.aclose()
    assert caplog.text.count("Redis unavailable") == 1
    assert "Redis is back" in caplog.text


async def test_a_handler_that_meets_a_redis_outage_logs_one_line_and_the_entry_is_retried(
    redis: Redis, stream: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A failover reaches a handler that writes to Redis (the alerter's markers) as a ConnectionError: an outage,
    said in one line, not a handler bug with a traceback."""
    caplog.set_level(logging.WARNING, logger="consumers.runner")
    seen: list[str] = []

    async def handler(event: Event) -> None:
        seen.append(event.key)
        if len(seen) == 1:
            raise RedisConnectionError("Error 111 connecting to 127.0.0.1:7000. Connect call failed")

    [event] = [make_event()]
    await publish(redis, stream, [event])
    r = runner(redis, stream, handler)
    task = asyncio.create_task(r.run())
    await wait_until(lambda: len(seen) == 2, message="the entry handled again after the outage")
    await stop(r, task)
    assert "handler could not reach Redis on entry" in caplog.text and "Traceback" not in caplog.text
    assert await group_pending(redis, stream) == 0
