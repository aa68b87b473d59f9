"""Publishing over N streams (``LIQ_SHARDS``) with the one checkpoint a source has.

Each shard is a stream with its own :class:`~producer.publisher.Publisher`: its own dedup keys and checkpoint hash,
all in its slot, so each shard's script runs on its own master. An event goes to the shard of its key
(:func:`plumbing.shards.shard_of`), so its dedup key is beside the one stream it can be in.

The source's position (watermarks, file offsets) is one position for the whole source, not one per shard, and it
must not move before every event found up to it is in its shard. So a publish writes shards 1..N-1 first (events
only) and shard 0 last, with the checkpoint, in shard 0's script: shard 0's checkpoint is the source's, the only
one read at start. A crash, an outage or a refused ``WAIT`` between two shards leaves the checkpoint where it was;
the events are published again (held by the outbox, or found again from the old position) and the shards that
already had them find their dedup keys and add nothing. Nothing is lost and nothing doubles.

With one shard this is exactly a :class:`Publisher`: same stream, same keys, same script calls.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from plumbing.redis_connect import RedisClient
from plumbing.shards import shard_of, shard_streams
from producer.publisher import Publisher, PublishResult
from schemas import Event


class ShardedPublisher:
    """The :class:`Publisher` interface the service uses, over ``shards`` streams (see the module's docstring)."""

    def __init__(
        self,
        redis: RedisClient,
        stream: str,
        *,
        shards: int = 1,
        maxlen: int = 100_000,
        dedup_ttl: int = 7 * 24 * 3600,
        batch_size: int = 500,
        wait_replicas: int = 0,
        wait_timeout_ms: int = 1000,
    ) -> None:
        self.stream = stream
        self.streams = shard_streams(stream, shards)
        self.shards = [
            Publisher(
                redis,
                name,
                maxlen=maxlen,
                dedup_ttl=dedup_ttl,
                batch_size=batch_size,
                wait_replicas=wait_replicas,
                wait_timeout_ms=wait_timeout_ms,
            )
            for name in self.streams
        ]

    @property
    def checkpoint_key(self) -> str:
        """Where the source's position is kept: shard 0's checkpoint."""
        return self.shards[0].checkpoint_key

    @property
    def wait_replicas(self) -> int:
        return self.shards[0].wait_replicas

    @wait_replicas.setter
    def wait_replicas(self, replicas: int) -> None:
        for shard in self.shards:
            shard.wait_replicas = replicas

    def route(self, events: Sequence[Event]) -> list[list[Event]]:
        """The events of each shard, in the order found (ordering holds per shard)."""
        if len(self.shards) == 1:
            return [list(events)]  # every key's shard: no key to hash
        routed: list[list[Event]] = [[] for _ in self.shards]
        for event in events:
            routed[shard_of(event.key, len(self.shards))].append(event)
        return routed

    async def publish(self, events: Sequence[Event], checkpoint: Mapping[str, str] | None = None) -> PublishResult:
        """Publish each event to its shard, shards 1.. first, then shard 0 with ``checkpoint``. A failure raises
        the Redis error with the checkpoint unmoved; calling again with the same arguments is safe."""
        routed = self.route(events)
        result = PublishResult()
        for shard, batch in list(zip(self.shards, routed, strict=True))[1:]:
            if batch:
                _merge(result, await shard.publish(batch))
        _merge(result, await self.shards[0].publish(routed[0], checkpoint))
        return result

    async def replica_count(self) -> int:
        """The fewest replicas any shard's master has: ``auto`` waits only where every master can confirm."""
        return min([await shard.replica_count() for shard in self.shards])

    async def eviction_settings(self) -> tuple[str, int]:
        """The first shard master's settings that may evict our keys, else shard 0's."""
        settings = [await shard.eviction_settings() for shard in self.shards]
        return next((s for s in settings if s[0] != "noeviction" and s[1] != 0), settings[0])

    async def load_checkpoint(self) -> dict[str, str]:
        return await self.shards[0].load_checkpoint()


def _merge(into: PublishResult, part: PublishResult) -> None:
    into.published += part.published
    into.duplicates += part.duplicates
