"""The simulated market: its truth holds together, and the coverage estimate from its public trades tracks it.

Why: the coverage share (:mod:`producer.coverage`) tells a user what share of the market liquidations a watchlist
of makers sees. The claim rests on makers absorbing liquidations in proportion to the volume they make; the market
(:mod:`producer.simulation.market`) is built on that rule with a known truth, so these tests check both that the
market obeys its rule and that the estimate, computed only from what the public ``trades`` feed shows, lands within
a few points of what the watched makers really absorbed. ``pytest -s`` prints the figures.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from decimal import Decimal

import msgspec
import pytest

from producer.coverage import MakerRanking, maker_of
from producer.exchange_types import Trade
from producer.feed_messages import Trades, decode
from producer.simulation.market import Market, MarketSpec, build_market
from producer.simulation.scenarios import LIQUIDATOR_VAULTS
from tests.support.truth import assert_derived_matches_truth, derive

SPEC = MarketSpec(seed=1)
LEG_TOLERANCE = 0.04
"""About 3.5 standard deviations of a leg share near one half over the market's ~1,900 legs."""
USD_TOLERANCE = 0.05
"""USD shares are noisier than counts: a few big BTC legs weigh as much as hundreds of small ones."""


@pytest.fixture(scope="module")
def market() -> Market:
    return build_market(SPEC)


@pytest.fixture(scope="module")
def ranking(market: Market) -> MakerRanking:
    """Every public trade of the market, decoded as the feed's, in a window wider than the market's hour."""
    ranking = MakerRanking(window_ms=2 * SPEC.duration_ms)
    ranking.add_many(msgspec.convert(market.trades(), list[Trade]))
    return ranking


def test_the_same_spec_builds_the_same_market_and_another_seed_another() -> None:
    small = MarketSpec(seed=5, makers=50, takers=100, trades=500, liquidations=40, backstops=3)
    first, again = build_market(small), build_market(small)
    assert first.scenario.fills == again.scenario.fills and first.trades() == again.trades()
    assert first.liquidations == again.liquidations
    other = build_market(MarketSpec(seed=6, makers=50, takers=100, trades=500, liquidations=40, backstops=3))
    assert other.makers != first.makers and other.trades() != first.trades()


@pytest.mark.parametrize("bad", [MarketSpec(makers=0), MarketSpec(takers=0), MarketSpec(liquidations=-1)])
def test_a_market_without_makers_or_with_negative_counts_is_refused(bad: MarketSpec) -> None:
    with pytest.raises(ValueError, match="a market needs makers"):
        build_market(bad)


def test_every_liquidation_is_the_sum_of_its_legs_and_the_fills_say_the_same(market: Market) -> None:
    methods = Counter(liquidation.truth.method for liquidation in market.liquidations)
    assert methods == {"market": SPEC.liquidations, "backstop": SPEC.backstops}
    makers = set(market.makers)
    for liquidation in market.liquidations:
        truth, legs = liquidation.truth, liquidation.legs
        assert {leg.tid for leg in legs} == truth.tids and len(legs) == len(truth.tids)
        assert sum((leg.sz for leg in legs), Decimal(0)) == truth.size, truth.key
        assert sum((leg.value_usd for leg in legs), Decimal(0)) == truth.value_usd, truth.key
        allowed = makers if truth.method == "market" else set(LIQUIDATOR_VAULTS)
        assert {leg.counterparty for leg in legs} <= allowed, truth.key
    # A reference consumer written from the documented rules finds the same liquidations in the fills.
    assert_derived_matches_truth(derive(market.scenario.fills), market.scenario.liquidations)


def test_the_public_trades_are_the_feeds_and_name_each_legs_maker(market: Market) -> None:
    by_coin = market.trades_by_coin()
    assert set(by_coin) == {coin for coin, _ in SPEC.coins}
    for coin, trades in by_coin.items():
        message = decode("public", json.dumps({"channel": "trades", "data": trades[:500]}))
        assert isinstance(message, Trades) and {t.coin for t in message.data} == {coin}
    public = {(t["coin"], t["tid"]): msgspec.convert(t, Trade) for t in market.trades()}
    for liquidation in market.liquidations:
        for leg in liquidation.legs:
            trade = public[(liquidation.truth.coin, leg.tid)]
            assert maker_of(trade) == leg.counterparty
            assert liquidation.truth.liquidated_user in trade.users
            assert (Decimal(trade.px), Decimal(trade.sz)) == (leg.px, leg.sz)


