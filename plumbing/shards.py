"""Which streams a sharded stream is made of, and which of them an event goes to. Pure: no I/O.

One stream is one key, so one hash slot on one Redis Cluster master: a cluster adds no throughput to it. With
``LIQ_SHARDS=N`` the producer publishes to N streams instead, and every consumer reads all N. Both sides must
derive the same names and the same routing from the same two settings, so both are computed here.

Names. Shard 0 is the stream itself, so ``N=1`` is exactly the unsharded stream and going from 1 to N keeps its
checkpoint, its dedup keys and its groups. Shard ``i > 0`` is the stream's name with its own hash tag: appended as
``<stream>:{s<i>}`` to a name without a tag, or folded into the tag, ``prod:{hl}:liqs`` → ``prod:{hl.s<i>}:liqs``
(a second ``{...}`` would not count: Redis hashes the first). Tags are not taken at random: three random tags land
on three different masters of a 3-master cluster only 2 times in 9. Redis Cluster hands each of M masters one
contiguous M-th of the 16384 slots when it is created (``redis-cli --cluster create``), so the slot range is cut
into N equal segments, shard 0 keeps the segment its slot is in, shards 1.. take the other segments in order, and
each takes the first of ``s<i>``, ``s<i>.1``, ``s<i>.2``… whose slot lies in the middle half of its segment
(so a split that is only nearly even still puts it there). With N a multiple of M the
shards are spread evenly over the masters; the names depend only on the stream and N, never on a cluster's
current layout, so a resharded cluster keeps its stream names.

Routing. An event goes to shard ``crc32(key) mod N``: stable across processes, versions and restarts (Python's
``hash`` is salted per process), and by the event's key, so the event's dedup key lives with the one stream it can
be in: a re-publish meets its own dedup key, and exactly once holds per shard and hence overall.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator

from redis.crc import REDIS_CLUSTER_HASH_SLOTS, key_slot

from plumbing.stream_keys import hash_tag

MAX_SHARDS = 1024
"""More streams than any cluster has masters; a bound so that a typo is a bad setting, not a million streams."""


def segment(slot: int, shards: int) -> int:
    """Which of ``shards`` equal parts of the slot range ``slot`` is in."""
    return slot * shards // REDIS_CLUSTER_HASH_SLOTS


def well_inside(slot: int, shards: int) -> bool:
    """Whether ``slot`` is in the middle half of its segment: a split of the slots that is only nearly even (M
    masters do not divide 16384) still puts it on the segment's master."""
    offset = slot * shards % REDIS_CLUSTER_HASH_SLOTS
    return REDIS_CLUSTER_HASH_SLOTS // 4 <= offset < REDIS_CLUSTER_HASH_SLOTS * 3 // 4


def _candidates(i: int) -> Iterator[str]:
    yield f"s{i}"
    k = 1
    while True:
        yield f"s{i}.{k}"
        k += 1


def _named(stream: str, label: str) -> str:
    """The stream's name with ``label`` as its hash tag (folded into an existing tag, else appended)."""
    tag = hash_tag(stream)
    if tag == stream:
        return f"{stream}:{{{label}}}"
    start = stream.index("{" + tag + "}")
    return f"{stream[:start]}{{{tag}.{label}}}{stream[start + len(tag) + 2 :]}"


def shard_streams(stream: str, shards: int) -> tuple[str, ...]:
    """The N streams of ``stream``, shard 0 first (the stream itself); see the module's docstring."""
    if not 1 <= shards <= MAX_SHARDS:
        raise ValueError(f"shards must be 1 to {MAX_SHARDS}, not {shards}")
    taken = segment(key_slot(stream.encode()), shards)
    free = [s for s in range(shards) if s != taken]
    names = [stream]
    for i, wanted in enumerate(free, start=1):
        names.append(
            next(
                name
                for name in (_named(stream, label) for label in _candidates(i))
                if segment(slot := key_slot(name.encode()), shards) == wanted and well_inside(slot, shards)
            )
        )
    return tuple(names)


def shard_of(key: str, shards: int) -> int:
    """The shard an event with this dedup key is published to."""
    return zlib.crc32(key.encode()) % shards
