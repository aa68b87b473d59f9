"""How far behind a consumer group is, and what trimming took from it before it was read: pure, from XINFO.

``XADD MAXLEN`` trims the oldest entries whether or not every group has read them. Redis does not say when it
trims past a group, and after it has, its own ``lag`` (``entries-added`` minus the group's ``entries-read``)
counts the trimmed entries as still to come, before the group reads on and for good after. :func:`assess` finds
the entries a group lost from the two XINFO replies and says what the group's ``entries-read`` must become for
Redis's lag to be true again. Entries deleted with XDEL leave Redis unable to count; then nothing is claimed.
Redis before 7.0 gives neither counter: nothing can be told, and nothing is claimed either.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from consumers.entries import as_text, id_tuple


@dataclass(frozen=True, kw_only=True)
class StreamInfo:
    """What :func:`assess` needs of XINFO STREAM."""

    length: int
    first_id: str | None
    """The oldest entry still in the stream; None when it is empty."""
    last_generated_id: str
    max_deleted_id: str
    entries_added: int | None
    """Entries ever added (Redis 7+; None before)."""

    @classmethod
    def from_reply(cls, reply: Mapping[Any, Any]) -> StreamInfo:
        first = reply.get("first-entry")
        added = reply.get("entries-added")
        return cls(
            length=int(reply["length"]),
            first_id=as_text(first[0]) if first else None,
            last_generated_id=as_text(reply["last-generated-id"]),
            max_deleted_id=as_text(reply.get("max-deleted-entry-id") or "0-0"),
            entries_added=None if added is None else int(added),
        )


@dataclass(frozen=True, kw_only=True)
class GroupInfo:
    """What :func:`assess` needs of one group's line of XINFO GROUPS."""

    last_delivered_id: str
    entries_read: int | None
    """Entries the group was handed, as Redis counts them (None when Redis lost count, or before 7.0)."""
    lag: int | None
    """Redis's own figure."""

    @classmethod
    def from_reply(cls, reply: Mapping[Any, Any]) -> GroupInfo:
        read, lag = reply.get("entries-read"), reply.get("lag")
        return cls(
            last_delivered_id=as_text(reply["last-delivered-id"]),
            entries_read=None if read is None else int(read),
            lag=None if lag is None else int(lag),
        )


@dataclass(frozen=True)
class Assessment:
    lag: int | None
    """Entries still in the stream that the group has yet to be handed; None when it cannot be told."""
    lost: int = 0
    """Entries trimmed before the group was handed them, not yet accounted for."""
    gap: tuple[str, str] | None = None
    """(last delivered, first retained): the lost entries lay between, when the group has not read past them."""
    entries_read: int | None = None
    """What the group's ``entries-read`` must be set to (XGROUP SETID … ENTRIESREAD) to account for ``lost``."""


def assess(stream: StreamInfo, group: GroupInfo) -> Assessment:
    """The group's true lag and what trimming took from it since it was last accounted for."""
    added, read = stream.entries_added, group.entries_read
    last = id_tuple(group.last_delivered_id)
    deletions_ahead = id_tuple(stream.max_deleted_id) > last
    if added is None or read is None or deletions_ahead:
        return Assessment(lag=group.lag)
    behind_all = stream.first_id is None or last < id_tuple(stream.first_id)
    if behind_all:
        # Every entry still in the stream is ahead of the group; every one before the first was added, and is gone.
        before_first = added - stream.length
        lost = before_first - read
        if lost <= 0:
            return Assessment(lag=stream.length)
        gap = None if stream.first_id is None else (group.last_delivered_id, stream.first_id)
        return Assessment(lag=stream.length, lost=lost, gap=gap, entries_read=before_first)
    if last >= id_tuple(stream.last_generated_id):
        # Caught up: whatever Redis still counts as to come went before the group got to it.
        lost = added - read
        if lost <= 0:
            return Assessment(lag=0)
        return Assessment(lag=0, lost=lost, entries_read=added)
    return Assessment(lag=group.lag)  # mid-stream: Redis counts right unless a gap was read through unseen
