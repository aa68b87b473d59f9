"""Who makes the market, and how much of it a watchlist covers: a rolling ranking of makers fed with public trades.

Why: a producer without a node or a hosted key sees a market liquidation only through the fills of the makers it
watches, and the makers absorb liquidations roughly in proportion to the volume they make. The public ``trades``
feed names both parties of every trade, so the share of maker volume the watched addresses make is an estimate of
the share of market liquidations (by count of legs and by USD) the producer can see, and the ranking says whom to
watch next.

The maker of a trade is its non-aggressor: ``side`` is the aggressor's letter and ``users`` is [buyer, seller], so
``side == "B"`` (the buyer crossed) makes the seller, ``users[1]``, the maker, and ``side == "A"`` the buyer.

Choices, all to keep the estimate exact and bounded:

- **A sliding window of time buckets**, not an exponential decay. Volume sits in buckets of ``bucket_ms`` keyed by
  the trade's own time; the window keeps the ``window_ms // bucket_ms`` newest buckets, so it spans between
  ``window_ms - bucket_ms`` and ``window_ms`` of history. Decay would need an inexact multiply of every total on
  every tick; whole buckets leave exactly, so the totals never drift over days of running.
- **Exact Decimal sums** of ``px * sz`` (the exchange's decimal strings). The result is a ratio estimate, so
  exactness matters less for the share than for the sums themselves: a subtraction that does not return a total
  to zero would leave ghost makers in the ranking. The share is handed out as a float, for metrics and logs.
- **Time is the trades' time**, never the wall clock: the module stays pure and replays deterministically. The
  newest trade time seen (or :meth:`MakerRanking.advance`) is "now"; a trade older than the window is ignored.
- **Each trade counts once**, by (coin, tid): a resubscription that replays recent trades adds nothing.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal, localcontext
from typing import TypeVar

from producer.exchange_types import Trade

__all__ = ["DEFAULT_BUCKET_MS", "DEFAULT_WINDOW_MS", "Coverage", "MakerRanking", "MakerVolume", "Share", "maker_of"]

DEFAULT_WINDOW_MS = 3_600_000
"""An hour: long enough that a maker's rank does not follow one burst, short enough to follow a change of guard."""
DEFAULT_BUCKET_MS = 60_000

_ZERO = Decimal(0)
K = TypeVar("K")
N = TypeVar("N", Decimal, int)
_PRECISION = 100
"""Decimal digits for the sums: a decodable px x sz has at most 72, so no sum or difference ever rounds."""


def maker_of(trade: Trade) -> str:
    """The resting side of ``trade``: the seller when the buyer aggressed (``side == "B"``), else the buyer."""
    buyer, seller = trade.users
    return (seller if trade.side == "B" else buyer).lower()


@dataclass(frozen=True)
class MakerVolume:
    """One maker's notional volume (USD, exact) in the window, overall or in one coin."""

    address: str
    volume_usd: Decimal


@dataclass(frozen=True)
class Share:
    """What the watched makers made over what every maker made, in USD (exact) and in trades.

    Two estimates, because a liquidation's legs are counted two ways: :attr:`fraction` (by USD) estimates the share
    of liquidated USD the watchlist sees, :attr:`trade_fraction` (by trades) the share of legs. They differ when the
    watched makers are big in the coins with big notionals (a ranking by USD favours BTC's makers).
    """

    watched_usd: Decimal
    total_usd: Decimal
    watched_trades: int = 0
    total_trades: int = 0

    @property
    def fraction(self) -> float | None:
        """The USD share in [0, 1]; None when the window holds no volume (nothing to estimate, not zero coverage)."""
        if self.total_usd == 0:
            return None
        return float(self.watched_usd / self.total_usd)

    @property
    def trade_fraction(self) -> float | None:
        """The share of trades in [0, 1]; None when the window holds none."""
        if self.total_trades == 0:
            return None
        return self.watched_trades / self.total_trades


@dataclass(frozen=True)
class Coverage:
    """The watched addresses' share of maker volume, overall and per coin (coins with volume in the window)."""

    overall: Share
    per_coin: dict[str, Share]


@dataclass
class _Bucket:
    volume: dict[tuple[str, str], Decimal] = field(default_factory=dict)
    """(maker, coin) -> notional made in this bucket."""
    counts: dict[tuple[str, str], int] = field(default_factory=dict)
    """(maker, coin) -> trades made in this bucket."""
    trades: set[tuple[str, int]] = field(default_factory=set)
    """(coin, tid) of the trades counted here, so a replayed trade counts once."""


