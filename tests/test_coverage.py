"""The maker ranking and the coverage estimate: who made the trades, how much, and what a watchlist covers of it.

Why these matter to a user: the coverage share is the figure that tells them what share of the market
liquidations their producer can see, and the ranking picks the makers to watch. A wrong maker (the aggressor
instead of the resting side), a trade counted twice or volume that never leaves the window would misreport both.
"""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from producer.coverage import MakerRanking, MakerVolume, Share, maker_of
from producer.exchange_types import Trade

A = "0x" + "a" * 40
B = "0x" + "b" * 40
C = "0x" + "c" * 40
TAKER = "0x" + "f" * 40
T0 = 1_760_130_000_000
MINUTE = 60_000

_tids = iter(range(10**14, 10**15))


def made(maker: str, px: str, sz: str, *, coin: str = "BTC", time: int = T0, tid: int | None = None) -> Trade:
    """A trade ``maker`` made: alternately as the seller to a buying taker and as the buyer from a selling one."""
    tid = next(_tids) if tid is None else tid
    if tid % 2:
        return Trade(coin=coin, side="B", px=px, sz=sz, time=time, hash="0x1", tid=tid, users=(TAKER, maker))
    return Trade(coin=coin, side="A", px=px, sz=sz, time=time, hash="0x1", tid=tid, users=(maker, TAKER))


def test_the_maker_is_the_resting_side_not_the_aggressor() -> None:
    buyer_crossed = Trade(coin="BTC", side="B", px="1.0", sz="1.0", time=T0, hash="0x1", tid=1, users=(TAKER, A))
    seller_crossed = Trade(coin="BTC", side="A", px="1.0", sz="1.0", time=T0, hash="0x1", tid=2, users=(A, TAKER))
    assert maker_of(buyer_crossed) == A
    assert maker_of(seller_crossed) == A
    ranking = MakerRanking()
    ranking.add_many([buyer_crossed, seller_crossed])
    assert [m.address for m in ranking.top(5)] == [A]


def test_top_ranks_by_exact_notional_overall_and_per_coin() -> None:
    ranking = MakerRanking()
    ranking.add_many(
        [
            made(A, "0.1", "1.0"),
            made(A, "0.2", "1.0"),  # A: 0.3 exactly, never 0.30000000000000004
            made(B, "0.25", "1.0"),
            made(C, "0.3", "1.0", coin="ETH"),
            made(B, "0.05", "1.0", coin="ETH"),
        ]
    )
    assert ranking.top(2) == [MakerVolume(A, Decimal("0.3")), MakerVolume(B, Decimal("0.30"))]
    assert ranking.top(3)[2] == MakerVolume(C, Decimal("0.3"))  # A, B, C all at 0.3: ties go by address
    assert ranking.top(5, coin="ETH") == [MakerVolume(C, Decimal("0.3")), MakerVolume(B, Decimal("0.05"))]
    assert ranking.top(0) == []
    assert ranking.volume() == Decimal("0.90") and ranking.volume("ETH") == Decimal("0.35")
    assert ranking.maker_count == 3 and ranking.coins() == ["BTC", "ETH"]


def test_coverage_is_the_watched_share_of_maker_volume_overall_and_per_coin() -> None:
    ranking = MakerRanking()
    ranking.add_many(
        [
            made(A, "100.0", "3.0"),  # BTC: A 300 of 400, 1 trade of 2
            made(B, "100.0", "1.0"),
            made(A, "10.0", "1.0", coin="ETH"),  # ETH: A 10 of 100, 1 trade of 3
            made(C, "10.0", "4.5", coin="ETH"),
            made(C, "10.0", "4.5", coin="ETH"),
        ]
    )
    coverage = ranking.coverage([A.upper().replace("0X", "0x")])  # addresses compare case-insensitively
    assert coverage.overall == Share(Decimal("310.0"), Decimal("500.0"), 2, 5)
    assert coverage.overall.fraction == pytest.approx(0.62) and coverage.overall.trade_fraction == 0.4
    assert coverage.per_coin["BTC"].fraction == 0.75 and coverage.per_coin["BTC"].trade_fraction == 0.5
    assert coverage.per_coin["ETH"].fraction == pytest.approx(0.1)
    assert coverage.per_coin["ETH"].trade_fraction == pytest.approx(1 / 3)
    nobody = ranking.coverage([])
    assert nobody.overall.fraction == 0.0 and set(nobody.per_coin) == {"BTC", "ETH"}


def test_an_empty_window_has_no_estimate_rather_than_zero_coverage() -> None:
    coverage = MakerRanking().coverage([A])
    assert coverage.overall.fraction is None and coverage.overall.trade_fraction is None
    assert coverage.per_coin == {}


