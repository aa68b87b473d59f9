"""How an event is laid out in a Redis stream entry, and how it is read back.

An entry is self-describing so that a subscriber in any language can read it without this package:

========  ==================================================================
field     meaning
========  ==================================================================
``type``  the event type (``liquidation``, ``adl``), the same as ``data["type"]``
``v``     the schema version of ``data`` (an integer, as text)
``key``   the deduplication key of the event (also a good idempotency key)
``data``  the event as one JSON object (amounts as decimal strings)
========  ==================================================================
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgspec

from schemas.errors import MalformedEntry, UnknownEventType, UnpublishableEvent, UnsupportedVersion
from schemas.events import EVENT_TYPES, SCHEMA_VERSION, Event
from schemas.limits import amount_problem, timestamp_problem

Fields = Mapping[Any, bytes | str]
"""An entry's fields, named by bytes or by str (as the client returns them, or as :func:`encode_entry` writes them).

The names are ``Any`` because a mapping's key type is invariant: ``Mapping[bytes | str, ...]`` would refuse the
``dict[bytes, bytes]`` a client returns and the ``dict[str, bytes]`` of :func:`encode_entry`."""

ENTRY_FIELDS = ("type", "v", "key", "data")
"""The entry's field names, in the order they are written (the table above)."""

_VERSION = str(SCHEMA_VERSION).encode()
_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(Event)

DEFAULT_STREAM = "hyperliquid:liquidations"
"""The stream every process uses unless told otherwise."""


def event_type(event: Event) -> str:
    """The tag msgspec writes into ``data["type"]`` for this event."""
    tag = type(event).__struct_config__.tag
    assert isinstance(tag, str)
    return tag


def event_problem(event: Event) -> str | None:
    """Why ``event`` must not travel on the stream (an amount or a time no reader can use), or None.

    msgspec checks the declared bounds of integers while decoding, but not while building or encoding, and it has
    no bounds for decimals: this check is the one both sides share.
    """
    for name in ("price", "size", "value_usd", "mark_price"):
        value = getattr(event, name)
        if value is not None and (problem := amount_problem(value)) is not None:
            return f"{name}: {problem}"
    if (problem := timestamp_problem(event.timestamp)) is not None:
        return f"timestamp: {problem}"
    if event.detected_at and (problem := timestamp_problem(event.detected_at)) is not None:
        return f"detected_at: {problem}"
    return None


def entry_values(event: Event) -> tuple[bytes, bytes, bytes, bytes]:
    """The values of the stream entry's :data:`ENTRY_FIELDS`, in that order, without :func:`event_problem`'s check.

    The one place the layout is written: :func:`encode_entry` pairs them with the names, and the producer's publish
    script is given the names once and these values per event, so it names no field of its own (the producer
    checks its events when it builds them).
    """
    return event_type(event).encode(), _VERSION, event.key.encode(), _encoder.encode(event)


def encode_entry(event: Event) -> dict[str, bytes]:
    """The stream entry's fields for one event; raises :class:`UnpublishableEvent` for one no reader could use."""
    problem = event_problem(event)
    if problem is not None:
        raise UnpublishableEvent(event.key, problem)
    return dict(zip(ENTRY_FIELDS, entry_values(event), strict=True))


def _field(fields: Fields, name: str) -> bytes:
    value = fields.get(name.encode(), fields.get(name))
    if value is None:
        raise MalformedEntry(f"entry has no {name!r} field")
    return value.encode() if isinstance(value, str) else value


def decode_entry(fields: Fields) -> Event:
    """Read an entry written by :func:`encode_entry` (or by any producer that honours the contract).

    Raises :class:`UnknownEventType` for a type this version does not know (a newer producer's; skip it),
    :class:`UnsupportedVersion` for a newer major schema, and :class:`MalformedEntry` for anything else wrong,
    amounts and times outside :mod:`schemas.limits` included. Nothing else escapes, whatever the fields hold.
    """
    kind = _field(fields, "type").decode(errors="replace")
    if kind not in EVENT_TYPES:
        raise UnknownEventType(kind)
    raw_version = _field(fields, "v")
    try:
        version = int(raw_version)
    except ValueError:
        raise MalformedEntry(f"schema version {raw_version!r} is not an integer") from None
    if version > SCHEMA_VERSION:
        raise UnsupportedVersion(version, SCHEMA_VERSION)
    try:
        event: Event = _decoder.decode(_field(fields, "data"))
    except msgspec.DecodeError as exc:
        raise MalformedEntry(f"data does not decode as a {kind} event: {exc}") from exc
    if event_type(event) != kind:
        raise MalformedEntry(f"entry type {kind!r} but its data says {event_type(event)!r}")
    problem = event_problem(event)
    if problem is not None:
        raise MalformedEntry(f"data of the {kind} event is unusable: {problem}")
    return event
