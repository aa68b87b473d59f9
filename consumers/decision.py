"""What the runner does with one stream entry, decided without Redis: pure, so every outcome is tested directly.

The runner reads, decides with :func:`decide`, then does the I/O the decision names: hand the event to the
handler, dead-letter the entry, or acknowledge it unhandled. Keeping the decision apart means the poison rules
(what is dead-lettered, what is merely not for this reader) read in one place, in the order they apply.
"""

from __future__ import annotations

from dataclasses import dataclass

from consumers.entries import EntryId, Fields, id_tuple
from schemas import Event, MalformedEntry, UnknownEventType, UnsupportedVersion, decode_entry


@dataclass(frozen=True, slots=True)
class Handle:
    """Give the event to the handler; acknowledge it once the handler returned."""

    event: Event
    redelivered: bool = False
    """Delivered before (a retry), counted as ``retried``."""


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """Copy the entry to the dead-letter stream with ``reason``, then acknowledge it: it can never be handled."""

    reason: str
    redelivered: bool = False
    """As for :class:`Handle`: a broken entry seen again still counts as a retry, since it was handed over again."""


@dataclass(frozen=True, slots=True)
class Trimmed:
    """The entry was trimmed from the stream while pending (its fields are gone): acknowledge, count ``deleted``."""


@dataclass(frozen=True, slots=True)
class Skipped:
    """At or before ``skip_through``, already accounted for by the service: acknowledge unhandled."""


@dataclass(frozen=True, slots=True)
class UnknownType:
    """An event type this reader does not know (a newer producer's): not broken, just not for us; acknowledge."""

    kind: str
    redelivered: bool = False


Decision = Handle | DeadLetter | Trimmed | Skipped | UnknownType


def decide(
    entry_id: EntryId,
    fields: Fields,
    *,
    delivered: int | None,
    max_deliveries: int,
    skip_through: EntryId | None = None,
) -> Decision:
    """The outcome for one entry.

    ``delivered`` is how often the entry was delivered, this delivery included, or None for a first delivery
    (read with ``>``), which needs no check. An entry delivered more than ``max_deliveries`` times is dead-lettered
    before it is decoded: whatever made its handler fail (or the process die) must not do so for ever.
    """
    if not fields:
        return Trimmed()
    if skip_through is not None and id_tuple(entry_id) <= id_tuple(skip_through):
        return Skipped()
    redelivered = False
    if delivered is not None:
        if delivered > max_deliveries:
            return DeadLetter(f"max_deliveries: delivered {delivered} times, more than the limit of {max_deliveries}")
        redelivered = delivered > 1
    try:
        event = decode_entry(fields)
    except UnknownEventType as exc:
        return UnknownType(exc.kind, redelivered)
    except UnsupportedVersion as exc:
        return DeadLetter(f"unsupported_version: {exc}", redelivered)
    except MalformedEntry as exc:
        return DeadLetter(f"malformed: {exc}", redelivered)
    return Handle(event, redelivered)