def test_maker_volume_is_heavy_tailed(market: Market, ranking: MakerRanking) -> None:
    makers = set(market.makers)
    volumes = [m.volume_usd for m in ranking.top(len(makers) + len(LIQUIDATOR_VAULTS)) if m.address in makers]
    total = sum(volumes, Decimal(0))
    tenth = float(sum(volumes[: len(makers) // 10], Decimal(0)) / total)
    lower_half = float(sum(volumes[len(volumes) // 2 :], Decimal(0)) / total)
    fills = market.scenario.fills
    legs_per_fill = sum(len(liq.legs) for liq in market.liquidations if liq.truth.method == "market") / sum(
        len(fills.get(maker, ())) for maker in makers
    )
    print(
        f"\n{len(volumes)} makers with volume: the top tenth make {tenth:.1%}, the lower half {lower_half:.1%}; "
        f"{legs_per_fill:.1%} of the makers' fills are liquidation legs"
    )
    assert tenth > 0.5 and lower_half < 0.1, (tenth, lower_half)


def test_makers_absorb_liquidations_in_proportion_to_their_weight(market: Market) -> None:
    """The market's own rule, checked statistically at the fixed seed: what each maker set took is its share."""
    legs = [(leg, liq.truth.coin) for liq in market.liquidations if liq.truth.method == "market" for leg in liq.legs]
    lines = []
    for k in (1, 5, 20, 100):
        watched = market.makers[:k]
        expected = sum(market.true_share(watched, coin) for _, coin in legs) / len(legs)
        expected_usd = sum(float(leg.value_usd) * market.true_share(watched, coin) for leg, coin in legs) / float(
            sum((leg.value_usd for leg, _ in legs), Decimal(0))
        )
        absorbed = market.absorbed(watched)
        lines.append(
            f"top {k:3} by weight: legs {absorbed.leg_share:.3f} (expected {expected:.3f}), "
            f"USD {absorbed.usd_share:.3f} (expected {expected_usd:.3f})"
        )
        assert abs(absorbed.leg_share - expected) < LEG_TOLERANCE, lines[-1]
        assert abs(absorbed.usd_share - expected_usd) < USD_TOLERANCE, lines[-1]
    print("\n" + "\n".join(lines))


def binomial_sigma(share: float, n: int) -> float:
    """Standard deviation of a share measured over ``n`` independent draws: the noise a tolerance must allow."""
    return math.sqrt(max(share * (1 - share), 0.01) / n)


@pytest.mark.parametrize("k", [10, 20, 50])
@pytest.mark.parametrize("feed", ["every trade", "ordinary trades only"])
def test_the_coverage_estimate_tracks_what_the_watched_makers_absorbed(
    market: Market, ranking: MakerRanking, k: int, feed: str
) -> None:
    """Watch the top ``k`` makers of the ranking: the estimate from the public trades against the truth.

    "every trade" is what a producer sees (the liquidations' own trades are public trades too); "ordinary trades
    only" leaves them out, so an estimate that agrees there agrees because makers absorb by volume, not because it
    counted the legs it is compared with.
    """
    if feed != "every trade":
        legs = {(liq.truth.coin, leg.tid) for liq in market.liquidations for leg in liq.legs}
        ranking = MakerRanking(window_ms=2 * SPEC.duration_ms)
        ranking.add_many(t for t in msgspec.convert(market.trades(), list[Trade]) if (t.coin, t.tid) not in legs)
    watched = [m.address for m in ranking.top(k)]
    coverage = ranking.coverage(watched)
    estimate = coverage.overall
    truth = market.absorbed(watched)
    assert estimate.fraction is not None and estimate.trade_fraction is not None
    lines = [
        f"top {k} makers ({feed}): estimated {estimate.fraction:.1%} of maker USD, {estimate.trade_fraction:.1%} of "
        f"trades; absorbed {truth.usd_share:.1%} of liquidated USD, {truth.leg_share:.1%} of legs "
        f"({truth.watched_legs}/{truth.legs}); {truth.touched_share:.1%} of liquidations touched "
        f"({truth.touched}/{truth.liquidations})"
    ]
    failures = []
    if abs(estimate.fraction - truth.usd_share) >= USD_TOLERANCE:
        failures.append("overall USD")
    if abs(estimate.trade_fraction - truth.leg_share) >= LEG_TOLERANCE:
        failures.append("overall legs")
    for coin, share in coverage.per_coin.items():
        in_coin = market.absorbed(watched, coin=coin)
        assert share.fraction is not None and share.trade_fraction is not None
        sigma = binomial_sigma(in_coin.leg_share, in_coin.legs)
        lines.append(
            f"  {coin:9} estimated {share.fraction:6.1%} USD {share.trade_fraction:6.1%} trades; absorbed "
            f"{in_coin.usd_share:6.1%} USD {in_coin.leg_share:6.1%} of {in_coin.legs} legs (sigma {sigma:.1%})"
        )
        # Per coin the legs are few: the tolerance is the sampling noise, 4 sigma (USD: sizes vary, 5 sigma).
        if abs(share.trade_fraction - in_coin.leg_share) >= 4 * sigma:
            failures.append(f"{coin} legs")
        if abs(share.fraction - in_coin.usd_share) >= 5 * sigma:
            failures.append(f"{coin} USD")
    figures = "\n".join(lines)
    print("\n" + figures)
    assert not failures, f"{failures} off:\n{figures}"
    # A liquidation with several legs is touched more often than its legs are taken: the published share is higher.
    assert truth.touched_share >= truth.leg_share, figures
