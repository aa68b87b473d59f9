"""Values that parse but cannot be used: what a hostile or broken exchange, or a foreign producer, can write.

Each of them once stopped something for good: ``"abc"`` as a price crashed every poll of the producer at the same
fill; ``"NaN"`` on the stream killed the stats report task and every restart's rebuild; ``1e999999999`` broke
the stats handler; ``1e30`` the alert's formatting; a time of ``2**63 - 1`` ms the alerter and the tail.
"""

from __future__ import annotations

import msgspec

from schemas import Event, encode_entry

NOT_DECIMALS = ("abc", "sNaN", "1,000", "NaN", "Infinity", "-Infinity", "-1", "1e500000", "0x10", " 1", "1\n", "")
"""Prices or sizes a fill must never be decoded with (the exchange writes plain digits only)."""

UNUSABLE_AMOUNTS = ("NaN", "Infinity", "-Infinity", "sNaN", "1e500000", "1e999999999", "-5", "1e-999999")
"""Amounts a stream entry must never be decoded with: not finite, negative, absurdly large or precise."""

HUGE_AMOUNTS = ("1e30", "123456789012345678901234567890123456789")
"""Huge but usable amounts: readers decode them, and every formatter must show them sensibly."""

UNUSABLE_TIMES = (10**15, 2**63 - 1, 0, -1)
"""Times in ms no exchange writes: past year 33,000, past any calendar, the epoch itself, before it."""


def with_field(event: Event, name: str, value: object) -> dict[bytes | str, bytes | str]:
    """The stream entry of ``event`` with one field of its data replaced by ``value`` (any JSON value)."""
    entry: dict[bytes | str, bytes | str] = {name: value for name, value in encode_entry(event).items()}
    data = msgspec.json.decode(encode_entry(event)["data"])
    data[name] = value
    entry["data"] = msgspec.json.encode(data)
    return entry


def fill_with(fill: dict[str, object], **fields: object) -> dict[str, object]:
    """A copy of an exchange fill (as the fake exchange serves it) with some fields replaced."""
    return {**fill, **fields}