class MakerRanking:
    """Rolling maker volume over the last ``window_ms`` of trades, per maker and per (maker, coin)."""

    def __init__(self, *, window_ms: int = DEFAULT_WINDOW_MS, bucket_ms: int = DEFAULT_BUCKET_MS) -> None:
        if bucket_ms <= 0 or window_ms < bucket_ms:
            raise ValueError(f"need 0 < bucket_ms <= window_ms, got bucket_ms={bucket_ms} window_ms={window_ms}")
        self.window_ms = window_ms
        self.bucket_ms = bucket_ms
        self._span = window_ms // bucket_ms
        self._buckets: dict[int, _Bucket] = {}
        self._newest: int | None = None
        self._seen: set[tuple[str, int]] = set()
        self._by_maker_coin: dict[tuple[str, str], Decimal] = {}
        self._by_maker: dict[str, Decimal] = {}
        self._by_coin: dict[str, Decimal] = {}
        self._count_by_maker_coin: dict[tuple[str, str], int] = {}
        self._count_by_coin: dict[str, int] = {}
        self.ignored = 0
        """Trades not counted: replays of counted ones, or older than the window."""

    # ------------------------------------------------------------------ feeding
    def add(self, trade: Trade) -> bool:
        """Count ``trade``'s notional for its maker; False (and counted in :attr:`ignored`) when it adds nothing:
        a replay, a trade older than the window, or one of no notional (it would rank a maker on nothing)."""
        index = trade.time // self.bucket_ms
        newest = self._move_to(index)
        key = (trade.coin, trade.tid)
        with localcontext() as ctx:
            ctx.prec = _PRECISION
            notional = Decimal(trade.px) * Decimal(trade.sz)
            if index <= newest - self._span or key in self._seen or not notional:
                self.ignored += 1
                return False
            bucket = self._buckets.setdefault(index, _Bucket())
            bucket.trades.add(key)
            self._seen.add(key)
            maker = maker_of(trade)
            cell = (maker, trade.coin)
            bucket.volume[cell] = bucket.volume.get(cell, _ZERO) + notional
            self._by_maker_coin[cell] = self._by_maker_coin.get(cell, _ZERO) + notional
            self._by_maker[maker] = self._by_maker.get(maker, _ZERO) + notional
            self._by_coin[trade.coin] = self._by_coin.get(trade.coin, _ZERO) + notional
        bucket.counts[cell] = bucket.counts.get(cell, 0) + 1
        self._count_by_maker_coin[cell] = self._count_by_maker_coin.get(cell, 0) + 1
        self._count_by_coin[trade.coin] = self._count_by_coin.get(trade.coin, 0) + 1
        return True

    def add_many(self, trades: Iterable[Trade]) -> int:
        """Count each of ``trades``; returns how many were counted."""
        return sum(self.add(trade) for trade in trades)

    def advance(self, now_ms: int) -> None:
        """Move "now" to ``now_ms`` without a trade (a quiet market still ages), expiring what left the window."""
        self._move_to(now_ms // self.bucket_ms)

    def _move_to(self, index: int) -> int:
        """Make bucket ``index`` the newest if it is newer, expiring what falls out; returns the newest index."""
        if self._newest is not None and index <= self._newest:
            return self._newest
        self._newest = index
        oldest_kept = index - self._span + 1
        for old in [i for i in self._buckets if i < oldest_kept]:
            self._expire(self._buckets.pop(old))
        return index

    def _expire(self, bucket: _Bucket) -> None:
        self._seen -= bucket.trades
        with localcontext() as ctx:
            ctx.prec = _PRECISION
            for (maker, coin), notional in bucket.volume.items():
                _subtract(self._by_maker_coin, (maker, coin), notional)
                _subtract(self._by_maker, maker, notional)
                _subtract(self._by_coin, coin, notional)
        for (maker, coin), count in bucket.counts.items():
            _subtract(self._count_by_maker_coin, (maker, coin), count)
            _subtract(self._count_by_coin, coin, count)

    # ------------------------------------------------------------------ reading
    @property
    def maker_count(self) -> int:
        """Distinct makers with volume in the window."""
        return len(self._by_maker)

    def volume(self, coin: str | None = None) -> Decimal:
        """All maker volume in the window, or in one coin."""
        if coin is None:
            with localcontext() as ctx:
                ctx.prec = _PRECISION
                return sum(self._by_coin.values(), _ZERO)
        return self._by_coin.get(coin, _ZERO)

    def coins(self) -> list[str]:
        """Coins with volume in the window, sorted."""
        return sorted(self._by_coin)

    def top(self, n: int, coin: str | None = None) -> list[MakerVolume]:
        """The ``n`` biggest makers (overall or in ``coin``), biggest first; ties by address, so stable."""
        items: Iterable[tuple[str, Decimal]]
        if coin is None:
            items = self._by_maker.items()
        else:
            items = ((maker, v) for (maker, c), v in self._by_maker_coin.items() if c == coin)
        ranked = sorted(items, key=lambda item: (-item[1], item[0]))
        return [MakerVolume(address, volume) for address, volume in ranked[: max(0, n)]]

    def coverage(self, watched: Iterable[str]) -> Coverage:
        """The share of maker volume ``watched`` made in the window, overall and per coin."""
        addresses = {address.lower() for address in watched}
        watched_usd: dict[str, Decimal] = {}
        watched_trades: dict[str, int] = {}
        with localcontext() as ctx:
            ctx.prec = _PRECISION
            for (maker, coin), notional in self._by_maker_coin.items():
                if maker in addresses:
                    watched_usd[coin] = watched_usd.get(coin, _ZERO) + notional
                    watched_trades[coin] = watched_trades.get(coin, 0) + self._count_by_maker_coin[(maker, coin)]
            watched_total = sum(watched_usd.values(), _ZERO)
        per_coin = {
            coin: Share(watched_usd.get(coin, _ZERO), total, watched_trades.get(coin, 0), self._count_by_coin[coin])
            for coin, total in self._by_coin.items()
        }
        overall = Share(watched_total, self.volume(), sum(watched_trades.values()), sum(self._count_by_coin.values()))
        return Coverage(overall=overall, per_coin=dict(sorted(per_coin.items())))


def _subtract(totals: dict[K, N], key: K, amount: N) -> None:
    """Take ``amount`` off ``totals[key]``, dropping the key when it reaches zero (exactly: Decimal or int sums)."""
    left = totals[key] - amount
    if left:
        totals[key] = left
    else:
        del totals[key]
