"""What travels on the liquidation stream: the event Structs and the entry contract every subscriber reads."""

from schemas.errors import EntryError, MalformedEntry, UnknownEventType, UnpublishableEvent, UnsupportedVersion
from schemas.events import (
    SCHEMA_VERSION,
    ZERO_HASH,
    AdlEvent,
    Event,
    LiquidationEvent,
    Method,
    Side,
    Source,
    event_key,
)
from schemas.stream import decode_entry, encode_entry, event_problem, event_type

__all__ = [
    "SCHEMA_VERSION",
    "ZERO_HASH",
    "AdlEvent",
    "EntryError",
    "Event",
    "LiquidationEvent",
    "MalformedEntry",
    "Method",
    "Side",
    "Source",
    "UnknownEventType",
    "UnpublishableEvent",
    "UnsupportedVersion",
    "decode_entry",
    "encode_entry",
    "event_key",
    "event_problem",
    "event_type",
]
