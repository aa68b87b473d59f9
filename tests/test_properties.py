"""Properties that must hold for any input, not just the cases we thought of (hypothesis)."""

from __future__ import annotations

import random
from collections import defaultdict
from decimal import Decimal
from typing import TypedDict

import msgspec
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from consumers.alerter.format import format_alert
from consumers.stats.table import render_table
from consumers.tail.format import event_json, event_row, format_entry
from consumers.totals import Totals
from producer.client import HyperliquidClient
from producer.detector import detect_from_fills
from producer.errors import MalformedResponse
from producer.exchange_types import Fill, LiquidationInfo
from producer.sources.node import NodeSource
from schemas import (
    AdlEvent,
    EntryError,
    LiquidationEvent,
    MalformedEntry,
    Side,
    decode_entry,
    encode_entry,
    event_key,
    event_problem,
)
from schemas.limits import MAX_AMOUNT_DIGITS, MAX_AMOUNT_PLACES, MAX_TIMESTAMP_MS, amount_problem
from tests.faults.poison import HUGE_AMOUNTS, NOT_DECIMALS, UNUSABLE_AMOUNTS, UNUSABLE_TIMES

USERS = [f"0x{i:040x}" for i in range(1, 6)]
HASHES = ["0x" + "0" * 64, *(f"0x{i:064x}" for i in range(1, 4))]
COINS = ["BTC", "ETH", "xyz:CRWV"]
DIRS = ["Open Long", "Close Short", "Auto-Deleveraging", "Liquidated Cross Long"]

decimals = st.decimals(min_value=Decimal("0.00001"), max_value=Decimal("100000"), places=5, allow_nan=False)


@st.composite
def observed_fills(draw: st.DrawFn) -> list[tuple[str, Fill]]:
    """Fills as several watched addresses might see them: both legs of a trade share tid, px and sz."""
    trades = draw(st.dictionaries(st.integers(1, 40), st.tuples(decimals, decimals), min_size=1, max_size=25))
    out = []
    for tid, (px, sz) in trades.items():
        legs = draw(st.integers(1, 2))
        coin, tx, time = draw(st.sampled_from(COINS)), draw(st.sampled_from(HASHES)), draw(st.integers(1, 3))
        liquidated = draw(st.sampled_from(USERS))
        for _ in range(legs):
            owner = draw(st.sampled_from(USERS))
            liquidation = draw(st.one_of(st.none(), st.just(LiquidationInfo(liquidated, px, "market"))))
            direction = draw(st.sampled_from(DIRS))
            fill = Fill(
                coin=coin,
                px=str(px),
                sz=str(sz),
                side=draw(st.sampled_from(["A", "B"])),
                time=time,
                hash=tx,
                tid=tid,
                dir=direction,
                liquidation=liquidation,
            )
            out.append((owner, fill))
    return out


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(observed_fills(), st.randoms())
def test_events_are_unique_and_sum_their_distinct_trades(observed: list[tuple[str, Fill]], rnd: random.Random) -> None:
    events = detect_from_fills(observed, detected_at=0)
    assert len({e.key for e in events}) == len(events)

    expected: dict[str, dict[int, tuple[Decimal, Decimal]]] = defaultdict(dict)
    for owner, fill in observed:
        if fill.liquidation is None:
            continue
        if fill.dir == "Auto-Deleveraging":
            key = "adl|" + event_key(fill.hash, fill.coin, owner, fill.time)
        else:
            key = event_key(fill.hash, fill.coin, fill.liquidation.liquidatedUser, fill.time)
        expected[key][fill.tid] = (Decimal(fill.px), Decimal(fill.sz))
    assert {e.key for e in events} == set(expected)
    for event in events:
        trades = expected[event.key]
        assert event.size == sum((sz for _, sz in trades.values()), Decimal(0))
        assert event.value_usd == sum((px * sz for px, sz in trades.values()), Decimal(0))
        assert set(event.tids) == set(trades) and event.fills == len(trades)
        assert isinstance(event, AdlEvent if event.key.startswith("adl|") else LiquidationEvent)

    shuffled = list(observed)
    rnd.shuffle(shuffled)
    again = {e.key: (e.size, e.value_usd, e.tids) for e in detect_from_fills(shuffled, detected_at=0)}
    assert again == {e.key: (e.size, e.value_usd, e.tids) for e in events}


