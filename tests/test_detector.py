"""The detector's rules, on fills shaped like the real ones in ../shared/hyperliquid (copied as literals)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import msgspec
import pytest

from producer.detector import detect_from_fills, detect_from_trades, liquidated_side
from producer.exchange_types import Fill, Trade
from schemas import ZERO_HASH, AdlEvent, LiquidationEvent
from tests.helpers import LIQUIDATED, TX, fill

MAKER_1 = "0x654086857e1fad6dcf05cf6695cce51ea3984268"
MAKER_2 = "0xd0bd58f100b3a25aecc1b9ac900c6a6868acf729"
HLP_LIQUIDATOR = "0x2e3d94f0562703b25c83308a05046ddaf9a8dd14"
NOW = 1_787_000_000_000


def own_leg(**overrides: Any) -> Fill:
    """The liquidated user's side of the same trade: opposite side, crossed, same tid and hash."""
    base: dict[str, Any] = {"side": "B", "dir": "Close Short", "crossed": True, "oid": 1}
    base.update(overrides)
    return fill(**base)


def test_side_rules_follow_the_leg_seen() -> None:
    assert liquidated_side("A", own_fill=True) == "long"
    assert liquidated_side("B", own_fill=True) == "short"
    assert liquidated_side("B", own_fill=False) == "long"
    assert liquidated_side("A", own_fill=False) == "short"


def test_a_makers_fill_gives_one_event_with_exact_decimals() -> None:
    [event] = detect_from_fills([(MAKER_1, fill())], detected_at=NOW)
    assert isinstance(event, LiquidationEvent)
    assert event.tx_hash == TX
    assert event.coin == "xyz:CRWV"
    assert event.liquidated_user == LIQUIDATED
    assert event.liquidation_side == "short"  # the maker sold into it: a short was bought back
    assert event.method == "market"
    assert (event.size, event.price, event.value_usd) == (Decimal("2.47"), Decimal("116.86"), Decimal("288.6442"))
    assert event.mark_price == Decimal("116.84")
    assert event.tids == (711626751774561,)
    assert event.fills == 1
    assert event.observed_via == (MAKER_1,)
    assert event.timestamp == 1786628572099
    assert event.detected_at == NOW
    assert msgspec.json.encode(event).count(b'"2.47"') == 1  # amounts travel as strings


def test_both_legs_of_a_trade_count_once() -> None:
    events = detect_from_fills([(MAKER_1, fill()), (LIQUIDATED, own_leg())], detected_at=NOW)
    [event] = events
    assert isinstance(event, LiquidationEvent)
    assert event.size == Decimal("2.47")
    assert event.fills == 1
    assert event.liquidation_side == "short"
    assert event.observed_via == tuple(sorted((MAKER_1, LIQUIDATED)))


def test_the_same_fill_seen_twice_counts_once() -> None:
    [event] = detect_from_fills([(MAKER_1, fill()), (MAKER_1, fill())], detected_at=NOW)
    assert event.size == Decimal("2.47")


def test_several_makers_sum_into_one_event_with_a_weighted_price() -> None:
    observed = [
        (MAKER_1, fill(px="100.5", sz="1", tid=1)),
        (MAKER_2, fill(px="101.25", sz="3", tid=2)),
    ]
    [event] = detect_from_fills(observed, detected_at=NOW)
    assert event.size == Decimal("4")
    assert event.value_usd == Decimal("404.25")
    assert event.price == Decimal("101.0625")
    assert event.tids == (1, 2)
    assert event.fills == 2


def test_a_weighted_price_that_does_not_divide_is_rounded_at_a_stated_precision() -> None:
    observed = [(MAKER_1, fill(px="1.1", sz="1", tid=1)), (MAKER_1, fill(px="1.2", sz="2", tid=2))]
    [event] = detect_from_fills(observed, detected_at=NOW)
    assert event.value_usd == Decimal("3.5")
    assert event.price == Decimal("1.1666667")  # finest fill price has 1 place; 6 more are kept


def test_the_liquidated_users_own_leg_decides_the_side() -> None:
    # A long liquidated: the user sold (A); the maker bought (B).
    own = own_leg(side="A", dir="Close Long")
    maker = fill(side="B", dir="Open Long")
    for order in ([(MAKER_1, maker), (LIQUIDATED, own)], [(LIQUIDATED, own), (MAKER_1, maker)]):
        [event] = detect_from_fills(order, detected_at=NOW)
        assert isinstance(event, LiquidationEvent)
        assert event.liquidation_side == "long"


