"""The pure aggregation: totals equal the sums of the events, windows, bounded memory, other event types."""

from __future__ import annotations

import json
import random
from decimal import Decimal

import pytest

from consumers import Totals, WindowTooLong
from schemas import AdlEvent, LiquidationEvent
from tests.helpers import make_event

NOW = 1_790_000_000_000


def random_events(n: int, *, seed: int = 7, span_ms: int = 3_600_000) -> list[LiquidationEvent]:
    rng = random.Random(seed)
    return [
        make_event(
            coin=rng.choice(["BTC", "ETH", "SOL", "xyz:CRWV"]),
            liquidation_side=rng.choice(["long", "short"]),
            value_usd=Decimal(rng.randrange(1, 10**9)) / 100,
            timestamp=NOW - rng.randrange(span_ms),
        )
        for _ in range(n)
    ]


def adl(value: str, timestamp: int = NOW) -> AdlEvent:
    return AdlEvent(
        tx_hash="0x" + "ab" * 32,
        coin="BTC",
        price=Decimal(1),
        size=Decimal(1),
        value_usd=Decimal(value),
        timestamp=timestamp,
        deleveraged_user="0x" + "1" * 40,
        position_side="short",
        liquidated_user="0x" + "2" * 40,
    )


def test_totals_equal_the_sums_of_the_events() -> None:
    events = random_events(2_000)
    totals = Totals()
    assert all(totals.add(e) for e in events)
    stats = totals.statistics(NOW)
    assert stats["count"] == len(events) == totals.count
    assert Decimal(stats["value_usd"]) == sum(e.value_usd for e in events) == totals.value_usd
    for coin, tally in stats["by_coin"].items():
        mine = [e for e in events if e.coin == coin]
        assert (tally["count"], Decimal(tally["value_usd"])) == (len(mine), sum(e.value_usd for e in mine))
    for side in ("long", "short"):
        mine = [e for e in events if e.liquidation_side == side]
        tally = stats["by_side"][side]
        assert (tally["count"], Decimal(tally["value_usd"])) == (len(mine), sum(e.value_usd for e in mine))
    biggest = max(events, key=lambda e: e.value_usd)
    assert stats["largest"]["key"] == biggest.key and Decimal(stats["largest"]["value_usd"]) == biggest.value_usd
    values = [Decimal(t["value_usd"]) for t in stats["by_coin"].values()]
    assert values == sorted(values, reverse=True), "coins come largest value first"
    assert stats["windows"]["1h"]["count"] == len(events)


def test_money_stays_exact_and_the_output_is_json() -> None:
    totals = Totals()
    totals.add(make_event(value_usd=Decimal("0.1"), timestamp=NOW))
    totals.add(make_event(value_usd=Decimal("0.2"), timestamp=NOW))
    stats = json.loads(json.dumps(totals.statistics(NOW)))
    assert stats["value_usd"] == "0.3"
    assert stats["windows"]["5m"]["value_usd"] == "0.3"


def test_a_repeated_key_is_not_counted_twice() -> None:
    event = make_event(timestamp=NOW)
    totals = Totals()
    assert totals.add(event) is True
    assert totals.add(event) is False
    assert totals.count == 1 and totals.duplicates == 1
    unbounded = Totals(recent_keys=0)
    unbounded.add(event)
    unbounded.add(event)
    assert unbounded.count == 2


def test_the_memory_of_recent_keys_is_bounded() -> None:
    totals = Totals(recent_keys=3)
    events = [make_event(timestamp=NOW) for _ in range(5)]
    for e in events:
        totals.add(e)
    assert totals.add(events[0]) is True, "the oldest key was forgotten"
    assert totals.add(events[4]) is False