@settings(max_examples=300)
@given(st.binary(max_size=400) | st.text(max_size=200).map(str.encode))
def test_any_answer_body_decodes_or_raises_our_error(raw: bytes) -> None:
    client = HyperliquidClient("http://127.0.0.1:9")
    try:
        fills, answered = client._decode_list(raw, Fill, {"type": "userFillsByTime"})
    except MalformedResponse:
        return
    assert answered >= len(fills)


@settings(max_examples=300)
@given(st.dictionaries(st.sampled_from(["type", "v", "key", "data", "x"]), st.binary(max_size=80)))
def test_any_entry_decodes_or_raises_an_entry_error(fields: dict[str, bytes]) -> None:
    try:
        decode_entry(fields)
    except EntryError:
        pass


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=10),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=12,
)


@settings(max_examples=300)
@given(json_values | st.binary(max_size=200))
def test_any_node_line_is_read_or_counted_as_garbage(value: object) -> None:
    line = value if isinstance(value, bytes) else msgspec.json.encode(value)
    source = NodeSource([])
    observed: list[tuple[str, Fill]] = []
    source._scan(line + b' "liquidation"', observed)  # the marker forces a real decode attempt
    source._scan(line, observed)
    assert source.garbage_lines <= 2 and source.blocks_read == 2


# --- the aggregation (consumers.totals.Totals) -------------------------------------------------------------------

T0 = 1_760_000_000_000
"""Some exchange time (ms); events fall within two days after it, so the 24 h window is exercised at its edge."""

money = st.decimals(
    min_value=Decimal("0.00000000001"),
    max_value=Decimal("1000000000"),
    places=11,
    allow_nan=False,
    allow_infinity=False,
)
"""px (at most 6 decimals) x sz (at most 5): 11 decimals, up to a billion dollars."""


SIDES: list[Side] = ["long", "short"]


class CommonFields(TypedDict):
    """What a liquidation and an ADL event share, so one draw builds either."""

    tx_hash: str
    coin: str
    price: Decimal
    size: Decimal
    value_usd: Decimal
    timestamp: int


@st.composite
def stream_events(draw: st.DrawFn) -> list[LiquidationEvent | AdlEvent]:
    """Distinct events (one per key), liquidations and ADL mixed, at any times within two days."""
    events: list[LiquidationEvent | AdlEvent] = []
    for i in range(draw(st.integers(0, 40))):
        common = CommonFields(
            tx_hash=f"0x{i + 1:064x}",
            coin=draw(st.sampled_from(COINS)),
            price=Decimal(1),
            size=Decimal(1),
            value_usd=draw(money),
            timestamp=draw(st.integers(T0, T0 + 2 * 86_400_000)),
        )
        side = draw(st.sampled_from(SIDES))
        user = draw(st.sampled_from(USERS))
        if draw(st.booleans()):
            events.append(LiquidationEvent(liquidation_side=side, liquidated_user=user, method="market", **common))
        else:
            events.append(AdlEvent(deleveraged_user=user, position_side=side, liquidated_user=USERS[0], **common))
    return events


