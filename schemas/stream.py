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

from schemas.errors import MalformedEntry, UnknownEventType, UnsupportedVersion
from schemas.events import EVENT_TYPES, SCHEMA_VERSION, Event

Fields = Mapping[Any, bytes | str]
"""An entry's fields, named by bytes or by str (as the client returns them, or as :func:`encode_entry` writes them).

The names are ``Any`` because a mapping's key type is invariant: ``Mapping[bytes | str, ...]`` would refuse the
``dict[bytes, bytes]`` a client returns and the ``dict[str, bytes]`` of :func:`encode_entry`."""

_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(Event)


def event_type(event: Event) -> str:
    """The tag msgspec writes into ``data["type"]`` for this event."""
    tag = type(event).__struct_config__.tag
    assert isinstance(tag, str)
    return tag


def encode_entry(event: Event) -> dict[str, bytes]:
    """The stream entry's fields for one event."""
    return {
        "type": event_type(event).encode(),
        "v": str(SCHEMA_VERSION).encode(),
        "key": event.key.encode(),
        "data": _encoder.encode(event),
    }


def _field(fields: Fields, name: str) -> bytes:
    value = fields.get(name.encode(), fields.get(name))
    if value is None:
        raise MalformedEntry(f"entry has no {name!r} field")
    return value.encode() if isinstance(value, str) else value


def decode_entry(fields: Fields) -> Event:
    """Read an entry written by :func:`encode_entry` (or by any producer that honours the contract).

    Raises :class:`UnknownEventType` for a type this version does not know (a newer producer's; skip it),
    :class:`UnsupportedVersion` for a newer major schema, and :class:`MalformedEntry` for anything else wrong.
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
    return event
