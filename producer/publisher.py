"""Exactly once into the stream: deduplicate and XADD in one atomic step inside Redis.

A Lua script takes a batch of events. For each one it sets the event's dedup key with ``SET NX EX`` and, only if
that succeeded, appends the entry with ``XADD MAXLEN ~``; in the same script it records the source's checkpoint
(watermarks, file offsets). Redis runs a script atomically, so there is no moment at which an event is marked
as published but not in the stream, or in the stream with the checkpoint behind it: a crash either happened
before the script (nothing changed; the next run redoes the work) or after it (all of it is there). Two producers
racing on the same liquidation both run the script; the second finds the key and adds nothing.

All keys share the stream's hash slot (``{tag}`` prefix), so the script also runs on Redis Cluster.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import msgspec
from redis.asyncio import Redis

from schemas import SCHEMA_VERSION, Event, event_type

PUBLISH_SCRIPT = """
-- KEYS[1] stream, KEYS[2] checkpoint hash, KEYS[3..] one dedup key per event (prefix .. event key)
-- ARGV[1] dedup ttl (s), ARGV[2] maxlen, ARGV[3] schema version, ARGV[4] dedup prefix length,
-- ARGV[5] n checkpoint fields, then n field/value pairs, then two values per event: type, data
local ttl, maxlen, version = ARGV[1], ARGV[2], ARGV[3]
local skip, ncp = tonumber(ARGV[4]) + 1, tonumber(ARGV[5])
local first = 6 + 2 * ncp
local ids = {}
for i = 3, #KEYS do
  local a = first + (i - 3) * 2
  if redis.call('SET', KEYS[i], '1', 'NX', 'EX', ttl) then
    ids[#ids + 1] = redis.call('XADD', KEYS[1], 'MAXLEN', '~', maxlen, '*',
      'type', ARGV[a], 'v', version, 'key', string.sub(KEYS[i], skip), 'data', ARGV[a + 1])
  else
    ids[#ids + 1] = false
  end
end
if ncp > 0 then
  redis.call('HSET', KEYS[2], unpack(ARGV, 6, 5 + 2 * ncp))
end
return ids
"""


def hash_tag(stream: str) -> str:
    """The part of the stream's name Redis Cluster hashes: its ``{tag}`` if it has one, else the whole name."""
    start = stream.find("{")
    if start != -1:
        end = stream.find("}", start + 1)
        if end > start + 1:
            return stream[start + 1 : end]
    return stream


def dedup_prefix(stream: str) -> str:
    return f"{{{hash_tag(stream)}}}:dedup:"


def dedup_key(stream: str, key: str) -> str:
    return dedup_prefix(stream) + key


def checkpoint_key(stream: str) -> str:
    return f"{{{hash_tag(stream)}}}:checkpoint"


@dataclass
class PublishResult:
    published: list[tuple[Event, str]] = field(default_factory=list)
    """Events that reached the stream, with their entry ids."""
    duplicates: list[Event] = field(default_factory=list)
    """Events whose key was already set: published before, by us or by another producer."""


class Publisher:
    """Publishes batches of events through the script; pipelines the batches of one call."""

    def __init__(
        self,
        redis: Redis,
        stream: str,
        *,
        maxlen: int = 100_000,
        dedup_ttl: int = 7 * 24 * 3600,
        batch_size: int = 500,
    ) -> None:
        self.redis = redis
        self.stream = stream
        self.maxlen = maxlen
        self.dedup_ttl = dedup_ttl
        self.batch_size = batch_size
        self.checkpoint_key = checkpoint_key(stream)
        self.dedup_prefix = dedup_prefix(stream)
        self._script = redis.register_script(PUBLISH_SCRIPT)
        self._encoder = msgspec.json.Encoder()

    async def publish(self, events: Sequence[Event], checkpoint: Mapping[str, str] | None = None) -> PublishResult:
        """Publish ``events`` and then record ``checkpoint`` (with the last batch, so it never runs ahead).

        A failure raises the Redis error; batches that went through stay published, and calling again with the
        same arguments is safe: their keys make them duplicates.
        """
        cp = dict(checkpoint or {})
        batches = [events[i : i + self.batch_size] for i in range(0, len(events), self.batch_size)] or [[]]
        if not events and not cp:
            return PublishResult()
        async with self.redis.pipeline(transaction=False) as pipe:
            for n, batch in enumerate(batches):
                last = n == len(batches) - 1
                keys, args = self._script_arguments(batch, cp if last else {})
                await self._script(keys=keys, args=args, client=pipe)
            replies = await pipe.execute()
        result = PublishResult()
        for batch, ids in zip(batches, replies, strict=True):
            for event, entry_id in zip(batch, ids, strict=True):
                if entry_id is None:
                    result.duplicates.append(event)
                else:
                    result.published.append((event, _text(entry_id)))
        return result

    def _script_arguments(
        self, batch: Sequence[Event], checkpoint: Mapping[str, str]
    ) -> tuple[list[str], list[str | bytes | int]]:
        # Per event only the dedup key, the type and the JSON travel: the script derives the entry's "key" field
        # from the dedup key and takes the version once, which keeps client-side packing (the bottleneck) short.
        keys = [self.stream, self.checkpoint_key]
        args: list[str | bytes | int] = [
            self.dedup_ttl,
            self.maxlen,
            SCHEMA_VERSION,
            len(self.dedup_prefix),
            len(checkpoint),
        ]
        for name, value in checkpoint.items():
            args += [name, value]
        for event in batch:
            keys.append(self.dedup_prefix + event.key)
            args += [event_type(event), self._encoder.encode(event)]
        return keys, args

    async def load_checkpoint(self) -> dict[str, str]:
        raw = await self.redis.hgetall(self.checkpoint_key)
        return {_text(k): _text(v) for k, v in raw.items()}


def _text(value: bytes | str) -> str:
    """Works whether or not the caller's client was made with ``decode_responses=True``."""
    return value.decode() if isinstance(value, bytes) else value
