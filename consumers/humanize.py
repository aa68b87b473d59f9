"""Amounts and times the way people read them: ``$1,214,043``, ``$41.2M``, ``2026-11-25 00:53:04 UTC``.

Every function here returns a string for any value, never raises: they render alerts, tables and tail rows, and
a raise there fails the entry (or the report) for good. Amounts too large to read digit by digit (a quadrillion
dollars and up) are shown in scientific notation, and times no calendar holds as their milliseconds.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal

_UNITS = ((Decimal(10) ** 12, "T"), (Decimal(10) ** 9, "B"), (Decimal(10) ** 6, "M"), (Decimal(10) ** 3, "K"))
_HUGE = Decimal(10) ** 15
"""From here on an amount is shown as ``$1.2e+15``: its digits no longer tell a reader anything."""
_PLAIN_DIGITS = 40
"""A size or price is written out in full up to this many digits before or after the point."""


def usd(value: Decimal) -> str:
    """Whole dollars with separators, for an amount a person compares; cents only below $1,000."""
    if not value.is_finite() or value.copy_abs() >= _HUGE:
        return usd_compact(value)
    if abs(value) >= 1000:
        return f"${value.quantize(Decimal(1), rounding=ROUND_HALF_UP):,f}"
    return f"${value.quantize(Decimal('0.01'), rounding=ROUND_HALF_UP):,f}"


def usd_compact(value: Decimal) -> str:
    """The size of an amount in a few characters, for summaries and tables."""
    if not value.is_finite():
        return f"${value}"
    if value.copy_abs() >= _HUGE:
        return f"${value:.1e}"
    for scale, unit in _UNITS:
        if abs(value) >= scale:
            return f"${(value / scale).quantize(Decimal('0.1'), rounding=ROUND_HALF_UP)}{unit}"
    return f"${value.quantize(Decimal(1), rounding=ROUND_HALF_UP)}"


def amount(value: Decimal) -> str:
    """A size or price as the exchange wrote it, without trailing zeros, with thousands separators."""
    if not value.is_finite() or (value and not -_PLAIN_DIGITS <= value.adjusted() < _PLAIN_DIGITS):
        return f"{value:.6e}" if value.is_finite() else str(value)
    return f"{value.normalize():,f}"


def utc(timestamp_ms: int) -> str:
    try:
        return datetime.fromtimestamp(timestamp_ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    except (ValueError, OverflowError, OSError):  # before year 1 or after 9999: no date to show
        return f"{timestamp_ms} ms"
