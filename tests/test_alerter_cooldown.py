"""The per-coin cooldown, driven by a clock that is just numbers. Pure."""

from __future__ import annotations

import random
from decimal import Decimal

import pytest

from consumers.alerter.cooldown import Cooldown


def test_one_alert_per_window_then_a_summary_of_the_rest() -> None:
    cooldown = Cooldown(window_s=60, burst=1)
    assert cooldown.admit("BTC", Decimal(100), now=0)
    assert not cooldown.admit("BTC", Decimal(200), now=1)
    assert not cooldown.admit("BTC", Decimal(300), now=30)
    assert cooldown.admit("ETH", Decimal(50), now=30), "coins cool down separately"
    assert cooldown.due(now=60) == []
    [held] = cooldown.due(now=61)
    assert (held.coin, held.count, held.value_usd, held.largest_usd) == ("BTC", 2, Decimal(500), Decimal(300))
    assert held.seconds(61) == 60
    assert cooldown.due(now=200) == []
    assert cooldown.admit("BTC", Decimal(1), now=61), "the window has passed"


def test_burst_is_a_sliding_window() -> None:
    cooldown = Cooldown(window_s=10, burst=3)
    assert [cooldown.admit("SOL", Decimal(1), now=t) for t in (0, 1, 2, 3, 9)] == [True, True, True, False, False]
    assert cooldown.admit("SOL", Decimal(1), now=10), "the alert at t=0 left the window"
    assert not cooldown.admit("SOL", Decimal(1), now=10.5)
    assert cooldown.admit("SOL", Decimal(1), now=11)


def test_a_cascade_reads_as_a_few_alerts_and_summaries() -> None:
    rng = random.Random(3)
    cooldown = Cooldown(window_s=60, burst=3)
    events = sorted((rng.uniform(0, 180), rng.choice(["BTC", "ETH", "SOL"])) for _ in range(20_000))
    sent = 0
    summaries = []
    for now, coin in events:
        summaries += cooldown.due(now)
        sent += cooldown.admit(coin, Decimal(1000), now)
    summaries += cooldown.drain()
    assert sent <= 3 * 3 * 4  # three coins, three per window, at most four windows in 180 s
    assert len(summaries) <= 3 * 4
    assert sent + sum(s.count for s in summaries) == 20_000
    assert sum(s.value_usd for s in summaries) == Decimal(1000) * (20_000 - sent)


def test_drain_returns_everything_held() -> None:
    cooldown = Cooldown(window_s=60)
    cooldown.admit("BTC", Decimal(1), now=0)
    cooldown.admit("BTC", Decimal(2), now=1)
    assert cooldown.held_count() == 1
    [held] = cooldown.drain()
    assert held.count == 1 and cooldown.held_count() == 0 and cooldown.drain() == []


def test_a_cooldown_needs_a_window_and_a_burst() -> None:
    with pytest.raises(ValueError, match="burst of at least 1"):
        Cooldown(window_s=60, burst=0)
    with pytest.raises(ValueError):
        Cooldown(window_s=0)


def test_held_keys_are_recognised_counted_once_and_restored_after_a_failed_summary() -> None:
    cooldown = Cooldown(window_s=60, burst=1)
    assert cooldown.admit("BTC", Decimal(1), now=0, key="a")
    assert not cooldown.admit("BTC", Decimal(2), now=1, key="b")
    cooldown.hold("BTC", Decimal(2), at=1, key="b")  # a redelivery of the same event
    cooldown.hold("BTC", Decimal(5), at=0.5, key="c")  # restored from a previous run
    assert cooldown.holds("b") and cooldown.holds("c") and not cooldown.holds("a")
    [held] = cooldown.due(now=61)
    assert (held.count, held.value_usd, held.since, sorted(held.keys)) == (2, Decimal(7), 0.5, ["b", "c"])
    assert not cooldown.holds("b")
    cooldown.restore(held)
    assert cooldown.holds("b") and cooldown.held_count() == 2
    [again] = cooldown.due(now=61)
    assert again.count == 2
