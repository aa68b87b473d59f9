"""Stream entries as redis-py hands them over: their ids, their fields, and what a dead letter carries."""

from __future__ import annotations

from typing import Any

from schemas.stream import Fields as Fields  # an entry's fields; empty when it was trimmed while it was pending

EntryId = bytes | str
"""An entry id as the client returns it: bytes, or str when the client decodes responses."""

Entry = tuple[EntryId, Fields]


def id_text(entry_id: EntryId) -> str:
    return entry_id.decode() if isinstance(entry_id, bytes) else entry_id


def id_tuple(entry_id: EntryId) -> tuple[int, int]:
    """``b"1700000000000-3"`` as ``(1700000000000, 3)``, for ordering ids (their text does not sort)."""
    ms, _, seq = id_text(entry_id).partition("-")
    return int(ms), int(seq or 0)


def as_text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    return str(value)


def dead_letter_fields(
    fields: Fields, *, reason: str, original_id: EntryId, group: str, consumer: str
) -> dict[bytes | str, bytes | str]:
    """The original fields, then why and where from; ours win a name clash, since they explain the letter."""
    letter: dict[bytes | str, bytes | str] = {}
    for name, value in fields.items():
        letter[name.decode(errors="replace") if isinstance(name, bytes) else name] = value
    letter.update(reason=reason, original_id=id_text(original_id), group=group, consumer=consumer)
    return letter


def read_reply_entries(reply: Any, stream: str) -> list[Entry]:
    """The entries of one stream out of an XREADGROUP reply (RESP2 list or RESP3 dict; ``None`` on timeout)."""
    if not reply:
        return []
    if isinstance(reply, dict):
        for name, entries in reply.items():
            if as_text(name) == stream:
                # RESP3 wraps the stream's entry list in one more list.
                return _entries(entries[0] if entries and isinstance(entries[0], list) else entries)
        return []
    for name, entries in reply:
        if as_text(name) == stream:
            return _entries(entries)
    return []


def _entries(raw: Any) -> list[Entry]:
    return [(entry_id, fields or {}) for entry_id, fields in raw]