def test_rolling_windows() -> None:
    ages_s = [10, 200, 400, 3_000, 7_200, 80_000, 90_000]
    totals = Totals()
    for age in ages_s:
        totals.add(make_event(timestamp=NOW - age * 1000, value_usd=Decimal(age)))
    counts = {name: w["count"] for name, w in totals.statistics(NOW)["windows"].items()}
    assert counts == {"5m": 2, "1h": 4, "24h": 6}
    assert totals.count == 7
    assert totals.by_timeframe(250, NOW)["count"] == 2
    assert Decimal(totals.by_timeframe(300, NOW)["value_usd"]) == Decimal(210)
    # Windows end where the caller says: an hour later, the 5-minute window is empty.
    assert totals.by_timeframe(300, NOW + 3_600_000)["count"] == 0
    with pytest.raises(WindowTooLong, match="at most 86400 s"):
        totals.by_timeframe(2 * 86_400, NOW)


def test_windows_report_the_largest_in_them() -> None:
    totals = Totals()
    old_big = make_event(timestamp=NOW - 7_200_000, value_usd=Decimal(9_000_000))
    recent = make_event(timestamp=NOW - 5_000, value_usd=Decimal(150_000))
    totals.add(old_big)
    totals.add(recent)
    assert totals.by_timeframe(300, NOW)["largest"]["key"] == recent.key
    assert totals.statistics(NOW)["largest"]["key"] == old_big.key


def test_memory_is_bounded_however_long_it_runs() -> None:
    totals = Totals(recent_keys=1_000)
    for i in range(30_000):  # one event every 9 s for 75 hours
        totals.add(make_event(timestamp=NOW + i * 9_000, value_usd=Decimal(1)))
    assert totals.count == 30_000
    assert totals.bucket_count() <= 3_601 + 1_441
    last = NOW + 29_999 * 9_000
    # 86,400 s / 9 s = 9,600 events; the oldest one-minute bucket counts whole: up to 6 more.
    assert 9_600 <= totals.by_timeframe(86_400, last)["count"] <= 9_606
    assert totals.by_timeframe(3_600, last)["count"] in (400, 401)  # the event exactly an hour old may count


def test_other_event_types_are_counted_apart() -> None:
    totals = Totals()
    totals.add(make_event(timestamp=NOW, value_usd=Decimal(100)))
    totals.add(adl("250.5"))
    totals.add(adl("250.5"))  # same key: a repeat
    stats = totals.statistics(NOW)
    assert stats["count"] == 1 and stats["value_usd"] == "100"
    assert stats["other"] == {"adl": {"count": 1, "value_usd": "250.5"}}
    assert stats["windows"]["5m"]["other"] == {"adl": {"count": 1, "value_usd": "250.5"}}


def test_empty_totals() -> None:
    stats = Totals().statistics()
    assert stats["count"] == 0 and stats["largest"] is None and stats["windows"] == {}
    assert Totals().by_timeframe(300, NOW)["count"] == 0


def test_a_complete_event_replaces_the_partial_one_of_its_key_everywhere() -> None:
    totals = Totals()
    partial = make_event(complete=False, value_usd=Decimal("100"), size=Decimal("1"))
    complete = make_event(
        tx_hash=partial.tx_hash,
        liquidated_user=partial.liquidated_user,
        timestamp=partial.timestamp,
        complete=True,
        value_usd=Decimal("250"),
        size=Decimal("2.5"),
    )
    assert totals.add(partial) and not totals.add(partial)  # a redelivery of the partial counts nothing
    assert totals.add(complete) and not totals.add(complete)
    stats = totals.statistics()
    assert (stats["count"], stats["value_usd"]) == (1, "250")
    assert stats["by_coin"]["BTC"] == {"count": 1, "value_usd": "250"}
    assert stats["windows"]["5m"]["count"] == 1 and stats["windows"]["5m"]["value_usd"] == "250"
    assert stats["largest"]["value_usd"] == "250"
    assert totals.superseded == 1 and totals.duplicates == 2
    assert not totals.add(partial)  # a partial after the complete one changes nothing
    assert totals.statistics()["value_usd"] == "250"
