"""How the tail shows one stream entry: a table row for people, or a JSON line for tools. Pure: no I/O.

An entry of a type this reader does not know (a newer producer's), or of a newer schema version, is still shown:
as a row of whatever familiar fields its data has, or in JSON as its raw data. Only an entry that cannot be read
at all raises :class:`~schemas.MalformedEntry`, for the caller to report and skip.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from decimal import Decimal, InvalidOperation
from typing import Any

import msgspec

from consumers.entries import EntryId, Fields, as_text, id_text
from consumers.humanize import amount, usd, utc
from plumbing.text import printable
from schemas import (
    AdlEvent,
    Event,
    LiquidationEvent,
    MalformedEntry,
    UnknownEventType,
    UnsupportedVersion,
    decode_entry,
    event_type,
)

COLUMNS: tuple[tuple[str, int, str], ...] = (
    ("time", 23, "<"),
    ("type", 11, "<"),
    ("coin", 10, "<"),
    ("side", 5, "<"),
    ("size", 14, ">"),
    ("price", 14, ">"),
    ("value", 14, ">"),
    ("user", 42, "<"),
    ("tx", 13, "<"),
)
"""Name, width and alignment of each column; a longer value widens its cell rather than being cut."""

MISSING = "-"
_encoder = msgspec.json.Encoder()


def table_header() -> str:
    return _join(name for name, _, _ in COLUMNS)


def format_entry(entry_id: EntryId, fields: Fields, *, as_json: bool = False) -> str:
    """One entry as one line (without the newline); raises :class:`MalformedEntry` if it cannot be read."""
    try:
        event = decode_entry(fields)
    except (UnknownEventType, UnsupportedVersion):
        data = raw_data(fields)
        return _with_id(entry_id, data) if as_json else _generic_row(as_text(fields_get(fields, "type")), data)
    return event_json(entry_id, event) if as_json else event_row(event)


def event_json(entry_id: EntryId, event: Event) -> str:
    """``{"id": ..., <the event as encode_entry writes its data>}``: what decode gives, amounts as strings."""
    return _with_id(entry_id, _encoder.encode(event))


def event_row(event: Event) -> str:
    if isinstance(event, LiquidationEvent):
        side, user = event.liquidation_side, event.liquidated_user
    elif isinstance(event, AdlEvent):
        side, user = event.position_side, event.deleveraged_user
    else:  # a type added to the schemas after this function was written
        return _generic_row(event_type(event), _encoder.encode(event))
    return _row(
        utc(event.timestamp),
        event_type(event),
        event.coin,
        side,
        amount(event.size),
        amount(event.price),
        usd(event.value_usd),
        user,
        short_tx(event.tx_hash),
    )


def short_tx(tx_hash: str) -> str:
    """``0x1234…abcd``: enough to tell transactions apart and to find one in the explorer's search."""
    return tx_hash if len(tx_hash) <= 13 else f"{tx_hash[:6]}…{tx_hash[-4:]}"


def fields_get(fields: Fields, name: str) -> bytes | str | None:
    return fields.get(name.encode(), fields.get(name))


def raw_data(fields: Fields) -> bytes:
    """The entry's ``data`` as compact one-line JSON; raises :class:`MalformedEntry` unless it is a JSON object."""
    value = fields_get(fields, "data")
    if value is None:
        raise MalformedEntry("entry has no 'data' field")
    try:
        compact = msgspec.json.format(value.encode() if isinstance(value, str) else value, indent=-1)
    except msgspec.DecodeError as exc:
        raise MalformedEntry(f"data is not JSON: {exc}") from None
    if not compact.startswith(b"{"):
        raise MalformedEntry("data is not a JSON object")
    return compact


def _with_id(entry_id: EntryId, obj: bytes) -> str:
    head = b'{"id":' + _encoder.encode(id_text(entry_id))
    body = obj[1:]
    return (head + (b"}" if body == b"}" else b"," + body)).decode()


def _generic_row(kind: str, data: bytes) -> str:
    """The familiar fields of an event this reader cannot decode, wherever its data has them."""
    obj: dict[str, Any] = msgspec.json.decode(data)
    timestamp = obj.get("timestamp")
    when = MISSING
    if isinstance(timestamp, int) and not isinstance(timestamp, bool):
        try:
            when = utc(timestamp)
        except (ValueError, OverflowError, OSError):
            pass
    return _row(
        when,
        kind,
        _text(obj.get("coin")),
        _first_text(obj, "liquidation_side", "position_side", "side"),
        _number(obj.get("size"), amount),
        _number(obj.get("price"), amount),
        _number(obj.get("value_usd"), usd),
        _first_text(obj, "liquidated_user", "deleveraged_user", "user"),
        short_tx(obj["tx_hash"]) if isinstance(obj.get("tx_hash"), str) else MISSING,
    )


def _text(value: Any) -> str:
    return MISSING if value is None or isinstance(value, dict | list) else str(value)


def _first_text(obj: dict[str, Any], *names: str) -> str:
    for name in names:
        if obj.get(name) is not None:
            return _text(obj[name])
    return MISSING


def _number(value: Any, show: Callable[[Decimal], str]) -> str:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        return MISSING
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        return _text(value)
    return show(number) if number.is_finite() else _text(value)


def _row(*cells: str) -> str:
    return _join(printable(cell) for cell in cells)


def _join(cells: Iterable[str]) -> str:
    parts = [f"{cell:{align}{width}}" for cell, (_, width, align) in zip(cells, COLUMNS, strict=True)]
    return " ".join(parts).rstrip()
