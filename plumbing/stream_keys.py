"""The names of a stream's own keys, all in the stream's Redis Cluster hash slot.

Redis Cluster runs a script or a MULTI..EXEC only when every key it touches hashes to one slot, and a stream's keys
travel together in both: the producer's dedup keys and checkpoint (one script), a group's dead letters and the
acknowledgements of their entries (one transaction), the alerter's markers (one MGET, one script). So every key a
process derives from the stream name is built here, from the stream's slot; a plain Redis does not care, and the
names are the same there, so moving to a cluster moves no key.
"""

from __future__ import annotations

from redis.crc import key_slot

from plumbing.errors import ConfigError


class UnslottableStreamName(ConfigError):
    """No other key can share the stream's hash slot, so its scripts and transactions could not run on a cluster."""

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
    """The prefix of the producer's keys for the stream: in the stream's hash slot, and no other stream's.

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


def stream_key(stream: str, suffix: str) -> str:
    """A consumer-side key of the stream (dead letters, alert markers, held alerts, stats snapshots), in its slot.

    A stream with a ``{tag}`` keeps the names earlier versions used, ``<stream>:<suffix>``: the tag is already in
    them. A stream without one gets ``{<stream>}:<suffix>``, since ``<stream>:<suffix>`` would hash elsewhere (the
    ``{<stream>}:`` prefix the producer's keys have always had, so one ACL pattern covers both).
    """
    if hash_tag(stream) != stream:
        return f"{stream}:{suffix}"
    return key_namespace(stream) + suffix


def same_slot(key: str, other: str) -> bool:
    """Whether Redis Cluster keeps the two keys in one slot (so one script or transaction may touch both)."""
    return key_slot(key.encode()) == key_slot(other.encode())
