"""Properties that must hold for any input, not just the cases we thought of (hypothesis)."""

from __future__ import annotations

import random
from collections import defaultdict
from decimal import Decimal

import msgspec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from producer.client import HyperliquidClient
from producer.detector import detect_from_fills
from producer.errors import MalformedResponse
from producer.exchange_types import Fill, LiquidationInfo
from producer.node_source import NodeSource
from schemas import AdlEvent, EntryError, LiquidationEvent, decode_entry, event_key

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
            fill = Fill(coin=coin, px=str(px), sz=str(sz), side=draw(st.sampled_from(["A", "B"])), time=time,
                        hash=tx, tid=tid, dir=direction, liquidation=liquidation)
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