def test_backstop_fill_on_a_liquidator_vault() -> None:
    backstop = fill(
        coin="SOL",
        px="67.5499",
        sz="28.33",
        side="B",
        dir="Liquidated Cross Long",
        crossed=True,
        fee="0.0",
        liquidation={
            "liquidatedUser": "0x7ba283114573bde6fd304ad7b188a763e5402a52",
            "markPx": 68.2,
            "method": "backstop",
        },
    )
    [event] = detect_from_fills([(HLP_LIQUIDATOR, backstop)], detected_at=NOW)
    assert isinstance(event, LiquidationEvent)
    assert event.method == "backstop"
    assert event.liquidation_side == "long"
    assert event.mark_price == Decimal("68.2")  # a JSON number decodes exactly too
    assert event.value_usd == Decimal("1913.688667")


def test_adl_fills_are_not_liquidations_but_adl_events() -> None:
    deleveraged = "0xe92d2041199b18f611b137457f3acee8bedb22d3"
    adl = fill(
        coin="AVAX",
        px="22.075",
        sz="28.53",
        dir="Auto-Deleveraging",
        side="B",
        liquidation={"liquidatedUser": HLP_LIQUIDATOR, "markPx": "22.025", "method": "backstop"},
    )
    [event] = detect_from_fills([(deleveraged, adl)], detected_at=NOW)
    assert isinstance(event, AdlEvent)
    assert (event.deleveraged_user, event.position_side) == (deleveraged, "short")
    assert event.liquidated_user == HLP_LIQUIDATOR
    assert (event.size, event.value_usd) == (Decimal("28.53"), Decimal("629.79975"))
    assert event.mark_price == Decimal("22.025")
    assert event.key.startswith("adl|")


def test_node_mode_counts_only_the_liquidated_users_own_legs() -> None:
    observed = [(MAKER_1, fill(tid=1, sz="5")), (LIQUIDATED, own_leg(tid=2, sz="2.47"))]
    [event] = detect_from_fills(observed, source="node", detected_at=NOW, own_legs_only=True, via=("node",))
    assert isinstance(event, LiquidationEvent)
    assert (event.size, event.tids, event.observed_via, event.source) == (Decimal("2.47"), (2,), ("node",), "node")


def test_fills_without_a_liquidation_object_are_ignored_whatever_their_hash() -> None:
    plain = fill(liquidation=None, hash=ZERO_HASH)
    assert detect_from_fills([(MAKER_1, plain), (MAKER_1, fill(liquidation=None))], detected_at=NOW) == []


def test_one_hash_with_several_users_and_coins_gives_one_event_each() -> None:
    other = "0x7ba283114573bde6fd304ad7b188a763e5402a52"
    liq = {"liquidatedUser": other, "markPx": "1", "method": "market"}
    observed = [
        (MAKER_1, fill(tid=1)),
        (MAKER_1, fill(tid=2, liquidation=liq)),
        (MAKER_1, fill(tid=3, coin="BTC", px="64142.0", sz="0.1", liquidation=liq)),
    ]
    events = detect_from_fills(observed, detected_at=NOW)
    assert sorted((e.coin, e.liquidated_user) for e in events) == sorted(
        [("xyz:CRWV", LIQUIDATED), ("xyz:CRWV", other), ("BTC", other)]
    )
    assert len({e.key for e in events}) == 3
    assert all(e.tx_hash == TX for e in events)


def test_addresses_are_compared_case_insensitively() -> None:
    [event] = detect_from_fills([(LIQUIDATED.upper().replace("0X", "0x"), own_leg(side="A"))], detected_at=NOW)
    assert isinstance(event, LiquidationEvent)
    assert event.liquidation_side == "long"  # recognised as the user's own leg
    assert event.liquidated_user == LIQUIDATED


def test_zero_hash_liquidations_at_different_times_keep_distinct_keys() -> None:
    a = fill(hash=ZERO_HASH, tid=1, time=1)
    b = fill(hash=ZERO_HASH, tid=2, time=2)
    events = detect_from_fills([(MAKER_1, a), (MAKER_1, b)], detected_at=NOW)
    assert len(events) == 2
    assert events[0].key != events[1].key


