"""Exactly once into a real Redis stream: dedup and XADD in one script, checkpoints with the last batch."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import pytest
import redis.asyncio as aioredis
from msgspec.structs import replace
from redis.crc import key_slot

from plumbing.errors import ConfigError
from producer.config import load_config
from producer.publisher import (
    PUBLISH_SCRIPT,
    NotReplicated,
    Publisher,
    UnslottableStreamName,
    checkpoint_key,
    dedup_key,
    eviction_risk,
    hash_tag,
    key_namespace,
)
from schemas import Event, decode_entry, encode_entry
from schemas.stream import ENTRY_FIELDS
from tests.faults.invariants import raw_entries
from tests.helpers import REDIS_URL, events, make_adl, make_event


@pytest.mark.parametrize(
    ("stream", "tag"),
    [
        ("hyperliquid:liquidations", "hyperliquid:liquidations"),
        ("{liq}:stream", "liq"),
        ("a{}b", "a{}b"),
        ("x{y", "x{y"),
    ],
)
def test_hash_tag_follows_redis_cluster_rules(stream: str, tag: str) -> None:
    assert hash_tag(stream) == tag


SLOTTABLE = [
    "hyperliquid:liquidations",
    "{liq}:stream",
    "prod:{hl}:liqs",
    "replay:{hl}:liqs",
    "x{y",
    "{",
    "{{",
    "a{",
    "{a{b}c",
    "{{a}}",
    "a{b}}c",
    "{a}}",
    "a{b}{c}",
    "{ }",
    "liq:\u00e9\u20ac\U0001f525",
    "{\u00e9}:s",
    "tab\tnew\nline\x00nul",
    "a" * 2000,
    ":",
    " ",
]
UNSLOTTABLE = ["a{}b", "{}", "}", "x}y", "}{", "a}{b", "{}}", "}{}", "{}{a}", "a{}{b}c", ""]
"""Redis looks at the first ``{`` only: ``{}{a}`` is hashed whole, not by ``a``."""


@pytest.mark.parametrize("stream", SLOTTABLE)
def test_every_key_the_script_touches_is_in_the_streams_slot(stream: str) -> None:
    slot = key_slot(stream.encode())
    assert key_slot(dedup_key(stream, "0xabc|BTC|0xdef").encode()) == slot
    assert key_slot(dedup_key(stream, "0xabc|{x}|}{").encode()) == slot, "an event key with braces stays in the slot"
    assert key_slot(checkpoint_key(stream).encode()) == slot


@pytest.mark.parametrize("stream", UNSLOTTABLE)
def test_a_stream_name_no_other_key_can_share_a_slot_with_is_refused(stream: str) -> None:
    # Hashed whole (no non-empty tag), yet a "}" in it would end any tag we wrapped it in.
    assert hash_tag(stream) == stream
    with pytest.raises(UnslottableStreamName, match="LIQ_STREAM"):
        key_namespace(stream)


def test_streams_sharing_a_hash_tag_share_no_key() -> None:
    names = [s for s in SLOTTABLE if s != hash_tag(s)]
    assert len({checkpoint_key(s) for s in names}) == len(names)
    assert len({dedup_key(s, "k") for s in names}) == len(names)
    assert key_slot(dedup_key("prod:{hl}:liqs", "k").encode()) == key_slot(dedup_key("replay:{hl}:liqs", "k").encode())


def test_an_untagged_streams_keys_keep_the_names_earlier_versions_used() -> None:
    assert dedup_key("hyperliquid:liquidations", "k") == "{hyperliquid:liquidations}:dedup:k"
    assert checkpoint_key("hyperliquid:liquidations") == "{hyperliquid:liquidations}:checkpoint"


def test_the_producer_refuses_such_a_name_as_a_bad_setting() -> None:
    with pytest.raises(ConfigError, match="no dedup key or checkpoint can share"):
        load_config(["--stream", "a{}b"], env={})


async def test_streams_sharing_a_tag_keep_their_own_checkpoint_and_dedup_keys(
    redis_client: aioredis.Redis, prefix: str
) -> None:
    """A replay into ``replay:{t}:liqs`` must neither resume from ``prod:{t}:liqs``'s checkpoint nor find its
    events "already published"."""
    prod = Publisher(redis_client, f"prod:{{{prefix}}}:liqs")
    replay = Publisher(redis_client, f"replay:{{{prefix}}}:liqs")
    batch = events(3)
    assert len((await prod.publish(batch, {"fills:0xa": "100"})).published) == 3
    assert await replay.load_checkpoint() == {}
    again = await replay.publish(batch, {"fills:0xa": "50"})
    assert len(again.published) == 3 and not again.duplicates
    assert await prod.load_checkpoint() == {"fills:0xa": "100"}


async def test_keys_written_before_the_upgrade_are_honoured(redis_client: aioredis.Redis, prefix: str) -> None:
    """An earlier version kept ``{tag}:checkpoint`` and ``{tag}:dedup:<key>``: the upgraded producer resumes from
    that checkpoint (taking it over, so a sibling stream does not) and does not publish those events again."""
    stream = f"prod:{{{prefix}}}:liqs"
    old = f"{{{prefix}}}:"
    published_before = events(2)
    await redis_client.hset(old + "checkpoint", mapping={"fills:0xa": "100"})
    for event in published_before:
        await redis_client.set(old + "dedup:" + event.key, "1", ex=60)
    publisher = Publisher(redis_client, stream)
    assert await publisher.load_checkpoint() == {"fills:0xa": "100"}
    assert await Publisher(redis_client, f"replay:{{{prefix}}}:liqs").load_checkpoint() == {}
    result = await publisher.publish(events(3))
    assert [event.key for event in result.duplicates] == [event.key for event in published_before]
    assert [event.key for event, _ in result.published] == [events(1, start=2)[0].key]


async def test_each_event_once_even_when_published_again(redis_client: aioredis.Redis, stream: str) -> None:
    publisher = Publisher(redis_client, stream, batch_size=7)
    batch = events(20)
    first = await publisher.publish(batch)
    assert [e for e, _ in first.published] == batch and first.duplicates == []
    again = await publisher.publish(batch + events(3, start=20))
    assert again.duplicates == batch
    assert [e for e, _ in again.published] == events(3, start=20)
    entries = raw_entries(await redis_client.xrange(stream))
    assert [decode_entry(fields) for _, fields in entries] == events(23)
    assert [entry_id.decode() for entry_id, _ in entries] == [i for _, i in first.published + again.published]


async def test_a_batch_holding_a_key_twice_publishes_it_once_and_a_complete_one_behind_its_partial(
    redis_client: aioredis.Redis, stream: str
) -> None:
    partial = make_event(complete=False)
    complete = replace(partial, complete=True, fills=2, tids=(1, 2))
    other = make_event(complete=True)
    result = await Publisher(redis_client, stream).publish([partial, other, partial, complete, other, complete])
    assert [e for e, _ in result.published] == [partial, other, complete]
    assert result.duplicates == [partial, other, complete]
    assert [decode_entry(f) for _, f in raw_entries(await redis_client.xrange(stream))] == [partial, other, complete]


async def test_an_events_dedup_key_is_named_from_its_key_whatever_its_characters(
    redis_client: aioredis.Redis, stream: str
) -> None:
    event = make_event(coin="xyz:ÄÖ-币")
    await Publisher(redis_client, stream).publish([event])
    assert await redis_client.exists(dedup_key(stream, event.key)) == 1
    assert (await Publisher(redis_client, stream).publish([event])).duplicates == [event]


async def test_two_producers_racing_on_the_same_events_publish_each_once(stream: str) -> None:
    clients = [aioredis.Redis.from_url(REDIS_URL) for _ in range(2)]
    try:
        publishers = [Publisher(c, stream, batch_size=50) for c in clients]
        batch = events(500)
        results = await asyncio.gather(*(p.publish(batch) for p in publishers))
        assert sum(len(r.published) for r in results) == 500
        assert sum(len(r.duplicates) for r in results) == 500
        entries = raw_entries(await clients[0].xrange(stream))
        assert sorted(decode_entry(f).key for _, f in entries) == sorted(e.key for e in batch)
    finally:
        for c in clients:
            await c.aclose()


async def test_checkpoint_is_recorded_with_the_events(redis_client: aioredis.Redis, stream: str) -> None:
    publisher = Publisher(redis_client, stream)
    await publisher.publish(events(2), {"fills:0xa": "100", "fills:0xb": "200"})
    await publisher.publish([], {"fills:0xa": "150"})
    assert await publisher.load_checkpoint() == {"fills:0xa": "150", "fills:0xb": "200"}


async def test_dedup_keys_expire_and_the_stream_is_capped(redis_client: aioredis.Redis, stream: str) -> None:
    publisher = Publisher(redis_client, stream, maxlen=50, dedup_ttl=3600, batch_size=100)
    batch = events(1000)
    await publisher.publish(batch)
    ttl = await redis_client.ttl(dedup_key(stream, batch[0].key))
    assert 0 < ttl <= 3600
    length = await redis_client.xlen(stream)
    assert 50 <= length <= 50 + 100  # MAXLEN ~ trims whole nodes of up to 100 entries


async def test_nothing_to_publish_touches_nothing(redis_client: aioredis.Redis, stream: str) -> None:
    result = await Publisher(redis_client, stream).publish([])
    assert result.published == [] and result.duplicates == []
    assert await redis_client.exists(stream) == 0


async def test_entries_written_by_the_script_match_the_contract(redis_client: aioredis.Redis, stream: str) -> None:
    batch = events(3)
    await Publisher(redis_client, stream).publish(batch)
    entries = raw_entries(await redis_client.xrange(stream))
    assert [fields for _, fields in entries] == [{k.encode(): v for k, v in encode_entry(e).items()} for e in batch]


@pytest.mark.parametrize("tagged", [False, True], ids=["plain stream", "stream with a hash tag"])
async def test_an_entry_the_script_writes_reads_back_as_encode_entrys(
    redis_client: aioredis.Redis, prefix: str, tagged: bool
) -> None:
    # A subscriber must not be able to tell a published entry from one encode_entry made: same fields, same
    # order, same event, for every event type.
    published, written = (f"{{{prefix}}}:{name}" if tagged else f"{prefix}:{name}" for name in ("pub", "enc"))
    batch: list[Event] = [make_event(), make_adl(), *events(2)]
    result = await Publisher(redis_client, published).publish(batch, {"fills:0xabc": "1"})
    assert len(result.published) == len(batch)
    for event in batch:
        await redis_client.xadd(written, encode_entry(event))  # type: ignore[arg-type]
    by_script = [fields for _, fields in raw_entries(await redis_client.xrange(published))]
    by_encode_entry = [fields for _, fields in raw_entries(await redis_client.xrange(written))]
    assert [list(f.items()) for f in by_script] == [list(f.items()) for f in by_encode_entry]
    assert [list(f) for f in by_script] == [[name.encode() for name in ENTRY_FIELDS]] * len(batch)
    assert [decode_entry(f) for f in by_script] == [decode_entry(f) for f in by_encode_entry] == batch


def test_the_publish_script_takes_the_entry_layout_from_the_schema() -> None:
    # One definition of the entry: a field the script named itself could drift from encode_entry's.
    assert [name for name in ENTRY_FIELDS if f"'{name}'" in PUBLISH_SCRIPT] == []


@pytest.mark.parametrize(
    ("policy", "maxmemory", "evicts"),
    [
        ("noeviction", 100 << 20, None),
        ("volatile-lru", 0, None),
        ("allkeys-lru", 0, None),
        ("volatile-lru", 100 << 20, "dedup keys"),
        ("volatile-lfu", 1, "dedup keys"),
        ("volatile-ttl", 1, "dedup keys"),
        ("volatile-random", 1, "dedup keys"),
        ("allkeys-lru", 1, "the stream"),
        ("allkeys-lfu", 1, "the stream"),
        ("allkeys-random", 1, "the stream"),
        ("some-future-policy", 1, "does not know"),
    ],
)
def test_eviction_risk_names_what_the_policy_may_evict(policy: str, maxmemory: int, evicts: str | None) -> None:
    risk = eviction_risk(policy, maxmemory)
    if evicts is None:
        assert risk is None
    else:
        assert risk is not None and evicts in risk


async def test_a_complete_event_is_published_after_a_partial_one_of_its_key_never_the_reverse(
    redis_client: aioredis.Redis, stream: str
) -> None:
    """An API producer's partial view published first must not keep a node producer's exact figures out."""
    publisher = Publisher(redis_client, stream)
    partial = make_event(complete=False, size=Decimal("1"), value_usd=Decimal("97000.5"))
    complete = replace(partial, complete=True, size=Decimal("2"), value_usd=Decimal("194001"))
    assert len((await publisher.publish([partial])).published) == 1
    assert len((await publisher.publish([partial])).duplicates) == 1
    assert len((await publisher.publish([complete])).published) == 1  # the correction
    assert len((await publisher.publish([complete, partial])).duplicates) == 2
    other = make_event(complete=True)
    assert len((await publisher.publish([other])).published) == 1
    assert len((await publisher.publish([replace(other, complete=False)])).duplicates) == 1
    entries = [decode_entry(fields) for _, fields in raw_entries(await redis_client.xrange(stream))]
    assert [(e.key, e.complete) for e in entries] == [(partial.key, False), (partial.key, True), (other.key, True)]
    ttl = await redis_client.ttl(dedup_key(stream, partial.key))
    assert 0 < ttl <= publisher.dedup_ttl  # the correction kept the key's expiry


async def test_a_key_published_before_completeness_was_recorded_counts_as_complete(
    redis_client: aioredis.Redis, stream: str
) -> None:
    event = make_event(complete=True)
    await redis_client.set(dedup_key(stream, event.key), "1", ex=60)
    assert len((await Publisher(redis_client, stream).publish([event])).duplicates) == 1


async def test_a_publish_no_replica_confirmed_raises_and_a_retry_finds_its_events_already_there(
    redis_client: aioredis.Redis, stream: str
) -> None:
    """The test Redis has no replica, so WAIT 1 always falls short: the caller is told (NotReplicated) and keeps
    the events; publishing them again adds nothing, and the field that makes every waited publish a write stays
    out of the checkpoint the source resumes from."""
    publisher = Publisher(redis_client, stream, wait_replicas=1, wait_timeout_ms=20)
    batch = events(3)
    with pytest.raises(NotReplicated, match="0 of 1 replicas"):
        await publisher.publish(batch, {"fills:0xa": "100"})
    with pytest.raises(NotReplicated):
        await publisher.publish(batch, {"fills:0xa": "100"})
    assert len(raw_entries(await redis_client.xrange(stream))) == 3
    assert await publisher.load_checkpoint() == {"fills:0xa": "100"}
    assert await publisher.replica_count() == 0
