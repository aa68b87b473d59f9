"""The one bounded memory of recent keys the producer, the totals and the alerter share."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from plumbing.recent_keys import RecentKeys


@dataclass(frozen=True)
class Item:
    key: str


def test_a_key_is_new_once_then_remembered() -> None:
    recent = RecentKeys(10)
    assert recent.add("a") is True
    assert recent.add("a") is False
    assert "a" in recent and "b" not in recent


def test_at_capacity_the_least_recently_seen_key_is_forgotten() -> None:
    recent = RecentKeys(2)
    recent.add("a")
    recent.add("b")
    recent.add("a")  # seen again: now "b" is the oldest
    recent.add("c")
    assert len(recent) == 2
    assert "a" in recent and "c" in recent
    assert "b" not in recent


def test_capacity_0_remembers_nothing() -> None:
    recent = RecentKeys(0)
    assert recent.add("a") is True
    assert recent.add("a") is True
    assert len(recent) == 0


def test_a_negative_capacity_is_refused() -> None:
    with pytest.raises(ValueError, match="0 keys or more"):
        RecentKeys(-1)


def test_fresh_keeps_the_items_not_seen_and_peek_does_not_remember_them() -> None:
    recent = RecentKeys(10)
    assert recent.fresh([Item("a"), Item("b"), Item("a")]) == [Item("a"), Item("b")]
    assert recent.fresh_peek([Item("b"), Item("c")]) == [Item("c")]
    assert recent.fresh_peek([Item("c")]) == [Item("c")]
    assert recent.fresh([Item("c"), Item("a")]) == [Item("c")]
