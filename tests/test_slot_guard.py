"""The slot guard: what it reads as keys, what it refuses, and that it sees what real clients send."""

from __future__ import annotations

import fakeredis
import pytest
import redis
import redis.asyncio as aioredis
from redis.crc import key_slot

from producer.publisher import Publisher
from tests.helpers import REDIS_URL, events
from tests.slot_guard import CrossSlotError, check_command, check_pipeline, command_keys

# Two keys of different slots, and two of one slot (same hash tag).
APART = ("a", "b")
TOGETHER = ("{liq}:a", "{liq}:b")
assert key_slot(b"a") != key_slot(b"b")


@pytest.mark.parametrize(
    ("args", "keys"),
    [
        (("GET", "k"), [b"k"]),
        (("SET", "k", "v", "NX", "EX", 5), [b"k"]),
        (("MGET", "a", "b"), [b"a", b"b"]),
        (("MSET", "a", "1", "b", "2"), [b"a", b"b"]),
        (("EVALSHA", "f00", 2, "a", "b", "arg"), [b"a", b"b"]),
        (("EVAL", "return 1", 0, "arg"), []),
        (("XREADGROUP", "GROUP", "g", "c", "COUNT", 10, "STREAMS", "s1", "s2", ">", ">"), [b"s1", b"s2"]),
        (("XGROUP CREATE", "s", "g", "$", "MKSTREAM"), [b"s"]),
        (("XINFO", "GROUPS", "s"), [b"s"]),
        (("ZUNIONSTORE", "d", 2, "a", "b", "WEIGHTS", 1, 2), [b"d", b"a", b"b"]),
        (("BLPOP", "a", "b", 5), [b"a", b"b"]),
        (("LMOVE", "a", "b", "LEFT", "RIGHT"), [b"a", b"b"]),
        (("CLIENT SETNAME", "producer"), []),
        (("SCRIPT", "LOAD", "return 1"), []),
        (("PUBLISH", "a", "b"), []),
    ],
)
def test_the_guard_reads_each_commands_keys_where_redis_does(args: tuple[object, ...], keys: list[bytes]) -> None:
    assert command_keys(args) == keys  # type: ignore[arg-type]


def test_a_multi_key_command_across_slots_is_refused_with_the_keys_and_slots_named() -> None:
    with pytest.raises(CrossSlotError, match=r"MGET spans 2 cluster slots: b'a' \(slot 15495\).*b'b' \(slot 3300\)"):
        check_command(("MGET", *APART))
    check_command(("MGET", *TOGETHER))
    check_command(("EVALSHA", "f00", 1, "a", "b"))  # "b" is an argument, not a key


def test_a_transaction_must_stay_in_one_slot_but_a_plain_pipeline_may_not() -> None:
    one_each = [("SET", APART[0], "1"), ("SET", APART[1], "2")]
    with pytest.raises(CrossSlotError, match=r"MULTI\.\.EXEC spans 2 cluster slots"):
        check_pipeline([("MULTI",), *one_each, ("EXEC",)])
    check_pipeline(one_each)
    check_pipeline([("MULTI",), ("SET", TOGETHER[0], "1"), ("SET", TOGETHER[1], "2"), ("EXEC",)])
    check_pipeline([("MULTI",), ("SET", APART[0], "1"), ("DISCARD",), ("SET", APART[1], "2")])


async def test_the_guard_stops_cross_slot_scripts_and_transactions_of_the_async_client(
    slot_guard: None, redis_client: aioredis.Redis, prefix: str
) -> None:
    apart = [f"{prefix}:a", f"{prefix}:b"]
    assert key_slot(apart[0].encode()) != key_slot(apart[1].encode())
    script = redis_client.register_script("return #KEYS")
    with pytest.raises(CrossSlotError, match="EVALSHA"):
        await script(keys=apart)
    with pytest.raises(CrossSlotError, match=r"MULTI\.\.EXEC"):
        async with redis_client.pipeline(transaction=True) as pipe:
            pipe.set(apart[0], "1")
            pipe.set(apart[1], "2")
            await pipe.execute()
    assert await redis_client.exists(*apart[:1]) == 0  # refused before it was sent: nothing was written

    tagged = [f"{{{prefix}}}:a", f"{{{prefix}}}:b"]
    assert await script(keys=tagged) == 2
    async with redis_client.pipeline(transaction=True) as pipe:
        pipe.set(tagged[0], "1")
        pipe.set(tagged[1], "2")
        assert await pipe.execute() == [True, True]


async def test_the_guard_sees_fakeredis_and_the_sync_client_too(slot_guard: None, prefix: str) -> None:
    fake = fakeredis.FakeAsyncRedis(server=fakeredis.FakeServer())
    with pytest.raises(CrossSlotError, match="MGET"):
        await fake.mget("a", "b")
    assert await fake.mget("{t}:a", "{t}:b") == [None, None]
    await fake.aclose()
    client = redis.Redis.from_url(REDIS_URL)
    try:
        with pytest.raises(CrossSlotError, match="DEL"):
            client.delete(f"{prefix}:a", f"{prefix}:b")
    finally:
        client.close()


@pytest.mark.parametrize("name", ["{prefix}:liquidations", "hl:{{{prefix}}}:liquidations"])
async def test_the_publish_script_keeps_to_the_streams_slot(
    slot_guard: None, redis_client: aioredis.Redis, prefix: str, name: str
) -> None:
    """The one script the producer runs passes the guard, with and without a hash tag in the stream's name."""
    publisher = Publisher(redis_client, name.format(prefix=prefix), batch_size=3)
    result = await publisher.publish(events(5), checkpoint={"fills:0xabc": "1"})
    assert len(result.published) == 5
    assert await publisher.load_checkpoint() == {"fills:0xabc": "1"}
