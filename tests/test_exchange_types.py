"""Decoding the exchange's fills: an amount or a time that cannot be used fails the fill, never the poll."""

from __future__ import annotations

import re
from typing import Any

import msgspec
import pytest

from producer.exchange_types import Fill, Trade
from tests.faults.poison import NOT_DECIMALS, fill_with
from tests.helpers import fill

RAW_FILL: dict[str, Any] = msgspec.to_builtins(fill())


def decode_fill(raw: dict[str, Any]) -> Fill:
    return msgspec.json.decode(msgspec.json.encode(raw), type=Fill)


@pytest.mark.parametrize("name", ["px", "sz"])
@pytest.mark.parametrize("value", NOT_DECIMALS)
def test_a_fill_whose_amount_is_not_a_plain_decimal_does_not_decode(name: str, value: str) -> None:
    with pytest.raises(msgspec.ValidationError, match=re.escape(f"at `$.{name}`")):
        decode_fill(fill_with(RAW_FILL, **{name: value}))


@pytest.mark.parametrize("value", [10**15, 2**63 - 1, 0, -5])
def test_a_fill_whose_time_is_not_between_1970_and_2100_does_not_decode(value: int) -> None:
    with pytest.raises(msgspec.ValidationError, match=re.escape("at `$.time`")):
        decode_fill(fill_with(RAW_FILL, time=value))


@pytest.mark.parametrize("mark", ["NaN", "Infinity", "-3", "1e500000", "abc"])
def test_a_liquidation_whose_mark_price_is_unusable_does_not_decode(mark: str) -> None:
    liquidation = {**RAW_FILL["liquidation"], "markPx": mark}
    with pytest.raises(msgspec.ValidationError, match="liquidation"):
        decode_fill(fill_with(RAW_FILL, liquidation=liquidation))


def test_plain_decimals_and_numeric_mark_prices_still_decode_exactly() -> None:
    decoded = decode_fill(fill_with(RAW_FILL, px="0.000012", sz="123456789", liquidation={**RAW_FILL["liquidation"]}))
    assert (decoded.px, decoded.sz) == ("0.000012", "123456789")
    numeric = decode_fill(fill_with(RAW_FILL, liquidation={**RAW_FILL["liquidation"], "markPx": 116.84}))
    assert numeric.liquidation is not None and str(numeric.liquidation.markPx) == "116.84"


def test_a_trade_with_an_unusable_price_does_not_decode() -> None:
    trade = {
        "coin": "BTC",
        "side": "B",
        "px": "NaN",
        "sz": "1",
        "time": 1,
        "hash": "0x1",
        "tid": 1,
        "users": ["a", "b"],
    }
    with pytest.raises(msgspec.ValidationError):
        msgspec.json.decode(msgspec.json.encode(trade), type=Trade)
