"""The weight budget on a fake clock: bursts allowed, steady rate enforced, debt from big answers repaid."""

from __future__ import annotations

import pytest

from producer.ratelimit import WeightBudget, response_weight


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_burst_of_ten_seconds_worth_goes_out_at_once() -> None:
    budget = WeightBudget(1200, clock=Clock())
    assert [budget.reserve(20) for _ in range(10)] == [0.0] * 10
    assert budget.reserve(20) == pytest.approx(1.0)  # 20 weight at 20 per second


def test_steady_rate_never_exceeds_the_budget() -> None:
    clock = Clock()
    budget = WeightBudget(600, clock=clock)
    sent = 0.0
    for _ in range(200):
        delay = budget.reserve(20)
        clock.now += delay
        sent += 20
    # Over the run, weight sent <= the burst allowance + rate x elapsed time.
    assert sent <= budget.capacity + clock.now * 10 + 1e-6
    assert clock.now == pytest.approx((sent - budget.capacity) / 10)


def test_a_large_answer_puts_the_budget_in_debt() -> None:
    clock = Clock()
    budget = WeightBudget(1200, clock=clock)
    budget.reserve(20)
    budget.charge(response_weight(2000))  # 100 more
    assert budget.available == pytest.approx(200 - 120)
    budget.charge(200)
    assert budget.reserve(20) == pytest.approx(140 / 20)  # 80 - 200 - 20 = -140 tokens, refilled at 20/s
    clock.now += 60
    assert budget.available == budget.capacity


def test_the_time_a_poll_needs() -> None:
    budget = WeightBudget(1200)
    assert budget.seconds_for(9 * 20) == pytest.approx(9.0)
    assert response_weight(19) == 0 and response_weight(2000) == 100


def test_a_budget_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        WeightBudget(0)


def test_spent_counts_the_weight_requests_took_and_nothing_else() -> None:
    """The poll loop stretches its interval on what the budget spent, so a source that reads files spends none."""
    budget = WeightBudget(1000, clock=Clock())
    assert budget.spent == 0
    budget.reserve(20)
    budget.charge(response_weight(2000))
    assert budget.spent == 120
