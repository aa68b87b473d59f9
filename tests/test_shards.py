"""Sharding a stream over N streams: names spread over the slot range, routing by key, one checkpoint for the source.

The pure parts are tested directly; the publisher on the real Redis at 127.0.0.1 (a cluster run is in
``tests/test_fault_cluster.py``), including a crash between two shards' publishes.
"""

from __future__ import annotations

import asyncio
import io
import json
from collections import Counter

import pytest
import redis.asyncio as aioredis
import redis.exceptions
from redis.crc import key_slot

from consumers.config import ConsumerConfig, RunnerSettings
from consumers.stats import StatsConfig, StatsService
from consumers.tail.cli import follow
from consumers.tail.config import TailConfig
from plumbing.errors import ConfigError
from plumbing.shards import segment, shard_of, shard_streams
from plumbing.stream_keys import hash_tag, key_namespace, same_slot
from producer.config import load_config
from producer.publisher import Publisher, PublishResult, checkpoint_key, dedup_key
from producer.sharded_publisher import ShardedPublisher
from schemas import Event, decode_entry
from tests.faults.invariants import raw_entries
from tests.helpers import REDIS_URL, events, wait_until

# --- pure -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("stream", ["hyperliquid:liquidations", "prod:{hl}:liqs", "{liq}", "a:b"])
@pytest.mark.parametrize("shards", [2, 3, 4, 6, 9])
def test_shards_take_one_segment_of_the_slot_range_each(stream: str, shards: int) -> None:
    names = shard_streams(stream, shards)
    assert names[0] == stream  # shard 0 is the stream: going from 1 to N keeps its checkpoint and groups
    assert len(set(names)) == shards
    assert sorted(segment(key_slot(name.encode()), shards) for name in names) == list(range(shards))
    for name in names:
        key_namespace(name)  # every shard can have its dedup keys and checkpoint in its slot


def test_one_shard_is_the_stream_itself() -> None:
    assert shard_streams("hyperliquid:liquidations", 1) == ("hyperliquid:liquidations",)


def test_a_tagged_streams_shards_fold_their_label_into_the_tag() -> None:
    """A second ``{...}`` would not count (Redis hashes the first), so the label goes inside the existing tag."""
    names = shard_streams("prod:{hl}:liqs", 3)
    for name in names[1:]:
        assert name.startswith("prod:{hl.s") and name.endswith("}:liqs")
        assert hash_tag(name) != "hl"
    untagged = shard_streams("hyperliquid:liquidations", 3)
    assert all(name.startswith("hyperliquid:liquidations:{s") for name in untagged[1:])


def test_three_shards_land_on_three_masters_of_an_evenly_split_cluster() -> None:
    """The split ``redis-cli --cluster create`` makes for 3 masters."""
    ranges = [(0, 5460), (5461, 10922), (10923, 16383)]
    for stream in ("hyperliquid:liquidations", "prod:{hl}:liqs", "demo:liquidations"):
        owners = {
            next(m for m, (lo, hi) in enumerate(ranges) if lo <= key_slot(name.encode()) <= hi)
            for name in shard_streams(stream, 3)
        }
        assert owners == {0, 1, 2}, stream


def test_routing_is_by_key_stable_and_uses_every_shard() -> None:
    keys = [event.key for event in events(600)]
    counts = Counter(shard_of(key, 3) for key in keys)
    assert set(counts) == {0, 1, 2} and min(counts.values()) > 100
    assert [shard_of(key, 3) for key in keys] == [shard_of(key, 3) for key in list(keys)]
    assert all(shard_of(key, 1) == 0 for key in keys)


@pytest.mark.parametrize("value", ["0", "-1", "two", "1025"])
def test_a_bad_shard_count_is_a_configuration_error(value: str) -> None:
    with pytest.raises(ConfigError, match="--shards / LIQ_SHARDS"):
        load_config(["--source", "trades"], env={"LIQ_SHARDS": value})