def _window(liquidations: list[LiquidationEvent], seconds: int, end: int, width_ms: int) -> list[LiquidationEvent]:
    """The events a window of ``seconds`` ending at ``end`` counts: whole buckets of ``width_ms`` it overlaps."""
    first, last = (end - seconds * 1000 + 1) // width_ms, end // width_ms
    return [e for e in liquidations if first <= e.timestamp // width_ms <= last]


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(stream_events(), st.lists(st.integers(0, 10_000), max_size=20), st.randoms())
def test_totals_equal_the_sums_of_the_events_and_a_repeat_counts_once(
    events: list[LiquidationEvent | AdlEvent], repeat_picks: list[int], rnd: random.Random
) -> None:
    repeats = [events[i % len(events)] for i in repeat_picks] if events else []
    sequence = events + repeats
    rnd.shuffle(sequence)  # redeliveries come in any order; a repeat is the same event, so any copy may count
    totals = Totals()
    counted = [totals.add(event) for event in sequence]
    assert sum(counted) == len(events), "each distinct event counted exactly once"
    assert totals.duplicates == len(repeats)
    if events:
        assert not totals.add(events[0]), "adding an event again counts nothing"

    liquidations = [e for e in events if isinstance(e, LiquidationEvent)]
    stats = totals.statistics()
    assert stats["count"] == len(liquidations)
    assert Decimal(stats["value_usd"]) == sum((e.value_usd for e in liquidations), Decimal(0))
    for name, attribute in (("by_coin", "coin"), ("by_side", "liquidation_side")):
        expected: dict[str, tuple[int, Decimal]] = {}
        for e in liquidations:
            count, value = expected.get(getattr(e, attribute), (0, Decimal(0)))
            expected[getattr(e, attribute)] = (count + 1, value + e.value_usd)
        assert {k: (t["count"], Decimal(t["value_usd"])) for k, t in stats[name].items()} == expected
    adl = [e for e in events if isinstance(e, AdlEvent)]
    other = stats["other"].get("adl", {"count": 0, "value_usd": "0"})
    assert (other["count"], Decimal(other["value_usd"])) == (len(adl), sum((e.value_usd for e in adl), Decimal(0)))
    if liquidations:
        assert Decimal(stats["largest"]["value_usd"]) == max(e.value_usd for e in liquidations)
    if events:
        end = max(e.timestamp for e in events)
        for window, seconds, width in (("5m", 300, 1_000), ("1h", 3_600, 1_000), ("24h", 86_400, 60_000)):
            inside = _window(liquidations, seconds, end, width)
            assert stats["windows"][window]["count"] == len(inside), window
            assert Decimal(stats["windows"][window]["value_usd"]) == sum((e.value_usd for e in inside), Decimal(0))


# --- hostile amounts and times -----------------------------------------------------------------------------------

hostile_decimals = st.one_of(
    st.sampled_from([*NOT_DECIMALS, *UNUSABLE_AMOUNTS, *HUGE_AMOUNTS, "-0", "0", "1E+39", "1e-40", "+1", "1_000"]),
    st.decimals(allow_nan=True, allow_infinity=True).map(str),
    st.from_regex(r"\A[+-]?[0-9]{0,45}(\.[0-9]{0,45})?([eE][+-]?[0-9]{1,10})?\Z"),
    st.text(max_size=20),
)
"""Strings a price, size or amount could arrive as: plain decimals, exponents of any size, NaNs, junk."""
hostile_times = st.one_of(
    st.sampled_from(UNUSABLE_TIMES), st.integers(-(2**64), 2**64), st.integers(1, MAX_TIMESTAMP_MS + 10)
)
hostile_json_amounts = hostile_decimals | st.integers(-(10**50), 10**50) | st.floats() | st.none()
"""What a foreign producer could write in an amount field: strings, but also JSON numbers and nulls."""


def places(value: Decimal) -> int:
    """Places of the last significant digit, by definition: the coefficient's exponent, trailing zeros dropped."""
    _, digits, exponent = value.as_tuple()
    assert isinstance(exponent, int)
    trailing = len(digits) - len(bytes(digits).rstrip(b"\x00"))
    return -(exponent + trailing)


coefficients = st.integers(1, 60).flatmap(lambda digits: st.integers(10 ** (digits - 1), 10**digits - 1))
"""Of every length, evenly: the limits are about how many digits an amount has and where they stop."""


@settings(max_examples=1000)
@given(coefficients, st.integers(-70, 30), st.integers(0, 20))
@example(10**40 + 1, -MAX_AMOUNT_PLACES - 1, 0)  # 0.1000…0001: one place too many, in plain notation
@example(10**40 - 1, -MAX_AMOUNT_PLACES, 0)  # 0.999…9: the most places allowed
@example(1, -MAX_AMOUNT_PLACES - 1, 0)  # 1E-41
@example(10**39 - 1, 0, 1)  # 9.99…9E+39: the largest integer part allowed, a trailing zero
def test_an_amount_is_usable_exactly_when_below_the_digits_and_places_limits(
    coefficient: int, exponent: int, zeros: int
) -> None:
    # Built from text, so the value is exact whatever its digits (a context would round it to 28).
    value = Decimal(f"{coefficient * 10**zeros}E{exponent}")
    usable = value.adjusted() < MAX_AMOUNT_DIGITS and places(value) <= MAX_AMOUNT_PLACES
    assert (amount_problem(value) is None) == usable, value


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(hostile_decimals, hostile_decimals, hostile_json_amounts, hostile_times)
def test_fills_with_hostile_amounts_decode_only_into_fills_the_detector_can_sum(
    px: str, sz: str, mark: object, time: int
) -> None:
    raw = {
        "coin": "BTC",
        "px": px,
        "sz": sz,
        "side": "A",
        "time": time,
        "hash": HASHES[1],
        "tid": 1,
        "liquidation": {"liquidatedUser": USERS[0], "markPx": mark, "method": "market"},
    }
    try:
        fill = msgspec.json.decode(msgspec.json.encode(raw), type=Fill)
    except msgspec.DecodeError:  # ValidationError included: what the client and the node source skip and count
        return
    events = detect_from_fills([(USERS[0], fill)], detected_at=T0)
    assert len(events) == 1 and event_problem(events[0]) is None
    entry: dict[bytes | str, bytes | str] = {name: value for name, value in encode_entry(events[0]).items()}
    assert decode_entry(entry) == events[0], "what the producer builds, every reader decodes"


@st.composite
def hostile_entries(draw: st.DrawFn) -> dict[bytes | str, bytes | str]:
    """A well-formed liquidation entry with some amounts and times replaced by hostile values."""
    event = LiquidationEvent(
        tx_hash=HASHES[1],
        coin=draw(st.sampled_from(COINS)),
        liquidation_side="long",
        price=Decimal("97000.5"),
        size=Decimal("1.25"),
        value_usd=Decimal("121250.625"),
        liquidated_user=USERS[0],
        timestamp=T0,
        method="market",
        mark_price=Decimal("97000"),
    )
    data: dict[str, object] = msgspec.to_builtins(event)
    for name in draw(st.sets(st.sampled_from(["price", "size", "value_usd", "mark_price"]))):
        data[name] = draw(hostile_json_amounts)
    for name in draw(st.sets(st.sampled_from(["timestamp", "detected_at"]))):
        data[name] = draw(hostile_times)
    return {b"type": b"liquidation", b"v": b"1", b"key": event.key.encode(), b"data": msgspec.json.encode(data)}


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(hostile_entries())
def test_entries_with_hostile_amounts_decode_or_raise_malformed_and_decoded_ones_format(
    fields: dict[bytes | str, bytes | str],
) -> None:
    """Decoding raises nothing but the documented errors; whatever decodes, every formatter renders on one
    bounded line and the stats table sums, without raising (each of them once raised on such values)."""
    try:
        event = decode_entry(fields)
    except MalformedEntry:
        return
    assert isinstance(event, LiquidationEvent)
    alert = format_alert(event)
    assert "\n" not in alert.one_line and len(alert.one_line) < 600
    assert len(event_row(event)) < 600 and format_entry(b"1-0", fields) == event_row(event)
    assert msgspec.json.decode(event_json(b"1-0", event))["id"] == "1-0"
    totals = Totals()
    for repeat in range(3):  # sums of several of them too
        totals.add(msgspec.structs.replace(event, tx_hash=f"0x{repeat:064x}"))
    snapshot = {
        "stream": "s",
        "group": "g",
        "consumer": "c",
        "generated_at": event.timestamp,
        "view": {"partial": False, "consumers": 1, "note": "full view"},
        "totals": totals.statistics(event.timestamp),
    }
    assert all(len(line) < 600 for line in render_table(snapshot).splitlines())