def test_a_replayed_trade_counts_once() -> None:
    ranking = MakerRanking()
    trade = made(A, "64000.0", "0.5")
    assert ranking.add(trade) is True
    assert ranking.add(trade) is False  # a resubscription replays the recent trades
    assert ranking.volume() == Decimal("32000.0") and ranking.ignored == 1
    assert ranking.add(made(A, "64000.0", "0.5", coin="ETH", tid=trade.tid)) is True  # tids are per coin


def test_volume_leaves_the_window_exactly_and_its_maker_with_it() -> None:
    ranking = MakerRanking(window_ms=10 * MINUTE, bucket_ms=MINUTE)
    ranking.add(made(A, "0.1", "3.0", time=T0))
    ranking.add(made(B, "0.7", "1.0", time=T0 + MINUTE))
    ranking.add(made(A, "0.2", "1.0", time=T0 + 9 * MINUTE))
    assert ranking.top(2) == [MakerVolume(B, Decimal("0.7")), MakerVolume(A, Decimal("0.5"))]

    ranking.advance(T0 + 10 * MINUTE)  # the first minute's bucket leaves
    assert ranking.top(2) == [MakerVolume(B, Decimal("0.7")), MakerVolume(A, Decimal("0.2"))]
    ranking.advance(T0 + 11 * MINUTE)
    assert ranking.top(2) == [MakerVolume(A, Decimal("0.2"))] and ranking.maker_count == 1
    ranking.advance(T0 + 30 * MINUTE)
    assert ranking.maker_count == 0 and ranking.volume() == 0 and ranking.coins() == []
    assert ranking.coverage([A]).overall.fraction is None


def test_a_trade_older_than_the_window_is_ignored_but_a_late_one_inside_it_counts() -> None:
    ranking = MakerRanking(window_ms=10 * MINUTE, bucket_ms=MINUTE)
    ranking.add(made(A, "1.0", "1.0", time=T0 + 20 * MINUTE))
    assert ranking.add(made(B, "1.0", "1.0", time=T0 + 5 * MINUTE)) is False
    assert ranking.add(made(B, "1.0", "2.0", time=T0 + 15 * MINUTE)) is True  # late, out of order, still inside
    assert ranking.top(1) == [MakerVolume(B, Decimal("2.0"))] and ranking.ignored == 1


def test_a_trade_of_no_notional_ranks_nobody() -> None:
    ranking = MakerRanking()
    assert ranking.add(made(A, "1.0", "0.0")) is False
    assert ranking.maker_count == 0


@pytest.mark.parametrize(("window_ms", "bucket_ms"), [(MINUTE, 0), (MINUTE, 2 * MINUTE), (MINUTE, -1)])
def test_a_window_shorter_than_a_bucket_is_refused(window_ms: int, bucket_ms: int) -> None:
    with pytest.raises(ValueError, match="bucket_ms"):
        MakerRanking(window_ms=window_ms, bucket_ms=bucket_ms)


_trade_specs = st.lists(
    st.tuples(
        st.sampled_from((A, B, C)),
        st.sampled_from(("BTC", "ETH")),
        st.integers(0, 40 * MINUTE),
        st.decimals(min_value=Decimal("0.001"), max_value=Decimal("99999"), places=3),
    ),
    max_size=60,
)


@given(_trade_specs)
def test_totals_equal_a_recount_of_the_trades_still_in_the_window(specs: list[tuple[str, str, int, Decimal]]) -> None:
    """Whatever the order and times, the rolling totals are what counting the window's trades afresh gives."""
    window, bucket = 10 * MINUTE, MINUTE
    ranking = MakerRanking(window_ms=window, bucket_ms=bucket)
    newest = -1
    counted: list[tuple[str, str, int, Decimal]] = []
    for maker, coin, offset, px in specs:
        newest = max(newest, offset // bucket)
        if ranking.add(made(maker, str(px), "1.5", coin=coin, time=T0 + offset)):
            counted.append((maker, coin, offset, px))
    oldest_kept = (T0 // bucket + newest) - window // bucket + 1
    kept = [(m, c, px * Decimal("1.5")) for m, c, offset, px in counted if (T0 + offset) // bucket >= oldest_kept]
    expected: dict[str, Decimal] = {}
    for maker, _, notional in kept:
        expected[maker] = expected.get(maker, Decimal(0)) + notional
    assert {m.address: m.volume_usd for m in ranking.top(10)} == expected
    for coin in ("BTC", "ETH"):
        in_coin = [(m, n) for m, c, n in kept if c == coin]
        share = ranking.coverage([A]).per_coin.get(coin)
        if not in_coin:
            assert share is None
            continue
        assert share == Share(
            sum((n for m, n in in_coin if m == A), Decimal(0)),
            sum((n for _, n in in_coin), Decimal(0)),
            sum(1 for m, _ in in_coin if m == A),
            len(in_coin),
        )
