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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from redis.asyncio import Redis

from plumbing.errors import ConfigError
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


class UnslottableStreamName(ConfigError):
    """No other key can share the stream's hash slot, so the publish script could not run on Redis Cluster."""

    def __init__(self, stream: str) -> None:
        super().__init__(
            f"the stream name {stream!r} has no non-empty {{tag}} and contains '}}', so no dedup key or checkpoint "
            "can share its Redis Cluster hash slot: choose another --stream / LIQ_STREAM (e.g. one with a {tag})"
        )


def hash_tag(name: str) -> str:
    """The part of a key Redis Cluster hashes: the content of its first ``{...}`` if that is not empty, else the
    whole name (Redis's rule: the first ``{``, then the first ``}`` after it)."""
    start = name.find("{")
    if start != -1:
        end = name.find("}", start + 1)
        if end > start + 1:
            return name[start + 1 : end]
    return name


def key_namespace(stream: str) -> str:
    """The prefix of the stream's own keys: in the stream's hash slot, and no other stream's.

    A stream with a ``{tag}`` gets ``{tag}<stream>:``: the tag keeps the slot, the full name keeps streams that
    share the tag apart (``prod:{hl}:liqs`` and ``replay:{hl}:liqs``). A stream without one is hashed whole, so its
    keys wrap the whole name in braces: ``{<stream>}:``, the names every earlier version used. That only works
    for a name without ``}``; for such a name (``a{}b``, ``x}y``) no key but the stream itself is in its slot, and
    :class:`UnslottableStreamName` says so.
    """
    tag = hash_tag(stream)
    if tag != stream:
        return f"{{{tag}}}{stream}:"
    if not stream or "}" in stream:
        raise UnslottableStreamName(stream)
    return f"{{{stream}}}:"


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
        # The script names no entry field: it is given schemas.stream's names once and each event's values, so the
        # entry has one definition whichever side writes it, and per event only its values travel (client-side
        # packing is the bottleneck).
        keys = [self.stream, self.checkpoint_key]
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
        for event in batch:
            keys.append(self.dedup_prefix + event.key)
            args += [*entry_values(event), b"c" if event.complete else b"p"]
        if self.legacy_dedup_prefix is not None:
            keys += [self.legacy_dedup_prefix + event.key for event in batch]
        return keys, args

    async def eviction_settings(self) -> tuple[str, int]:
        """Redis's ``maxmemory-policy`` and ``maxmemory``; raises the Redis error if CONFIG GET is denied."""
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.config_get("maxmemory-policy")
            pipe.config_get("maxmemory")
            policy, maxmemory = await pipe.execute()
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
        return {_text(k): _text(v) for k, v in raw.items()}


def _text(value: bytes | str) -> str:
    """Works whether or not the caller's client was made with ``decode_responses=True``."""
    return value.decode() if isinstance(value, bytes) else value
