"""What an alert says, as people read it. Pure."""

from __future__ import annotations

import json
from decimal import Decimal

from consumers.alerter.format import explorer_link, format_alert, format_summary
from consumers.humanize import amount, usd, usd_compact, utc
from schemas import ZERO_HASH
from tests.faults.poison import HUGE_AMOUNTS
from tests.helpers import make_event

TX = "0x" + "ab12" * 16


def test_an_alert_names_coin_side_size_price_value_user_time_and_links_the_transaction() -> None:
    event = make_event(
        tx_hash=TX,
        coin="BTC",
        liquidation_side="long",
        size=Decimal("12.50000"),
        price=Decimal("97123.40"),
        value_usd=Decimal("1214042.5"),
        liquidated_user="0x" + "c" * 40,
        timestamp=1_764_031_402_123,
        method="market",
        mark_price=None,
    )
    message = format_alert(event)
    assert message.title == "BTC long liquidated: $1,214,043"
    assert message.lines == (
        "12.5 BTC at $97,123.4 (market)",
        "user 0x" + "c" * 40,
        "time 2025-11-25 00:43:22 UTC",
    )
    assert message.link == f"https://app.hyperliquid.xyz/explorer/tx/{TX}"
    assert message.text == "\n".join((message.title, *message.lines, message.link))
    assert message.one_line == " | ".join((message.title, *message.lines, message.link))


def test_the_webhook_payload_carries_the_text_and_the_event_as_json() -> None:
    event = make_event(tx_hash=TX, value_usd=Decimal("250000.10"), mark_price=Decimal("97000"), method="backstop")
    message = format_alert(event, "https://testnet.example/explorer/tx")
    payload = json.loads(json.dumps(message.payload))
    assert payload["kind"] == "liquidation"
    assert payload["link"] == f"https://testnet.example/explorer/tx/{TX}"
    assert payload["event"]["value_usd"] == "250000.10" and payload["event"]["type"] == "liquidation"
    assert payload["text"] == message.text
    assert message.lines[0].endswith(", mark $97,000 (backstop)")


def test_no_link_for_the_all_zero_hash_and_no_method_when_unknown() -> None:
    message = format_alert(make_event(tx_hash=ZERO_HASH, method="unknown"))
    assert message.link is None and explorer_link(ZERO_HASH) is None
    assert "(" not in message.lines[0]
    assert message.text.count("\n") == 3


def test_amounts_for_people() -> None:
    assert usd(Decimal("1214042.5")) == "$1,214,043"
    assert usd(Decimal("999.505")) == "$999.51"
    assert usd_compact(Decimal("41234567.89")) == "$41.2M"
    assert usd_compact(Decimal("1500")) == "$1.5K"
    assert usd_compact(Decimal("2500000000")) == "$2.5B"
    assert usd_compact(Decimal("950.4")) == "$950"
    assert amount(Decimal("100")) == "100"
    assert amount(Decimal("0.00012300")) == "0.000123"
    assert amount(Decimal("1234567.5")) == "1,234,567.5"
    assert utc(0) == "1970-01-01 00:00:00 UTC"


def test_a_summary_is_one_line() -> None:
    message = format_summary("BTC", 312, Decimal("41234567"), Decimal("3100000"), 60.2)
    assert message.text == ("… and 312 more BTC liquidations worth $41.2M held back in the last 60s (largest $3.1M)")
    assert message.payload["count"] == 312 and message.payload["value_usd"] == "41234567"
    assert format_summary("ETH", 1, Decimal(5), Decimal(5), 1).title.startswith("… and 1 more ETH liquidation worth")


def test_hostile_exchange_text_stays_on_one_line_and_short() -> None:
    from plumbing.text import printable

    assert printable("BTC\n2026-01-01 00:00:00 ERROR forged\x1b[31m") == "BTC?2026-01-01 00:00:00 ERROR forged?[31m"
    assert printable("X" * 500) == "X" * 79 + "…"
    message = format_alert(make_event(coin="EVIL\nERROR forged", value_usd=Decimal(500_000)))
    assert "\n" not in message.title and all("\n" not in line for line in message.lines)


def test_huge_amounts_read_sensibly_and_a_time_no_calendar_holds_does_not_raise() -> None:
    """``1e30`` made the alert raise (quantize past the context's precision) on every delivery of its entry."""
    assert usd(Decimal("1e30")) == "$1.0e+30" and usd_compact(Decimal("1e30")) == "$1.0e+30"
    assert usd(Decimal("999999999999999")) == "$999,999,999,999,999"
    assert amount(Decimal("1e30")) == "1" + ",000" * 10
    assert amount(Decimal("1e500000")) == "1.000000e+500000"  # beyond any decodable amount: still a string
    assert utc(10**15) == "1000000000000000 ms" and utc(2**63 - 1) == f"{2**63 - 1} ms"
    for value in HUGE_AMOUNTS:
        message = format_alert(make_event(value_usd=Decimal(value), price=Decimal(value), size=Decimal(value)))
        assert "$1.0e+30" in message.title or "$1.2e+38" in message.title
        assert len(message.one_line) < 400