def test_the_shard_count_comes_from_the_flag_or_the_environment() -> None:
    assert load_config(["--source", "trades"], env={}).shards == 1
    assert load_config(["--source", "trades"], env={"LIQ_SHARDS": "3"}).shards == 3
    assert load_config(["--source", "trades", "--shards", "4"], env={"LIQ_SHARDS": "3"}).shards == 4


# --- on Redis ---------------------------------------------------------------------------------------------------


async def entries_by_shard(client: aioredis.Redis, names: tuple[str, ...]) -> list[list[Event]]:
    return [[decode_entry(fields) for _, fields in raw_entries(await client.xrange(name))] for name in names]


async def test_one_shard_writes_exactly_what_the_unsharded_publisher_writes(
    redis_client: aioredis.Redis, stream: str
) -> None:
    batch = events(5)
    result = await ShardedPublisher(redis_client, stream).publish(batch, {"fills:0xa": "100"})
    assert [event for event, _ in result.published] == batch
    assert await redis_client.hgetall(checkpoint_key(stream)) == {b"fills:0xa": b"100"}
    assert await redis_client.exists(*(dedup_key(stream, event.key) for event in batch)) == 5
    again = await Publisher(redis_client, stream).publish(batch)
    assert again.duplicates == batch  # the same dedup keys: 1 shard is the unsharded stream


async def test_each_event_lands_once_in_its_keys_shard_with_its_dedup_key_beside_it(
    redis_client: aioredis.Redis, stream: str
) -> None:
    publisher = ShardedPublisher(redis_client, stream, shards=3)
    batch = events(90)
    first = await publisher.publish(batch, {"fills:0xa": "100"})
    second = await publisher.publish(batch + events(10, start=90), {"fills:0xa": "200"})
    assert len(first.published) == 90 and len(second.published) == 10 and len(second.duplicates) == 90
    found = await entries_by_shard(redis_client, publisher.streams)
    assert sorted(e.key for shard in found for e in shard) == sorted(e.key for e in events(100))
    for i, (name, shard) in enumerate(zip(publisher.streams, found, strict=True)):
        assert shard and all(shard_of(event.key, 3) == i for event in shard)
        assert [e.timestamp for e in shard] == sorted(e.timestamp for e in shard)  # in order, per shard
        assert all(same_slot(dedup_key(name, e.key), name) for e in shard)
        assert await redis_client.exists(*(dedup_key(name, e.key) for e in shard)) == len(shard)
    # the source's one position is in shard 0's checkpoint only
    assert await publisher.load_checkpoint() == {"fills:0xa": "200"}
    assert not await redis_client.exists(*(checkpoint_key(name) for name in publisher.streams[1:]))


class Crashed(redis.exceptions.ConnectionError):
    """The producer died here: nothing of shard 0's publish reached Redis."""


