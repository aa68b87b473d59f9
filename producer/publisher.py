"""Exactly once into the stream: deduplicate and XADD in one atomic step inside Redis.

A Lua script takes a batch of events. For each one it sets the event's dedup key with ``SET NX EX`` and, only if
that succeeded, appends the entry with ``XADD MAXLEN ~`` (or, for an event whose figures are complete, when the
key names a partial one: a complete event is never shadowed by a partial one published first, say by an API
producer beside a node producer); in the same script it records the source's checkpoint
(watermarks, file offsets). Redis runs a script atomically, so there is no moment at which an event is marked
as published but not in the stream, or in the stream with the checkpoint behind it: a crash either happened
before the script (nothing changed; the next run redoes the work) or after it (all of it is there). Two producers
racing on the same liquidation both run the script; the second finds the key and adds nothing.

All keys share the stream's hash slot (``{tag}`` prefix), so the script also runs on Redis Cluster, and they are
the stream's own: two streams that share a hash tag share no dedup key and no checkpoint (:func:`key_namespace`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from redis.asyncio.cluster import RedisCluster
from redis.exceptions import ReadOnlyError, RedisError, ResponseError

from plumbing.redis_connect import RedisClient

# Re-exported: the producer's config and demo, and the bench, know these names from here.
from plumbing.stream_keys import UnslottableStreamName as UnslottableStreamName
from plumbing.stream_keys import hash_tag as hash_tag
from plumbing.stream_keys import key_namespace as key_namespace
from schemas import Event
from schemas.stream import ENTRY_FIELDS, entry_values

log = logging.getLogger("producer.publisher")

PUBLISH_SCRIPT = """
-- KEYS[1] stream, KEYS[2] checkpoint hash, KEYS[3..] one dedup key per event, then, if ARGV[4] is 1, the same
-- events' dedup keys under the names before the upgrade, which count as published too
-- ARGV[1] dedup ttl (s), ARGV[2] maxlen, ARGV[3] n checkpoint fields, ARGV[4] legacy keys given (0/1),
-- ARGV[5] f entry fields, then the f field names, then n field/value pairs, then per event its f values and
-- 'c' (its figures are complete) or 'p' (partial). A dedup key holds the published event's 'c' or 'p' ('1': a
-- version before the distinction, taken as complete): a complete event after a partial one is published too.
local ttl, maxlen, ncp, legacy = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4] == '1'
local f = tonumber(ARGV[5])
local cp = 6 + f
local first = cp + 2 * ncp
local n = #KEYS - 2
if legacy then n = n / 2 end
local entry = {}
local ids = {}
local function fresh(key, legacy_key, kind)
  if legacy_key and redis.call('EXISTS', legacy_key) == 1 then return false end
  if redis.call('SET', key, kind, 'NX', 'EX', ttl) then return true end
  if kind == 'c' and redis.call('GET', key) == 'p' then
    local left = redis.call('PTTL', key)
    redis.call('SET', key, 'c', 'PX', left > 0 and left or ttl * 1000)
    return true
  end
  return false
