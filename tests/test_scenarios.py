"""The scenario builder's ground truth and formats: every producer test compares against them.

Why: if the truth disagreed with the fills it describes, producer tests would pass or fail for the wrong reasons.
So the truth is re-derived from the fills by a tiny reference consumer written only from the documented rules
(:func:`tests.support.truth.derive`), and the fills are checked against the shapes of real mainnet answers.
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

import pytest

from producer.simulation.scenarios import (
    ADL_DIR,
    DEMO_BUSY,
    DEMO_MAKERS,
    DEMO_WATCHLIST,
    HLP_LIQUIDATOR,
    LIQUIDATOR_2,
    LIQUIDATOR_VAULTS,
    ZERO_HASH,
    Scenario,
    ScenarioBuilder,
    demo_scenario,
)
from tests.support.mainnet import ALICE, BOB, OPTIONAL_FILL_KEYS, REAL_FILL_KEYS, REAL_TRADE_KEYS
from tests.support.truth import assert_derived_matches_truth, derive, visible_from

ADDRESS_RE = re.compile(r"^0x[0-9a-f]{40}$")
HASH_RE = re.compile(r"^0x[0-9a-f]{64}$")
DECIMAL_RE = re.compile(r"^-?\d+\.\d+$")


# ---------------------------------------------------------------------------------------------------- scenarios
def fills_with_tid(scenario: Scenario, tid: int) -> dict[str, dict[str, Any]]:
    """address -> the fill of that trade on that address."""
    return {addr: fill for addr, fills in scenario.fills.items() for fill in fills if fill["tid"] == tid}


def test_market_liquidation_legs_share_tid_hash_time_and_follow_side_rules() -> None:
    builder = ScenarioBuilder(seed=7)
    makers = [builder.address() for _ in range(3)]
    long_liq = builder.market_liquidation(coin="BTC", side="long", makers=makers)
    short_liq = builder.market_liquidation(coin="ETH", side="short", makers=makers[:1])
    scenario = builder.build()

    assert len(long_liq.tids) == 3
    for liq, user_side, maker_side, user_dir in (
        (long_liq, "A", "B", "Close Long"),
        (short_liq, "B", "A", "Close Short"),
    ):
        for tid in liq.tids:
            legs = fills_with_tid(scenario, tid)
            assert len(legs) == 2 and liq.liquidated_user in legs
            (maker,) = set(legs) - {liq.liquidated_user}
            own, other = legs[liq.liquidated_user], legs[maker]
            assert own["hash"] == other["hash"] == liq.tx_hash
            assert own["time"] == other["time"] == liq.timestamp
            assert (own["px"], own["sz"]) == (other["px"], other["sz"])
            assert (own["side"], own["crossed"], own["dir"]) == (user_side, True, user_dir)
            assert (other["side"], other["crossed"]) == (maker_side, False)
            assert other["dir"] in {
                "Open Long",
                "Close Short",
                "Short > Long",
                "Open Short",
                "Close Long",
                "Long > Short",
            }
            expected_liq = {"liquidatedUser": liq.liquidated_user, "markPx": liq.mark_price, "method": "market"}
            assert own["liquidation"] == other["liquidation"] == expected_liq
    assert_derived_matches_truth(derive(scenario.fills), scenario.liquidations)


def test_truth_values_are_exact_decimals() -> None:
    """0.1 + 0.2 must be 0.3 exactly; a float-summing consumer fails against this truth."""
    builder = ScenarioBuilder()
    liq = builder.market_liquidation(
        coin="BTC", makers=[ALICE, BOB], sizes=["0.1", "0.2"], prices=["64159.0", "64158.5"]
    )
    assert liq.size == Decimal("0.3")
    assert liq.value_usd == Decimal("64159.0") * Decimal("0.1") + Decimal("64158.5") * Decimal("0.2")
    assert liq.value_usd == Decimal("19247.60")
    one_px = builder.market_liquidation(coin="SOL", makers=[ALICE], sizes=["28.33"], px="67.5499")
    assert one_px.value_usd == Decimal("1913.688667") and one_px.size == Decimal("28.33")


def test_backstop_vault_leg_names_the_liquidated_side() -> None:
    builder = ScenarioBuilder(seed=2)
    long_liq = builder.backstop_liquidation(coin="SOL", side="long", size="28.33", px="67.5499", mark_px=68.2)
    short_liq = builder.backstop_liquidation(coin="ETH", side="short", vault=LIQUIDATOR_2, isolated=True)
    scenario = builder.build()
    for liq, vault, vault_side, vault_dir in (
        (long_liq, HLP_LIQUIDATOR, "B", "Liquidated Cross Long"),
        (short_liq, LIQUIDATOR_2, "A", "Liquidated Isolated Short"),
    ):
        (tid,) = liq.tids
        legs = fills_with_tid(scenario, tid)
        assert set(legs) == {vault, liq.liquidated_user}
        assert (legs[vault]["side"], legs[vault]["dir"]) == (vault_side, vault_dir)
        assert legs[liq.liquidated_user]["side"] == ("A" if vault_side == "B" else "B")
        assert legs[vault]["liquidation"]["method"] == legs[liq.liquidated_user]["liquidation"]["method"] == "backstop"
    assert scenario.fills[HLP_LIQUIDATOR][0]["liquidation"]["markPx"] == 68.2  # a JSON number
    assert long_liq.mark_price == "68.2"
    assert isinstance(scenario.fills[LIQUIDATOR_2][0]["liquidation"]["markPx"], str)
    assert_derived_matches_truth(derive(scenario.fills), scenario.liquidations)
    trade_users = {tuple(t["users"]) for trades in scenario.trades.values() for t in trades}
    assert (HLP_LIQUIDATOR, long_liq.liquidated_user) in trade_users  # vault buys a long
    assert (short_liq.liquidated_user, LIQUIDATOR_2) in trade_users  # vault sells a short


def test_adl_fills_carry_a_liquidation_object_but_are_not_truth() -> None:
    builder = ScenarioBuilder()
    builder.adl(coin="AVAX", user=ALICE, size="28.53", px="22.075")
    scenario = builder.build()
    (fill,) = scenario.fills[ALICE]
    assert fill["dir"] == ADL_DIR and fill["side"] == "B" and fill["startPosition"] == "-28.53"
    assert fill["liquidation"]["liquidatedUser"] == HLP_LIQUIDATOR and fill["liquidation"]["method"] == "backstop"
    assert scenario.liquidations == [] and scenario.adl_fill_count == 1
    assert visible_from(scenario, [ALICE]) == []


def test_one_hash_with_several_users_and_coins() -> None:
    builder = ScenarioBuilder(seed=5)
    tx_hash = builder.new_hash()
    maker, u1, u2 = builder.address(), builder.address(), builder.address()
    a = builder.market_liquidation(coin="BTC", user=u1, makers=[maker], tx_hash=tx_hash)
    builder.ordinary_fills(maker, 3)  # the clock moves on; the hash keeps its block time
    b = builder.market_liquidation(coin="BTC", user=u2, makers=[maker], tx_hash=tx_hash)
    c = builder.market_liquidation(coin="ETH", side="short", user=u2, makers=[maker], tx_hash=tx_hash)
    again = builder.market_liquidation(coin="ETH", side="short", user=u2, makers=[maker], tx_hash=tx_hash)
    scenario = builder.build()
    assert {liq.key for liq in scenario.liquidations} == {a.key, b.key, c.key}
    assert a.timestamp == b.timestamp == c.timestamp
    merged = scenario.by_key()[c.key]
    assert merged == again and merged.tids > c.tids and merged.size == again.size
    maker_btc = [f for f in scenario.fills[maker] if f["hash"] == tx_hash and f["coin"] == "BTC"]
    assert len({f["oid"] for f in maker_btc}) == 1  # one resting order absorbed both users
    assert {f["liquidation"]["liquidatedUser"] for f in maker_btc} == {u1, u2}
    assert_derived_matches_truth(derive(scenario.fills), scenario.liquidations)
    with pytest.raises(ValueError):
        builder.market_liquidation(coin="BTC", side="short", user=u1, makers=[maker], tx_hash=tx_hash)


def test_visible_from_restricts_to_watched_legs() -> None:
    builder = ScenarioBuilder(seed=11)
    makers = [builder.address() for _ in range(3)]
    liq = builder.market_liquidation(
        coin="BTC", makers=makers, sizes=["0.1", "0.25", "0.5"], prices=["64000.0", "63999.0", "63998.0"]
    )
    scenario = builder.build()

    (only_second,) = visible_from(scenario, [makers[1].upper().replace("0X", "0x")])
    (second_fill,) = scenario.fills[makers[1]]
    assert only_second.tids == frozenset({second_fill["tid"]})
    assert only_second.size == Decimal("0.25") and only_second.value_usd == Decimal("15999.75")
    assert (only_second.key, only_second.side, only_second.method) == (liq.key, "long", "market")

    (two,) = visible_from(scenario, makers[:2])
    assert two.size == Decimal("0.35") and len(two.tids) == 2
    assert visible_from(scenario, [liq.liquidated_user]) == [liq]
    assert visible_from(scenario, [*makers, liq.liquidated_user]) == [liq]
    assert visible_from(scenario, [ALICE]) == []


def test_ordinary_fills_look_real_and_are_never_liquidations() -> None:
    builder = ScenarioBuilder(seed=4)
    fills = builder.ordinary_fills(ALICE, 400, coin="ETH")
    assert all("liquidation" not in f for f in fills)
    zero = [f for f in fills if f["hash"] == ZERO_HASH]
    assert 0.18 < len(zero) / len(fills) < 0.38
    assert all(not f["crossed"] for f in zero)
    assert any("cloid" in f for f in fills) and any("builderFee" in f for f in fills)
    assert all(f["twapId"] is None for f in fills)
    times = [f["time"] for f in fills]
    assert times == sorted(times) and len(set(times)) < len(times)  # some same-block fills
    assert len({f["tid"] for f in fills}) == len(fills)


@pytest.mark.parametrize(("taker_side", "maker_side"), [("B", "A"), ("A", "B")])
def test_a_book_trade_is_a_public_trade_and_the_makers_own_fill_of_it(taker_side: str, maker_side: str) -> None:
    """The maker is the resting side: it sold to a buying taker, bought from a selling one; one tid for both."""
    builder = ScenarioBuilder(seed=5)
    trade = builder.book_trade("ETH", maker=ALICE, taker=BOB, taker_side=taker_side)
    scenario = builder.build()
    (fill,) = scenario.fills[ALICE]
    assert BOB not in scenario.fills  # no watchlist follows takers
    assert trade["users"] == ([BOB, ALICE] if taker_side == "B" else [ALICE, BOB]) and trade["side"] == taker_side
    assert (fill["side"], fill["crossed"], "liquidation" in fill) == (maker_side, False, False)
    assert [fill[k] for k in ("coin", "px", "sz", "time", "hash", "tid")] == [
        trade[k] for k in ("coin", "px", "sz", "time", "hash", "tid")
    ]
    assert list(trade) == REAL_TRADE_KEYS and [k for k in fill if k not in OPTIONAL_FILL_KEYS] == REAL_FILL_KEYS
    zero = builder.book_trade("ETH", maker=ALICE, taker=BOB, taker_side="B", zero_hash=True)
    assert zero["hash"] == ZERO_HASH
    with pytest.raises(ValueError, match="taker_side"):
        builder.book_trade("ETH", maker=ALICE, taker=BOB, taker_side="X")


def test_formats_match_mainnet() -> None:
    """Every generated fill/trade uses the real key order and string formats (checked on the demo scenario)."""
    scenario = demo_scenario()
    for address, fills in scenario.fills.items():
        assert ADDRESS_RE.fullmatch(address)
        for fill in fills:
            assert [k for k in fill if k not in OPTIONAL_FILL_KEYS] == REAL_FILL_KEYS
            assert set(fill) - set(REAL_FILL_KEYS) <= OPTIONAL_FILL_KEYS
            for key in ("px", "sz", "startPosition", "closedPnl", "fee"):
                assert DECIMAL_RE.fullmatch(fill[key]), (key, fill[key])
            assert HASH_RE.fullmatch(fill["hash"]) and fill["side"] in ("A", "B")
            assert 10**14 <= fill["tid"] < 1.1 * 10**15
            if "liquidation" in fill:
                assert ADDRESS_RE.fullmatch(fill["liquidation"]["liquidatedUser"])
    for coin, trades in scenario.trades.items():
        assert [t["time"] for t in trades] == sorted((t["time"] for t in trades), reverse=True)
        for trade in trades:
            assert list(trade) == REAL_TRADE_KEYS and trade["coin"] == coin
            assert DECIMAL_RE.fullmatch(trade["px"]) and DECIMAL_RE.fullmatch(trade["sz"])
            assert all(ADDRESS_RE.fullmatch(user) for user in trade["users"])


def test_builder_is_deterministic() -> None:
    assert demo_scenario(seed=9) == demo_scenario(seed=9)
    assert demo_scenario(seed=9).liquidations != demo_scenario(seed=10).liquidations


def test_demo_scenario_has_the_promised_mix() -> None:
    scenario = demo_scenario()
    liqs = scenario.liquidations
    assert sum(liq.method == "backstop" for liq in liqs) == 2
    assert scenario.adl_fill_count == 3
    assert len(scenario.fills[DEMO_BUSY]) > 4_000
    by_hash: dict[str, set[tuple[str, str]]] = {}
    for liq in liqs:
        by_hash.setdefault(liq.tx_hash, set()).add((liq.coin, liq.liquidated_user))
    assert any(len({c for c, _ in v}) >= 2 and len({u for _, u in v}) >= 2 for v in by_hash.values())
    visible = visible_from(scenario, DEMO_WATCHLIST)
    assert 0 < len(visible) < len(liqs)  # one liquidation is seen by no watched address
    assert any(v.tids < scenario.by_key()[v.key].tids for v in visible)  # partially seen ones
    assert sum(liq.method == "market" for liq in visible_from(scenario, DEMO_MAKERS)) >= 5
    assert any(f["hash"] == ZERO_HASH for m in DEMO_MAKERS for f in scenario.fills[m])
    for coin in ("BTC", "ETH", "SOL"):
        assert len(scenario.trades[coin]) > 10
    newest = {coin: scenario.trades[coin][:10] for coin in ("BTC", "ETH", "SOL")}
    assert any(t["users"][0] in LIQUIDATOR_VAULTS for ts in newest.values() for t in ts)
    assert any(t["users"][1] in LIQUIDATOR_VAULTS for ts in newest.values() for t in ts)
    assert_derived_matches_truth(derive(scenario.fills), liqs)