async def test_a_crash_between_shard_publishes_loses_nothing_and_doubles_nothing(
    redis_client: aioredis.Redis, stream: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    old = {"fills:0xa": "100"}
    await ShardedPublisher(redis_client, stream, shards=3).publish([], old)
    crashing = ShardedPublisher(redis_client, stream, shards=3)

    async def crash(batch: list[Event], checkpoint: dict[str, str] | None = None) -> PublishResult:
        raise Crashed("killed between shard publishes")

    monkeypatch.setattr(crashing.shards[0], "publish", crash)
    batch = events(60)
    with pytest.raises(Crashed):
        await crashing.publish(batch, {"fills:0xa": "200"})
    found = await entries_by_shard(redis_client, crashing.streams)
    assert not found[0] and found[1] and found[2]  # shards 1 and 2 got theirs, shard 0 did not
    assert await crashing.shards[1].load_checkpoint() == {}

    restarted = ShardedPublisher(redis_client, stream, shards=3)
    assert await restarted.load_checkpoint() == old  # the checkpoint did not move: the poll is redone
    result = await restarted.publish(batch, {"fills:0xa": "200"})
    assert len(result.duplicates) == len(found[1]) + len(found[2])  # the dedup keys absorb the re-publish
    found = await entries_by_shard(redis_client, restarted.streams)
    keys = [e.key for shard in found for e in shard]
    assert sorted(keys) == sorted(e.key for e in batch) and len(set(keys)) == len(keys)
    assert await restarted.load_checkpoint() == {"fills:0xa": "200"}


async def test_the_tail_prints_every_shards_entries_once(redis_client: aioredis.Redis, stream: str) -> None:
    batch = events(30)
    await ShardedPublisher(redis_client, stream, shards=3).publish(batch)
    out = io.StringIO()
    config = TailConfig(redis_url=REDIS_URL, stream=stream, shards=3, start="0", count=30, as_json=True)
    assert await follow(redis_client, config, out) == 30
    printed = [json.loads(line)["tx_hash"] for line in out.getvalue().splitlines()]
    assert sorted(printed) == sorted(event.tx_hash for event in batch)


async def test_the_tail_stops_at_its_count_when_several_shards_answer_at_once(
    redis_client: aioredis.Redis, stream: str
) -> None:
    await ShardedPublisher(redis_client, stream, shards=3).publish(events(30))
    out = io.StringIO()
    config = TailConfig(redis_url=REDIS_URL, stream=stream, shards=3, start="0", count=4, as_json=True)
    assert await follow(redis_client, config, out) == 4
    assert len(out.getvalue().splitlines()) == 4


async def test_the_stats_aggregator_counts_every_shard_once_across_a_restart(
    redis_client: aioredis.Redis, stream: str
) -> None:
    settings = RunnerSettings(block_ms=100, count=10, claim_idle_ms=300, retry_delay_ms=50, group_start="0")
    consumer = ConsumerConfig(stream=stream, shards=3, group="stats", consumer="s1", settings=settings)
    publisher = ShardedPublisher(redis_client, stream, shards=3)
    await publisher.publish(events(30))
    first = StatsService(StatsConfig(consumer=consumer, interval_s=3600), redis_client, out=io.StringIO())
    await first.rebuild()
    task = asyncio.create_task(first.runner.run())
    await wait_until(lambda: first.totals.count == 30, message="every shard's events counted")
    first.runner.stop()
    await asyncio.wait_for(task, 5)
    await publisher.publish(events(12, start=30))  # while it is down

    again = StatsService(StatsConfig(consumer=consumer, interval_s=3600), redis_client, out=io.StringIO())
    # Each shard's history up to that shard's group position: the 30, and any of the 12 that Redis delivered to a
    # blocked read the stop cancelled (pending with the consumer, handed to it again below, counted once by key).
    assert 30 <= await again.rebuild() <= 42
    task = asyncio.create_task(again.runner.run())
    await wait_until(lambda: again.totals.count == 42, message="the new events counted")
    again.runner.stop()
    await asyncio.wait_for(task, 5)
    assert again.totals.count == 42 and again.runner.counters.processed == 12
    snapshot = await again.snapshot()
    assert snapshot["view"]["note"] == "full view"


def test_one_dead_letter_stream_for_every_shard_is_refused_on_a_cluster() -> None:
    """A group's dead letter is written with its entry's acknowledgement, in one transaction: in the shard's slot."""
    with pytest.raises(ConfigError, match="every shard's hash slot"):
        ConsumerConfig(
            redis_cluster_nodes=("127.0.0.1:7000",),
            stream="{liq}:stream",
            shards=3,
            group="g",
            consumer="c",
            settings=RunnerSettings(dead_letter_stream="{liq}:dead"),
        )
    one = ConsumerConfig(
        redis_cluster_nodes=("127.0.0.1:7000",),
        stream="{liq}:stream",
        group="g",
        consumer="c",
        settings=RunnerSettings(dead_letter_stream="{liq}:dead"),
    )
    assert one.shards == 1