def test_unknown_method_is_reported_as_unknown() -> None:
    odd = fill(liquidation={"liquidatedUser": LIQUIDATED, "markPx": "1", "method": "partial"})
    [event] = detect_from_fills([(MAKER_1, odd)], detected_at=NOW)
    assert isinstance(event, LiquidationEvent)
    assert event.method == "unknown"


def test_events_come_out_in_exchange_time_order() -> None:
    observed = [(MAKER_1, fill(tid=2, time=20, hash="0x2")), (MAKER_1, fill(tid=1, time=10, hash="0x1"))]
    assert [e.timestamp for e in detect_from_fills(observed, detected_at=NOW)] == [10, 20]


def trade(buyer: str, seller: str, **overrides: Any) -> Trade:
    raw: dict[str, Any] = {
        "coin": "BTC",
        "side": "A",
        "px": "64159.0",
        "sz": "0.13722",
        "time": 1787047504010,
        "hash": "0x292f4dcc51901beb2aa904426dff020202cf00b1ec933abdccf7f91f1093f5d5",
        "tid": 1016897150094344,
        "users": [buyer, seller],
    }
    raw.update(overrides)
    return msgspec.json.decode(msgspec.json.encode(raw), type=Trade)


@pytest.mark.parametrize(("vault_buys", "side"), [(True, "long"), (False, "short")])
def test_trades_heuristic_takes_the_other_party_as_liquidated(vault_buys: bool, side: str) -> None:
    t = trade(HLP_LIQUIDATOR, LIQUIDATED) if vault_buys else trade(LIQUIDATED, HLP_LIQUIDATOR)
    [event] = detect_from_trades([t], liquidators=frozenset({HLP_LIQUIDATOR}), detected_at=NOW)
    assert event.liquidation_side == side
    assert event.liquidated_user == LIQUIDATED
    assert event.method == "unknown"
    assert event.source == "trades"
    assert event.value_usd == Decimal("64159.0") * Decimal("0.13722")


def test_trades_without_a_liquidator_are_ignored() -> None:
    assert detect_from_trades([trade(MAKER_1, MAKER_2)], liquidators=frozenset({HLP_LIQUIDATOR}), detected_at=NOW) == []


def test_fills_built_in_code_with_unusable_amounts_are_dropped_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    """Decoding refuses such fills; a fill built in code (the trades heuristic builds them) must not crash a poll
    either: ``Decimal("abc")`` raised InvalidOperation and the poll, and every one after it, failed."""
    good = fill()
    bad = [
        msgspec.structs.replace(good, px="abc", tid=2, hash="0xbad1"),
        msgspec.structs.replace(good, sz="NaN", tid=3, hash="0xbad2"),
        msgspec.structs.replace(good, time=2**63 - 1, tid=4, hash="0xbad3"),
    ]
    events = detect_from_fills([(MAKER_1, f) for f in (*bad, good)], detected_at=NOW)
    assert [e.tx_hash for e in events] == [TX]
    assert caplog.text.count("dropped the event") == 3


def test_an_event_says_whether_its_figures_are_complete() -> None:
    """Makers' legs are a part of a market liquidation; the liquidated user's own legs, a backstop's vault fill
    and an ADL fill are all there is."""
    backstop = {"liquidatedUser": LIQUIDATED, "markPx": "116.84", "method": "backstop"}
    cases = {
        "makers only": ([(MAKER_1, fill()), (MAKER_2, fill(tid=2))], False),
        "the liquidated user's own": ([(LIQUIDATED, own_leg())], True),
        "a maker and the own leg": ([(MAKER_1, fill()), (LIQUIDATED, own_leg())], True),
        "a backstop's vault": ([(HLP_LIQUIDATOR, fill(liquidation=backstop))], True),
        "an ADL fill": ([(MAKER_1, fill(dir="Auto-Deleveraging"))], True),
    }
    for name, (observed, complete) in cases.items():
        [event] = detect_from_fills(observed, detected_at=NOW)
        assert event.complete is complete, name
    [node] = detect_from_fills([(LIQUIDATED, own_leg())], detected_at=NOW, own_legs_only=True, source="node")
    assert node.complete
