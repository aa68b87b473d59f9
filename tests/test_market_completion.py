"""Completion at market scale: a ws producer following the makers through a cascade, held to the market's truth
and to the weight the exchange would have charged it.

Each test plays a simulated market (:mod:`producer.simulation.market`) into the fake exchange while a producer with
completion on and the adaptive watchlist runs, then checks the stream: every complete event is the truth exactly,
every liquidation is published once partial and at most once complete, the partial ones left are counted or still
waiting, and no rolling minute of the exchange's record weighs more than the budget. ``pytest -s`` prints the
figures: the share completed and the heaviest minute against the budget.
"""

from __future__ import annotations

import time
from collections import Counter
from decimal import Decimal

import pytest

from producer.completion import Completer
from producer.simulation.fake_exchange import heaviest_minute
from producer.simulation.market import MarketLiquidation, MarketSpec, build_market
from producer.simulation.scenarios import HLP_LIQUIDATOR
from producer.sources.ws import WsSource
from schemas import LiquidationEvent
from tests.helpers import stream_liquidations, wait_until
from tests.support.market_run import Key, MarketRun, key_of, market_producer, touched

PINNED = (HLP_LIQUIDATOR,)
"""One pinned address (the backstops' vault): the adaptive watchlist gives the nine other slots to makers."""
EXCHANGE_LIMIT = 1_200
"""Request weight per minute per IP that Hyperliquid allows."""
CASCADE = MarketSpec(seed=2, makers=200, trades=3_000, liquidations=300, backstops=10, duration_ms=600_000)
"""Ten minutes of a cascade: a tenth of the trades are liquidations, mostly absorbed by a few big makers."""


def expected_price(liquidation: MarketLiquidation) -> tuple[Decimal, Decimal]:
    """The price a complete event must give, and how far a volume-weighted one may round: the one price all legs
    share exactly, else the VWAP within a millionth of the finest fill price's step."""
    prices = {leg.px for leg in liquidation.legs}
    if len(prices) == 1:
        return next(iter(prices)), Decimal(0)
    places = max(-int(px.as_tuple().exponent) for px in prices) + 6
    return liquidation.truth.value_usd / liquidation.truth.size, Decimal(1).scaleb(-places)


def assert_is_the_truth(event: LiquidationEvent, liquidation: MarketLiquidation) -> None:
    truth = liquidation.truth
    assert (event.size, event.value_usd, set(event.tids), event.fills) == (
        truth.size,
        truth.value_usd,
        set(truth.tids),
        len(truth.tids),
    ), event.key
    assert (event.liquidation_side, event.method, event.timestamp, event.mark_price) == (
        truth.side,
        truth.method,
        truth.timestamp,
        Decimal(truth.mark_price),
    ), event.key
    price, within = expected_price(liquidation)
    assert abs(event.price - price) <= within, event.key
    assert event.tids == tuple(sorted(truth.tids))


def _completer(run: MarketRun) -> Completer:
    completer = run.producer.completer
    assert completer is not None
    return completer


def _metric(run: MarketRun, name: str) -> float:
    return run.producer.metrics.registry.get_sample_value(name) or 0.0


async def check_stream(run: MarketRun, stream: str) -> tuple[dict[Key, LiquidationEvent], set[Key]]:
    """Everything every test holds: the complete events (by key) and the keys left partial. Call with the producer
    stopped, so the completer's queue and counters are final."""
    market = run.market
    truth = touched(market, run.subscribed())
    events = await stream_liquidations(stream)
    keys = Counter((key_of(e.tx_hash, e.coin, e.liquidated_user), e.complete) for e in events)
    assert max(keys.values()) == 1, "an event was published twice with the same figures' completeness"
    complete: dict[Key, LiquidationEvent] = {}
    partial: set[Key] = set()
    for event in events:
        key = key_of(event.tx_hash, event.coin, event.liquidated_user)
        assert key in truth, f"published a liquidation no watched address took: {key}"
        if event.complete:
            assert_is_the_truth(event, truth[key])
            complete[key] = event
        else:
            assert key not in complete, f"a partial event after the complete one: {key}"
            assert set(event.tids) <= truth[key].truth.tids and event.size <= truth[key].truth.size, key
            partial.add(key)
    left = partial - set(complete)
    completer = _completer(run)
    waiting = {key_of(e.tx_hash, e.coin, e.liquidated_user) for e in completer.waiting}
    assert waiting <= left
    assert len(left) == len(waiting) + _metric(run, "hl_producer_events_left_partial_total"), "uncounted partials"
    assert completer.completed == len(partial & set(complete)) == _metric(run, "hl_producer_events_completed_total")
    return complete, left


