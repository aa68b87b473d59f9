"""What a sane amount and a sane time are, for every event on the stream and every fill the producer reads.

The checks exist because a number that parses is not a number one can use: ``NaN`` and ``Infinity`` are valid
decimals and valid JSON strings, ``1e999999999`` is finite, and a time of ``2**63 - 1`` ms is an integer. Each
of them made a consumer raise (a sum of ``-Infinity`` and ``Infinity``, a quantize past the context's precision,
a date past year 9999) on every delivery, or a restart loop of the stats rebuild. The producer refuses to publish
such values and every reader refuses to decode them, so one bad value is a dead letter, not an outage.

The bounds are far beyond any real liquidation (the largest ever was about 10^8 USD) yet small enough that every
consumer formats and sums them without raising.
"""

from __future__ import annotations

from decimal import Decimal

MAX_TIMESTAMP_MS = 4_102_444_800_000
"""2100-01-01T00:00:00Z in milliseconds: times at or past it are not the exchange's."""

MAX_AMOUNT_DIGITS = 40
"""Integer digits an amount may have: amounts are below 10^40."""

MAX_AMOUNT_PLACES = 40
"""Decimal places an amount may have (after trailing zeros are dropped)."""


def amount_problem(value: Decimal) -> str | None:
    """Why ``value`` is not a usable amount (price, size, USD value), or None if it is."""
    if not value.is_finite():
        return f"{value} is not a finite number"
    if value.is_signed() and value != 0:
        return f"{value} is negative"
    if not value:
        return None
    if value.adjusted() >= MAX_AMOUNT_DIGITS:
        return f"{_short(value)} is not below 10^{MAX_AMOUNT_DIGITS}"
    text = str(value)
    if len(text) <= MAX_AMOUNT_PLACES + 1 and "E" not in text and "e" not in text:
        return None  # plain notation this short has at most MAX_AMOUNT_PLACES places: the usual case, decided fast
    # Places of the last significant digit: trailing zeros ("1.500") are not precision.
    _, digits, exponent = value.as_tuple()
    trailing = len(digits) - len(bytes(digits).rstrip(b"\x00"))
    if -(int(exponent) + trailing) > MAX_AMOUNT_PLACES:
        return f"{_short(value)} has more than {MAX_AMOUNT_PLACES} decimal places"
    return None


def timestamp_problem(timestamp_ms: int) -> str | None:
    """Why ``timestamp_ms`` is not a usable exchange time, or None if it is."""
    if not 0 < timestamp_ms < MAX_TIMESTAMP_MS:
        return f"{_short(timestamp_ms)} ms is not a time between 1970 and 2100"
    return None


def _short(value: object, limit: int = 40) -> str:
    """The value for an error message: a hostile one may be megabytes long."""
    text = str(value)
    return text if len(text) <= limit else f"{text[: limit - 1]}…"
