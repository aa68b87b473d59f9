"""The shared backoff: bounded, jittered, reset on success; the sliding window never lets N+1 in a minute."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from plumbing.backoff import Backoff, SlidingWindow, exponential, full_jitter


class Top(random.Random):
    """Draws the bound itself: shows the envelope the jitter draws under."""

    def uniform(self, a: float, b: float) -> float:
        return b


def test_delays_grow_exponentially_up_to_the_cap() -> None:
    backoff = Backoff(base=0.5, cap=8.0, rng=Top())
    assert [backoff.next_delay() for _ in range(7)] == [0.5, 1.0, 2.0, 4.0, 8.0, 8.0, 8.0]


def test_the_fixed_schedule_doubles_up_to_the_cap_and_bounds_the_jitter() -> None:
    """The sinks' retries, the runner's and the tail's waits for Redis: a schedule a reader can follow in the log."""
    assert [exponential(n, base=0.1, cap=5.0) for n in range(8)] == [0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 5.0, 5.0]
    assert exponential(10**9, base=0.1, cap=5.0) == 5.0
    assert full_jitter(4, base=0.1, cap=5.0, rng=Top()) == exponential(4, base=0.1, cap=5.0)


def test_full_jitter_spreads_delays_over_the_whole_range() -> None:
    rng = random.Random(7)
    draws = [full_jitter(3, base=1.0, cap=30.0, rng=rng) for _ in range(2_000)]
    assert 0.0 <= min(draws) < 0.5 and 7.5 < max(draws) <= 8.0
    assert len({round(d, 3) for d in draws}) > 1_000  # not a few fixed steps: clients do not retry in lockstep


def test_success_resets_the_next_delay_to_the_base_range() -> None:
    backoff = Backoff(base=0.5, cap=30.0, rng=Top())
    for _ in range(10):
        backoff.next_delay()
    backoff.reset()
    assert [backoff.next_delay(), backoff.next_delay()] == [0.5, 1.0]


def test_two_backoffs_with_the_same_seed_draw_the_same_delays() -> None:
    first = Backoff(rng=random.Random(42))
    second = Backoff(rng=random.Random(42))
    assert [first.next_delay() for _ in range(5)] == [second.next_delay() for _ in range(5)]


@given(st.integers(min_value=-5, max_value=10_000))
def test_a_delay_is_never_negative_nor_above_the_cap_however_long_the_outage(attempt: int) -> None:
    assert 0.0 <= full_jitter(attempt, base=0.5, cap=30.0, rng=random.Random(attempt)) <= 30.0


@pytest.mark.parametrize(("base", "cap"), [(0.0, 1.0), (-1.0, 1.0), (2.0, 1.0)])
def test_a_nonsensical_backoff_is_refused(base: float, cap: float) -> None:
    with pytest.raises(ValueError, match="0 < base <= cap"):
        Backoff(base=base, cap=cap)


def test_the_window_admits_the_limit_then_says_how_long_until_the_oldest_expires() -> None:
    window = SlidingWindow(3, 60.0)
    for now in (0.0, 10.0, 20.0):
        assert window.wait(now) == 0.0
        window.record(now)
    assert window.wait(25.0) == 35.0  # the event at 0 leaves the window at 60
    assert window.wait(60.0) == 0.0


@given(st.lists(st.floats(min_value=0.0, max_value=30.0), min_size=1, max_size=120))
def test_following_the_window_never_puts_more_than_the_limit_in_any_minute(gaps: list[float]) -> None:
    window = SlidingWindow(30, 60.0)
    now, times = 0.0, []
    for gap in gaps:
        now += gap
        now += window.wait(now)
        window.record(now)
        times.append(now)
    assert all(sum(1 for t in times if start <= t < start + 60.0) <= 30 for start in times)


def test_a_nonsensical_window_is_refused() -> None:
    with pytest.raises(ValueError, match="limit >= 1"):
        SlidingWindow(0)