def report(name: str, run: MarketRun, complete: dict[Key, LiquidationEvent], left: set[Key], seconds: float) -> int:
    """Print the figures; the heaviest minute of the exchange's record."""
    heaviest = heaviest_minute(run.fake.charges)
    budget = run.producer.config.weight_per_minute
    weight = sum(charge.weight for charge in run.fake.charges)
    published = len(complete) + len(left)
    print(
        f"\n{name}: {published} liquidations published in {seconds:.1f} s, {len(complete)} complete "
        f"({len(complete) / published:.1%}), {len(left)} left partial ({len(_completer(run).waiting)} still "
        f"waiting); {len(run.fake.charges)} requests weighing {weight}, heaviest minute {heaviest} of a budget of "
        f"{budget:g} (exchange limit {EXCHANGE_LIMIT})"
    )
    return heaviest


async def every_touched_published(run: MarketRun, stream: str, within: float = 30) -> None:
    """Until every liquidation the watchlist took is in the stream, partial or complete. The watchlist is the
    source's, read at each look: the feed's subscriptions lag it, and a maker at the edge of the ranking may have
    been let go before its gap-fill."""
    source = run.producer.source
    assert isinstance(source, WsSource)
    got: set[Key] = set()

    async def published() -> bool:
        got.update(key_of(e.tx_hash, e.coin, e.liquidated_user) for e in await stream_liquidations(stream))
        return set(touched(run.market, source.watchlist)) <= got

    try:
        await wait_until(published, within=within, message="every liquidation the watchlist took published")
    except AssertionError as exc:
        want = touched(run.market, source.watchlist)
        missing = sorted(set(want) - got)
        legs = [(key, [leg.counterparty for leg in want[key].legs]) for key in missing[:3]]
        raise AssertionError(
            f"{exc}: {len(missing)} of {len(want)} missing, the first with their legs' makers: {legs}; "
            f"watched: {source.watchlist}"
        ) from None


async def test_with_room_in_the_budget_every_liquidation_is_published_partial_then_complete_as_the_truth(
    stream: str,
) -> None:
    market = build_market(CASCADE)
    started = time.monotonic()
    async with market_producer(market, stream, pinned=PINNED, budget=True, weight_per_minute=100_000) as run:
        await run.play()
        await every_touched_published(run, stream)
        await wait_until(lambda: not _completer(run).waiting, within=30, message="every partial event completed")
    complete, left = await check_stream(run, stream)
    heaviest = report("room for every completion", run, complete, left, time.monotonic() - started)
    assert complete and not left  # each partial event completed, backstops complete from the start
    assert heaviest <= 100_000


async def test_in_a_cascade_beyond_the_budget_partial_events_keep_up_and_are_counted_and_the_budget_holds(
    stream: str,
) -> None:
    """A budget for a twentieth of the reads, and a queue of 20: most completions wait or are dropped, counted,
    while every partial event is published as the market plays; the exchange never sees more weight in a minute
    than the budget. (The default budget is the slow test's: its sweeps of the makers take tens of seconds.)"""
    market = build_market(CASCADE)
    started = time.monotonic()
    async with market_producer(market, stream, pinned=PINNED, budget=True, weight_per_minute=6_000) as run:
        _completer(run).max_waiting = 20
        await run.play()
        await every_touched_published(run, stream)
    complete, left = await check_stream(run, stream)
    heaviest = report("cascade, a small budget", run, complete, left, time.monotonic() - started)
    assert _metric(run, "hl_producer_events_left_partial_total") > 0  # dropped from the full queue, counted
    assert heaviest <= 6_000


@pytest.mark.slow
async def test_over_minutes_of_completions_at_the_default_budget_no_rolling_minute_exceeds_it(stream: str) -> None:
    """Completions keep the budget spent for more than a minute: the window the exchange's limit is held against
    (the token bucket alone let 1,260 through in one, over the exchange's 1,200)."""
    market = build_market(MarketSpec(seed=3, makers=200, trades=4_000, liquidations=600, backstops=10))
    started = time.monotonic()
    async with market_producer(market, stream, pinned=PINNED, budget=True, weight_per_minute=1_150) as run:
        await run.play()
        played = time.monotonic()
        await every_touched_published(run, stream, within=120)
        print(f"\nevery partial event published {time.monotonic() - played:.1f} s after the market was played")
        await wait_until(lambda: time.monotonic() - started > 90, within=120, interval=1.0, message="90 s")
        assert _completer(run).waiting, "the completions ran out before the minute was full: a bigger market"
    complete, left = await check_stream(run, stream)
    heaviest = report("minutes of completions, default budget", run, complete, left, time.monotonic() - started)
    assert heaviest <= 1_150 <= EXCHANGE_LIMIT
