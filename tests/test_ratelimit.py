"""The weight budget on a fake clock: bursts allowed, steady rate enforced, debt from big answers repaid, and no
rolling minute over the budget, as the exchange counts it."""

from __future__ import annotations

import pytest

from producer.ratelimit import WINDOW, WeightBudget, response_weight
from producer.simulation.fake_exchange import Charge, heaviest_minute
from tests.helpers import ManualClock


def test_a_burst_of_ten_seconds_worth_goes_out_at_once() -> None:
    budget = WeightBudget(1200, clock=ManualClock())
    assert [budget.reserve(20) for _ in range(10)] == [0.0] * 10
    assert budget.reserve(20) == pytest.approx(1.0)  # 20 weight at 20 per second


def test_steady_rate_never_exceeds_the_budget() -> None:
    clock = ManualClock()
    budget = WeightBudget(600, clock=clock)
    sent = 0.0
    for _ in range(200):
        delay = budget.reserve(20)
        clock.now += delay
        sent += 20
    # Over the run, weight sent <= the burst allowance + rate x elapsed time, and the minute is held too: the burst
    # is paid back by the end of its minute.
    assert sent <= budget.capacity + clock.now * 10 + 1e-6
    assert (sent - budget.capacity) / 10 <= clock.now <= sent / 10


def test_a_large_answer_puts_the_budget_in_debt() -> None:
    clock = ManualClock()
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
    budget = WeightBudget(1000, clock=ManualClock())
    assert budget.spent == 0
    budget.reserve(20)
    budget.charge(response_weight(2000))
    assert budget.spent == 120


def _greedy(budget: WeightBudget, clock: ManualClock, seconds: float, headroom: float = 0) -> list[Charge]:
    """Send 20-weight requests as fast as the budget lets them out for ``seconds``; what the exchange counted."""
    sent: list[Charge] = []
    while clock.now < seconds:
        clock.now += budget.reserve(20, headroom=headroom)
        sent.append(Charge(clock.now, 20))
    return sent


def test_no_rolling_minute_takes_more_than_the_budget_burst_included() -> None:
    """The burst on top of a minute at the steady rate would have been 1,150 + 191: over the exchange's 1,200."""
    clock = ManualClock()
    budget = WeightBudget(1150, clock=clock)
    sent = _greedy(budget, clock, 300)
    assert heaviest_minute(sent) <= 1150
    assert heaviest_minute(sent, seconds=10) >= 190  # the burst still goes out at once
    assert sum(charge.weight for charge in sent) >= 1150 * 4  # and the budget is spent: five minutes' worth, less one


def test_room_is_kept_for_the_most_an_answer_can_weigh_so_a_large_one_never_breaks_the_minute() -> None:
    clock = ManualClock()
    budget = WeightBudget(600, clock=clock)
    sent: list[Charge] = []
    for _ in range(100):
        clock.now += budget.reserve(20, headroom=100)
        budget.charge(100)  # every answer as large as a fills answer can be
        sent.append(Charge(clock.now, 120))
    assert heaviest_minute(sent) <= 600


def test_the_room_now_is_the_bucket_or_what_the_last_minute_leaves_whichever_is_less() -> None:
    clock = ManualClock()
    budget = WeightBudget(600, clock=clock)
    assert budget.room() == budget.available == 100  # a full bucket: ten seconds' worth
    for _ in range(25):  # 500 weight in a minute, most of it at the steady rate
        clock.now += budget.reserve(20)
    clock.now += 10  # the bucket full again, but only 100 of the minute left
    assert budget.available == 100 and budget.room() == pytest.approx(100) and budget.room(headroom=100) == 0
    clock.now += WINDOW
    assert budget.room(headroom=100) == 100  # the minute gone by