end
for i = 1, n do
  local key, a = KEYS[2 + i], first + (i - 1) * (f + 1)
  if fresh(key, legacy and KEYS[2 + n + i], ARGV[a + f]) then
    for j = 1, f do
      entry[2 * j - 1], entry[2 * j] = ARGV[5 + j], ARGV[a + j - 1]
    end
    ids[#ids + 1] = redis.call('XADD', KEYS[1], 'MAXLEN', '~', maxlen, '*', unpack(entry))
  else
    ids[#ids + 1] = false
  end
end
if ncp > 0 then
  redis.call('HSET', KEYS[2], unpack(ARGV, cp, first - 1))
end
return ids
"""

TAKE_OVER_SCRIPT = """
-- KEYS[1] the stream's checkpoint, KEYS[2] the checkpoint under its name before the upgrade
if redis.call('EXISTS', KEYS[1]) == 0 and redis.call('EXISTS', KEYS[2]) == 1 then
  redis.call('RENAME', KEYS[2], KEYS[1])
  return 1
end
return 0
"""


def eviction_risk(policy: str, maxmemory: int) -> str | None:
    """What Redis may evict of ours when memory is full, or None if nothing.

    Exactly once rests on keys outliving their purpose: a dedup key evicted before its TTL lets a restarted
    producer publish its event again; a stream or checkpoint evicted loses entries or positions. ``volatile-*``
    evicts keys with a TTL, which are exactly the dedup keys; ``allkeys-*`` anything. Without a ``maxmemory``
    nothing is ever evicted, whatever the policy.
    """
    if policy == "noeviction" or maxmemory == 0:
        return None
    if policy.startswith("volatile-"):
        return "keys with a TTL, i.e. the dedup keys, so a restarted producer could publish an event twice"
    if policy.startswith("allkeys-"):
        return "any key: the stream, its consumer groups, the checkpoint and the dedup keys"
    return "keys of its choosing (a policy this version does not know)"


def legacy_key_namespace(stream: str) -> str | None:
    """The prefix earlier versions used for a stream with a ``{tag}`` (``{tag}:``, shared by every stream with that
    tag), or None where it is the same as :func:`key_namespace`'s."""
    tag = hash_tag(stream)
    return f"{{{tag}}}:" if tag != stream else None


def dedup_prefix(stream: str) -> str:
    return key_namespace(stream) + "dedup:"


def dedup_key(stream: str, key: str) -> str:
    return dedup_prefix(stream) + key


def checkpoint_key(stream: str) -> str:
    return key_namespace(stream) + "checkpoint"


WRITTEN_FIELD = "publisher:written-ms"
"""A checkpoint field every publish writes while it waits for replicas. ``WAIT`` counts the replicas that have
this connection's last write: a publish that wrote nothing (every event already there, from an attempt whose
``WAIT`` fell short) would be confirmed at once without it, on a fresh connection, whatever the replicas hold.
The sources read only their own fields."""


_ON_A_REPLICA = "cannot be used with replica instances"
"""How Redis refuses WAIT on a replica."""


class NotReplicated(RedisError):
    """A publish reached the master but not yet the replicas asked for: a failover now could lose it.

    Nothing is wrong with what was written; it is simply not yet safe. The caller keeps the events and publishes
    them again: the dedup keys skip what the master still has, and re-add what a failover lost."""

    def __init__(self, acknowledged: int, wanted: int, timeout_ms: int) -> None:
        super().__init__(f"{acknowledged} of {wanted} replicas had the publish after {timeout_ms} ms (WAIT)")
        self.acknowledged = acknowledged


@dataclass
class PublishResult:
    published: list[tuple[Event, str]] = field(default_factory=list)
    """Events that reached the stream, with their entry ids."""
    duplicates: list[Event] = field(default_factory=list)
    """Events whose key was already set: published before, by us or by another producer."""


class Publisher:
    """Publishes batches of events through the script; pipelines the batches of one call (one after another on a
    cluster, whose client refuses scripts in a pipeline).

    With ``wait_replicas``, a publish returns only once that many replicas have it (``WAIT``), and raises
    :class:`NotReplicated` otherwise: what it returned can then survive the master's loss.
    """

    def __init__(
        self,
        redis: RedisClient,
        stream: str,
        *,
        maxlen: int = 100_000,
        dedup_ttl: int = 7 * 24 * 3600,
        batch_size: int = 500,
        wait_replicas: int = 0,
        wait_timeout_ms: int = 1000,
    ) -> None:
        self.redis = redis
        self.wait_replicas = wait_replicas
        self.wait_timeout_ms = wait_timeout_ms
        self.stream = stream
        self.maxlen = maxlen
        self.dedup_ttl = dedup_ttl
        self.batch_size = batch_size
        self.checkpoint_key = checkpoint_key(stream)
        self.dedup_prefix = dedup_prefix(stream)
        self._dedup_prefix_bytes = self.dedup_prefix.encode()
        legacy = legacy_key_namespace(stream)
        self.legacy_dedup_prefix = None if legacy is None else legacy + "dedup:"
        """Where an earlier version put this stream's dedup keys: still honoured, until they expire."""
        self.legacy_checkpoint_key = None if legacy is None else legacy + "checkpoint"
        self._script = redis.register_script(PUBLISH_SCRIPT)
        self._take_over = redis.register_script(TAKE_OVER_SCRIPT)

    async def publish(self, events: Sequence[Event], checkpoint: Mapping[str, str] | None = None) -> PublishResult:
        """Publish ``events`` and then record ``checkpoint`` (with the last batch, so it never runs ahead).

        A failure raises the Redis error; batches that went through stay published, and calling again with the
        same arguments is safe: their keys make them duplicates.
        """
        cp = dict(checkpoint or {})
        batches = [events[i : i + self.batch_size] for i in range(0, len(events), self.batch_size)] or [[]]
        if not events and not cp:
            return PublishResult()
        if self.wait_replicas:
            cp[WRITTEN_FIELD] = str(int(time.time() * 1000))
        arguments = [
            self._script_arguments(batch, cp if n == len(batches) - 1 else {}) for n, batch in enumerate(batches)
        ]
        if isinstance(self.redis, RedisCluster):
            replies = [await self._script(keys=keys, args=args) for keys, args in arguments]
        else:
            async with self.redis.pipeline(transaction=False) as pipe:
                for keys, args in arguments:
                    await self._script(keys=keys, args=args, client=pipe)
                replies = await pipe.execute()
        if self.wait_replicas:
            acknowledged = await self.wait(self.wait_replicas, self.wait_timeout_ms)
            if acknowledged < self.wait_replicas:
                raise NotReplicated(acknowledged, self.wait_replicas, self.wait_timeout_ms)
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
    ) -> tuple[list[str | bytes], list[str | bytes | int]]:
        # The script names no entry field: it is given schemas.stream's names once and each event's values, so the
        # entry has one definition whichever side writes it, and per event only its values travel (client-side
        # packing is the bottleneck).
        keys: list[str | bytes] = [self.stream, self.checkpoint_key]
        args: list[str | bytes | int] = [
            self.dedup_ttl,
            self.maxlen,
            len(checkpoint),
            0 if self.legacy_dedup_prefix is None else 1,
            len(ENTRY_FIELDS),
            *ENTRY_FIELDS,
        ]
        for name, value in checkpoint.items():
            args += [name, value]
        prefix = self._dedup_prefix_bytes
        entry_keys: list[bytes] = []
        for event in batch:
            values = entry_values(event)
            entry_keys.append(values[2])  # the event's key, built once: a property that joins its parts each time
            args += [*values, b"c" if event.complete else b"p"]
        keys += [prefix + key for key in entry_keys]
        if self.legacy_dedup_prefix is not None:
            legacy = self.legacy_dedup_prefix.encode()
            keys += [legacy + key for key in entry_keys]
        return keys, args

    async def replica_count(self) -> int:
        """How many replicas the stream's master has connected (``INFO replication``). Not ``WAIT 0 0``: that
        counts the replicas that have acknowledged the latest offset, which they do once a second."""
        if isinstance(self.redis, RedisCluster):
            node = self.redis.get_node_from_key(self.stream)
            info = await self.redis.info("replication", target_nodes=node)
        else:
            info = await self.redis.info("replication")
        if info.get("role") != "master":  # demoted under us: publishing fails (READONLY) until it is a master
            return 0
        return int(info.get("connected_slaves", 0))

    async def wait(self, replicas: int, timeout_ms: int) -> int:
        """``WAIT`` on the stream's master: how many replicas have this connection's writes. The publisher is used
        one call at a time, so its commands share one connection."""
        try:
            if isinstance(self.redis, RedisCluster):
                node = self.redis.get_node_from_key(self.stream)
                return int(await self.redis.execute_command("WAIT", replicas, timeout_ms, target_nodes=node))
            return int(await self.redis.wait(replicas, timeout_ms))
        except ResponseError as exc:
            if _ON_A_REPLICA in str(exc):  # a master demoted under us: no place to publish, for now
                raise ReadOnlyError(str(exc)) from exc
            raise

    async def eviction_settings(self) -> tuple[str, int]:
        """Redis's ``maxmemory-policy`` and ``maxmemory``; raises the Redis error if CONFIG GET is denied."""
        replies: list[Any]
        if isinstance(self.redis, RedisCluster):  # the stream's master is the node whose memory matters
            node = self.redis.get_node_from_key(self.stream)
            replies = [
                await self.redis.config_get("maxmemory-policy", target_nodes=node),
                await self.redis.config_get("maxmemory", target_nodes=node),
            ]
        else:
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.config_get("maxmemory-policy")
                pipe.config_get("maxmemory")
                replies = await pipe.execute()
        policy, maxmemory = replies
        return _text(policy.get("maxmemory-policy", b"noeviction")), int(maxmemory.get("maxmemory", 0))

    async def load_checkpoint(self) -> dict[str, str]:
        """The stream's checkpoint; on the first start after an upgrade, the one an earlier version wrote.

        Earlier versions kept one checkpoint per hash tag, shared by every stream with that tag. The first stream
        of the tag to start takes it over (renamed, so no sibling stream resumes from it as well).
        """
        raw = await self.redis.hgetall(self.checkpoint_key)
        if not raw and self.legacy_checkpoint_key is not None:
            if await self._take_over(keys=[self.checkpoint_key, self.legacy_checkpoint_key]):
                log.warning(
                    "took over the checkpoint %s written before the upgrade as %s; the dedup keys under %s* are "
                    "honoured until they expire",
                    self.legacy_checkpoint_key,
                    self.checkpoint_key,
                    self.legacy_dedup_prefix,
                )
                raw = await self.redis.hgetall(self.checkpoint_key)
        return {_text(k): _text(v) for k, v in raw.items() if _text(k) != WRITTEN_FIELD}


def _text(value: bytes | str) -> str:
    """Works whether or not the caller's client was made with ``decode_responses=True``."""
    return value.decode() if isinstance(value, bytes) else value
