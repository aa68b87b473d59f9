"""Deterministic generators of realistic Hyperliquid exchange data, together with the ground truth.

Everything here is pure (no I/O) and driven by ``random.Random(seed)``, so a test can build a scenario,
serve it through :mod:`producer.simulation.fake_exchange`, run the producer against it and compare what the producer
emitted with :attr:`Scenario.liquidations` (the tests derive what a partial watchlist sees from the fills).

Shapes, key order and value formats copy answers recorded from mainnet:
prices and sizes are decimal *strings* ("64142.0", "0.00052", "116.86", "28.33"), tids are ~1e14..1e15 integers,
hashes are 0x + 64 hex, addresses lowercase 0x + 40 hex. Ground-truth sums use :class:`decimal.Decimal` only,
so a producer that sums floats is caught by exact comparisons.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

__all__ = [
    "ADL_DIR",
    "DEMO_BUSY",
    "DEMO_MAKERS",
    "DEMO_WATCHLIST",
    "HLP",
    "HLP_LIQUIDATOR",
    "LIQUIDATOR_2",
    "LIQUIDATOR_3",
    "LIQUIDATOR_4",
    "LIQUIDATOR_VAULT",
    "LIQUIDATOR_VAULTS",
    "ZERO_HASH",
    "CoinSpec",
    "ExpectedLiquidation",
    "Scenario",
    "ScenarioBuilder",
    "coin_spec",
    "demo_scenario",
    "fmt_decimal",
]

Fill = dict[str, Any]
"""One fill exactly as ``userFillsByTime`` answers it (JSON-ready dict)."""

Trade = dict[str, Any]
"""One ``recentTrades`` item (JSON-ready dict)."""

# Protocol vaults (real mainnet addresses).
HLP = "0xdfc24b077bc1425ad1dea75bcb6f8158e10df303"
HLP_LIQUIDATOR = "0x2e3d94f0562703b25c83308a05046ddaf9a8dd14"
LIQUIDATOR_2 = "0xb0a55f13d22f66e6d495ac98113841b2326e9540"
LIQUIDATOR_3 = "0x5e177e5e39c0f4e421f5865a6d8beed8d921cb70"
LIQUIDATOR_4 = "0x2ed5c4484ea3ff8b57d5f2fb152a40d9f2b68308"
LIQUIDATOR_VAULT = "0x63c621a33714ec48660e32f2374895c8026a3a00"
LIQUIDATOR_VAULTS: tuple[str, ...] = (HLP_LIQUIDATOR, LIQUIDATOR_2, LIQUIDATOR_3, LIQUIDATOR_4, LIQUIDATOR_VAULT)

ZERO_HASH = "0x" + "0" * 64
"""Hash carried by about a quarter of ordinary maker fills; never by a liquidation."""

ADL_DIR = "Auto-Deleveraging"

# Fixed (made-up, not real) addresses used by :func:`demo_scenario`, so tests and demos can name them.
DEMO_MAKERS: tuple[str, str, str] = (
    "0x80bcb7855595980d4a20f0c8454039762a6d6a28",
    "0xabcbc99f2f2d589e7921297cc0eef4b5fe98be82",
    "0x5a6db6b94eed918cc30fd13b29f1876cec7e587d",
)
DEMO_BUSY = "0xafcc4c18853d7d5be20f0430e57ac218bb3ad2ed"
"""Demo address with > 2000 fills: its only liquidation leg is the oldest fill, so finding it requires paging."""
DEMO_WATCHLIST: tuple[str, ...] = (*DEMO_MAKERS, DEMO_BUSY, HLP_LIQUIDATOR, LIQUIDATOR_2)


@dataclass(frozen=True)
class CoinSpec:
    """Price band and precision of a coin, so generated px/sz strings look like the exchange's."""

    px_lo: int  # lowest price, in ticks of 10**-px_dp
    px_hi: int  # highest price, in ticks
    px_dp: int  # decimals of the price tick
    sz_dp: int  # decimals of the size lot (the exchange's szDecimals)
    max_lots: int  # largest random size, in lots


COINS: dict[str, CoinSpec] = {
    "BTC": CoinSpec(63_800, 64_400, 0, 5, 60_000),
    "ETH": CoinSpec(24_800, 25_200, 1, 4, 40_000),
    "SOL": CoinSpec(670_000, 690_000, 4, 2, 5_000),
    "AVAX": CoinSpec(21_900, 22_200, 3, 2, 4_000),
    "HYPE": CoinSpec(38_000, 39_000, 3, 2, 3_000),
    "xyz:CRWV": CoinSpec(11_600, 11_800, 2, 2, 500),
}
_DEFAULT_COIN = CoinSpec(10_000, 20_000, 4, 1, 10_000)


def coin_spec(coin: str) -> CoinSpec:
    """The price band and precision generated for ``coin`` (a default band for coins not listed)."""
    return COINS.get(coin, _DEFAULT_COIN)


def fmt_decimal(value: Decimal) -> str:
    """Format like the exchange: no exponent, no trailing zeros, but always a decimal point ("64159.0")."""
    if value == 0:
        return "0.0"
    text = format(value.normalize(), "f")
    return text if "." in text else text + ".0"


@dataclass(frozen=True)
class ExpectedLiquidation:
    """Ground truth for one liquidation event: one per (tx_hash, coin, liquidated_user).

    ``size``/``value_usd`` sum ``sz`` and ``px * sz`` over the distinct trades (``tids``) of the event, so a
    consumer that counts the maker leg and the liquidated user's leg of one trade twice gets a different number.
    """

    tx_hash: str
    coin: str
    liquidated_user: str
    side: str  # "long" | "short": the side of the position that was liquidated
    method: str  # "market" | "backstop"
    size: Decimal
    value_usd: Decimal
    tids: frozenset[int]
    timestamp: int  # block time in ms, shared by every fill of the hash
    mark_price: str

    @property
    def key(self) -> tuple[str, str, str]:
        """Identity of the event, as a deduplicating consumer should key it."""
        return (self.tx_hash, self.coin, self.liquidated_user)


@dataclass
class Scenario:
    """A built data set: what the fake API serves plus the truth a correct consumer must derive from it."""

    fills: dict[str, list[Fill]]  # address -> fills in API shape, ascending time
    trades: dict[str, list[Trade]]  # coin -> recentTrades items, newest first
    liquidations: list[ExpectedLiquidation]
    adl_fill_count: int = 0
    labels: dict[str, str] = field(default_factory=dict)  # address -> human label (demo output, debugging)

    @property
    def fill_count(self) -> int:
        """Total number of fills over all addresses (both legs of a trade count)."""
        return sum(len(fills) for fills in self.fills.values())

    def by_key(self) -> dict[tuple[str, str, str], ExpectedLiquidation]:
        """Truth indexed by :attr:`ExpectedLiquidation.key`, for order-independent comparisons."""
        return {liq.key: liq for liq in self.liquidations}


@dataclass
class _Accumulator:
    """Mutable truth of one event while the builder is still adding trades to it (same key, same hash)."""

    tx_hash: str
    coin: str
    user: str
    side: str
    method: str
    timestamp: int
    mark_price: str
    size: Decimal = Decimal(0)
    value: Decimal = Decimal(0)
    tids: set[int] = field(default_factory=set)

    def freeze(self) -> ExpectedLiquidation:
        return ExpectedLiquidation(
            tx_hash=self.tx_hash,
            coin=self.coin,
            liquidated_user=self.user,
            side=self.side,
            method=self.method,
            size=self.size,
            value_usd=self.value,
            tids=frozenset(self.tids),
            timestamp=self.timestamp,
            mark_price=self.mark_price,
        )


def _check_side(side: str) -> None:
    if side not in ("long", "short"):
        raise ValueError(f"side must be 'long' or 'short', not {side!r}")


class ScenarioBuilder:
    """Fluent, deterministic builder of fills, public trades and the liquidation ground truth.

    The clock only moves forward: each event without an explicit ``time_ms`` happens a little after the
    previous one, and an explicit ``time_ms`` later than the clock moves the clock. Every fill of one hash shares
    the hash's block time, so reusing ``tx_hash`` across calls (several users / coins in one transaction) reuses
    its time too. Public ``recentTrades`` items are also recorded for liquidation trades, as on the exchange
    (set :attr:`record_public_trades` to False to keep the trade feed to explicit :meth:`trade` calls).
    """

    def __init__(self, seed: int = 1, start_ms: int = 1_760_130_964_831) -> None:
        self.rng = random.Random(seed)
        self.now_ms = start_ms
        self.record_public_trades = True
        self._fills: dict[str, list[Fill]] = {}
        self._trades: dict[str, list[Trade]] = {}
        self._truth: dict[tuple[str, str, str], _Accumulator] = {}
        self._adl_fill_count = 0
        self._labels: dict[str, str] = {}
        self._tids: set[int] = set()
        self._hash_time: dict[str, int] = {}
        self._positions: dict[tuple[str, str], Decimal] = {}
        self._resting_oids: dict[tuple[str, str, str], int] = {}

    # ----------------------------------------------------------------- random primitives
    def address(self) -> str:
        """A fresh random address (lowercase, 0x + 40 hex)."""
        return f"0x{self.rng.getrandbits(160):040x}"

    def new_hash(self) -> str:
        """A fresh random, non-zero transaction hash (0x + 64 hex)."""
        return f"0x{self.rng.getrandbits(256) | 1:064x}"

    def label(self, address: str, text: str) -> ScenarioBuilder:
        """Name an address in :attr:`Scenario.labels` (only for humans reading demo output)."""
        self._labels[address.lower()] = text
        return self

    def _tid(self) -> int:
        while True:
            tid = self.rng.randint(100_000_000_000_000, 1_099_999_999_999_999)
            if tid not in self._tids:
                self._tids.add(tid)
                return tid

    def _oid(self) -> int:
        return self.rng.randint(190_000_000_000, 520_000_000_000)

    def _spec(self, coin: str) -> CoinSpec:
        return coin_spec(coin)

    def _price(self, coin: str) -> Decimal:
        spec = self._spec(coin)
        return Decimal(self.rng.randint(spec.px_lo, spec.px_hi)).scaleb(-spec.px_dp)

    def _size(self, coin: str, max_lots: int | None = None) -> Decimal:
        spec = self._spec(coin)
        return Decimal(self.rng.randint(1, max_lots or spec.max_lots)).scaleb(-spec.sz_dp)

    def _tick(self, coin: str) -> Decimal:
        return Decimal(1).scaleb(-self._spec(coin).px_dp)

    def _time(self, time_ms: int | None, tx_hash: str | None = None) -> int:
        """Block time of the next event: explicit, else the hash's known time, else a bit after the clock."""
        if time_ms is None and tx_hash is not None and tx_hash in self._hash_time:
            return self._hash_time[tx_hash]
        if time_ms is None:
            time_ms = self.now_ms + self.rng.randint(40, 2_500)
        self.now_ms = max(self.now_ms, time_ms)
        if tx_hash is not None:
            self._hash_time.setdefault(tx_hash, time_ms)
        return time_ms

    def _position(self, address: str, coin: str) -> Decimal:
        """Current signed position; unknown makers start with a random one so ``dir`` values vary."""
        key = (address, coin)
        if key not in self._positions:
            lots = self.rng.randint(-400, 400) * self.rng.choice((1, 10, 100))
            self._positions[key] = Decimal(lots).scaleb(-self._spec(coin).sz_dp)
        return self._positions[key]

    def _trade_dir(self, address: str, coin: str, side_letter: str, sz: Decimal) -> tuple[str, Decimal, bool]:
        """``dir`` for a trade of ``address`` (plus its start position and whether it reduces a position)."""
        start = self._position(address, coin)
        if side_letter == "B":
            after = start + sz
            if start >= 0:
                direction = "Open Long"
            elif after <= 0:
                direction = "Close Short"
            else:
                direction = "Short > Long"
        else:
            after = start - sz
            if start <= 0:
                direction = "Open Short"
            elif after >= 0:
                direction = "Close Long"
            else:
                direction = "Long > Short"
        self._positions[(address, coin)] = after
        return direction, start, direction.startswith("Close") or ">" in direction

    def _pnl(self, notional: Decimal, *, loss: bool | None = None) -> str:
        """A plausible closedPnl (6 decimals, like the exchange)."""
        amount = (notional * Decimal(self.rng.randint(1, 300)) / Decimal(10_000)).quantize(Decimal("0.000001"))
        if loss is None:
            loss = self.rng.random() < 0.5
        return fmt_decimal(-amount if loss else amount)

    def _fee(self, notional: Decimal, *, taker: bool) -> str:
        if taker:
            return fmt_decimal((notional * Decimal("0.00045")).quantize(Decimal("0.000001")))
        if self.rng.random() < 0.3:
            return fmt_decimal(-(notional * Decimal("0.00001")).quantize(Decimal("0.000001")))
        return fmt_decimal((notional * Decimal("0.00015")).quantize(Decimal("0.000001")))

    @staticmethod
    def _mark(mark_px: str | float | None, default: Decimal) -> tuple[str | float, str]:
        """(value put in the JSON ``markPx``, string kept in the truth). A float stays a JSON number."""
        if mark_px is None:
            return fmt_decimal(default), fmt_decimal(default)
        if isinstance(mark_px, float):
            return mark_px, repr(mark_px)
        return mark_px, mark_px

    # ----------------------------------------------------------------- recording
    def _add_fill(self, address: str, fill: Fill) -> None:
        self._fills.setdefault(address, []).append(fill)

    def _add_trade(self, coin: str, trade: Trade) -> None:
        self._trades.setdefault(coin, []).append(trade)

    def _record_truth(
        self, *, tx_hash: str, coin: str, user: str, side: str, method: str, time_ms: int, mark: str
    ) -> _Accumulator:
        key = (tx_hash, coin, user)
        acc = self._truth.get(key)
        if acc is None:
            acc = self._truth[key] = _Accumulator(tx_hash, coin, user, side, method, time_ms, mark)
        elif (acc.side, acc.method) != (side, method):
            raise ValueError(f"{key} already recorded as {acc.side}/{acc.method}, not {side}/{method}")
        return acc

    @staticmethod
    def _fill(
        *,
        coin: str,
        px: Decimal,
        sz: Decimal,
        side: str,
        time_ms: int,
        start: Decimal,
        direction: str,
        closed_pnl: str,
        tx_hash: str,
        oid: int,
        crossed: bool,
        fee: str,
        tid: int,
        liquidation: dict[str, Any] | None = None,
        cloid: str | None = None,
        builder_fee: str | None = None,
    ) -> Fill:
        """One fill dict in the exchange's key order (optional keys only when present, like the API)."""
        fill: Fill = {
            "coin": coin,
            "px": fmt_decimal(px),
            "sz": fmt_decimal(sz),
            "side": side,
            "time": time_ms,
            "startPosition": fmt_decimal(start),
            "dir": direction,
            "closedPnl": closed_pnl,
            "hash": tx_hash,
            "oid": oid,
            "crossed": crossed,
            "fee": fee,
            "tid": tid,
        }
        if cloid is not None:
            fill["cloid"] = cloid
        if liquidation is not None:
            fill["liquidation"] = dict(liquidation)
        fill["feeToken"] = "USDC"
        if builder_fee is not None:
            fill["builderFee"] = builder_fee
        fill["twapId"] = None
        return fill

    # ----------------------------------------------------------------- events
    def _add_own_leg(
        self,
        user: str,
        *,
        coin: str,
        px: Decimal,
        sz: Decimal,
        side: str,
        time_ms: int,
        start: Decimal,
        tx_hash: str,
        oid: int,
        fee: str,
        tid: int,
        liquidation: dict[str, Any],
    ) -> None:
        """The liquidated user's own fill of one trade: it closes the position (sells a long, buys a short)."""
        self._add_fill(
            user,
            self._fill(
                coin=coin,
                px=px,
                sz=sz,
                side="A" if side == "long" else "B",
                time_ms=time_ms,
                start=start,
                direction="Close Long" if side == "long" else "Close Short",
                closed_pnl=self._pnl(px * sz, loss=True),
                tx_hash=tx_hash,
                oid=oid,
                crossed=True,
                fee=fee,
                tid=tid,
                liquidation=liquidation,
            ),
        )

    def market_liquidation(
        self,
        *,
        coin: str = "BTC",
        side: str = "long",
        makers: list[str],
        sizes: list[str] | None = None,
        px: str | None = None,
        prices: list[str] | None = None,
        user: str | None = None,
        tx_hash: str | None = None,
        time_ms: int | None = None,
        mark_px: str | float | None = None,
        max_lots: int | None = None,
    ) -> ExpectedLiquidation:
        """A liquidation sent to the book and absorbed by ``makers`` (one trade, one tid, per maker).

        Writes the liquidated user's leg (crossed, "Close Long"/"Close Short", side A for a long) and each
        maker's leg (opposite side, not crossed); both legs carry the ``liquidation`` object. Without ``px`` or
        ``prices`` the trades walk down (long) or up (short) the book from a random price; ``px`` alone puts
        every trade at that price. Without ``sizes``, each leg is up to ``max_lots`` lots (the coin's largest random
        size by default). Returns the truth for (hash, coin, user) so far; calling again with the same hash, coin
        and user adds trades to the same event.
        """
        _check_side(side)
        if not makers:
            raise ValueError("a market liquidation needs at least one maker")
        makers = [maker.lower() for maker in makers]
        if sizes is not None and len(sizes) != len(makers):
            raise ValueError("sizes must have one entry per maker")
        if prices is not None and len(prices) != len(makers):
            raise ValueError("prices must have one entry per maker")
        user = (user or self.address()).lower()
        tx_hash = tx_hash or self.new_hash()
        when = self._time(time_ms, tx_hash)

        sz_list = [Decimal(s) for s in sizes] if sizes else [self._size(coin, max_lots) for _ in makers]
        if prices is not None:
            px_list = [Decimal(p) for p in prices]
        elif px is not None:
            px_list = [Decimal(px)] * len(makers)
        else:
            step = -self._tick(coin) if side == "long" else self._tick(coin)
            price = self._price(coin)
            px_list = []
            for _ in makers:
                px_list.append(price)
                price += step * self.rng.randint(0, 3)
        mark_json, mark_str = self._mark(mark_px, px_list[0] - self._tick(coin) * self.rng.randint(-3, 3))
        liquidation = {"liquidatedUser": user, "markPx": mark_json, "method": "market"}
        acc = self._record_truth(
            tx_hash=tx_hash, coin=coin, user=user, side=side, method="market", time_ms=when, mark=mark_str
        )

        user_letter, maker_letter = ("A", "B") if side == "long" else ("B", "A")
        sign = Decimal(1) if side == "long" else Decimal(-1)
        remaining = sum(sz_list, Decimal(0))
        user_oid = self._oid()
        for maker, price, sz in zip(makers, px_list, sz_list, strict=True):
            tid = self._tid()
            notional = price * sz
            self._add_own_leg(
                user,
                coin=coin,
                px=price,
                sz=sz,
                side=side,
                time_ms=when,
                start=sign * remaining,
                tx_hash=tx_hash,
                oid=user_oid,
                fee=self._fee(notional, taker=True),
                tid=tid,
                liquidation=liquidation,
            )
            remaining -= sz
            direction, start, closing = self._trade_dir(maker, coin, maker_letter, sz)
            maker_oid = self._resting_oids.setdefault((maker, coin, tx_hash), self._oid())
            self._add_fill(
                maker,
                self._fill(
                    coin=coin,
                    px=price,
                    sz=sz,
                    side=maker_letter,
                    time_ms=when,
                    start=start,
                    direction=direction,
                    closed_pnl=self._pnl(notional) if closing else "0.0",
                    tx_hash=tx_hash,
                    oid=maker_oid,
                    crossed=False,
                    fee=self._fee(notional, taker=False),
                    tid=tid,
                    liquidation=liquidation,
                ),
            )
            self._traded(acc, coin, side, user, maker, user_letter, price, sz, when, tx_hash, tid)
        self._positions[(user, coin)] = Decimal(0)
        return acc.freeze()

    def _traded(
        self,
        acc: _Accumulator,
        coin: str,
        side: str,
        user: str,
        counterparty: str,
        user_letter: str,
        price: Decimal,
        sz: Decimal,
        when: int,
        tx_hash: str,
        tid: int,
    ) -> None:
        """The trade a liquidated user's leg and its counterparty's share: in the public trades (when recorded)
        and in the truth's sums."""
        if self.record_public_trades:
            buyer, seller = (counterparty, user) if side == "long" else (user, counterparty)
            self._add_trade(coin, self._trade_item(coin, user_letter, price, sz, when, tx_hash, tid, buyer, seller))
        acc.size += sz
        acc.value += price * sz
        acc.tids.add(tid)

    def backstop_liquidation(
        self,
        *,
        coin: str = "SOL",
        side: str = "long",
        vault: str = HLP_LIQUIDATOR,
        size: str | None = None,
        px: str | None = None,
        user: str | None = None,
        tx_hash: str | None = None,
        time_ms: int | None = None,
        mark_px: str | float | None = None,
        isolated: bool = False,
    ) -> ExpectedLiquidation:
        """A liquidator vault takes the position over (one trade, one tid).

        The vault's fill says "Liquidated Cross Long" (or Isolated / Short) and is side B when it takes over a
        long; the liquidated user's own leg (side A for a long) shares the tid, hash and time.
        """
        _check_side(side)
        vault = vault.lower()
        user = (user or self.address()).lower()
        tx_hash = tx_hash or self.new_hash()
        when = self._time(time_ms, tx_hash)
        sz = Decimal(size) if size is not None else self._size(coin)
        price = Decimal(px) if px is not None else self._price(coin)
        mark_default = price + (self._tick(coin) * self.rng.randint(5, 80) * (1 if side == "long" else -1))
        mark_json, mark_str = self._mark(mark_px, mark_default)
        liquidation = {"liquidatedUser": user, "markPx": mark_json, "method": "backstop"}
        acc = self._record_truth(
            tx_hash=tx_hash, coin=coin, user=user, side=side, method="backstop", time_ms=when, mark=mark_str
        )
        tid = self._tid()
        user_letter, vault_letter = ("A", "B") if side == "long" else ("B", "A")
        sign = Decimal(1) if side == "long" else Decimal(-1)
        self._add_own_leg(
            user,
            coin=coin,
            px=price,
            sz=sz,
            side=side,
            time_ms=when,
            start=sign * sz,
            tx_hash=tx_hash,
            oid=self._oid(),
            fee="0.0",
            tid=tid,
            liquidation=liquidation,
        )
        self._positions[(user, coin)] = Decimal(0)
        vault_start = self._positions.get((vault, coin), Decimal(0))
        self._positions[(vault, coin)] = vault_start + sign * sz
        margin = "Isolated" if isolated else "Cross"
        self._add_fill(
            vault,
            self._fill(
                coin=coin,
                px=price,
                sz=sz,
                side=vault_letter,
                time_ms=when,
                start=vault_start,
                direction=f"Liquidated {margin} {side.capitalize()}",
                closed_pnl="0.0",
                tx_hash=tx_hash,
                oid=self._oid(),
                crossed=True,
                fee="0.0",
                tid=tid,
                liquidation=liquidation,
            ),
        )
        self._traded(acc, coin, side, user, vault, user_letter, price, sz, when, tx_hash, tid)
        return acc.freeze()

    def adl(
        self,
        *,
        coin: str,
        user: str,
        size: str,
        px: str,
        liquidated_user: str = HLP_LIQUIDATOR,
        side: str = "B",
        time_ms: int | None = None,
        tx_hash: str | None = None,
        mark_px: str | float | None = None,
    ) -> None:
        """An auto-deleveraging fill on ``user`` only: it carries a ``liquidation`` object but is NOT a liquidation.

        ``side`` is the ADL'd user's letter: "B" closes a short (like the real sample), "A" closes a long.
        Counted in :attr:`Scenario.adl_fill_count`, never in the truth.
        """
        if side not in ("A", "B"):
            raise ValueError("side must be 'A' or 'B'")
        user = user.lower()
        tx_hash = tx_hash or self.new_hash()
        when = self._time(time_ms, tx_hash)
        sz, price = Decimal(size), Decimal(px)
        below = price - self._tick(coin) * self.rng.randint(1, 60)
        # A coarse tick on a cheap coin can take "a few ticks below" under zero: no mark price is negative.
        mark_json, _ = self._mark(mark_px, below if below > 0 else price)
        start = -sz if side == "B" else sz
        self._add_fill(
            user,
            self._fill(
                coin=coin,
                px=price,
                sz=sz,
                side=side,
                time_ms=when,
                start=start,
                direction=ADL_DIR,
                closed_pnl=self._pnl(price * sz, loss=False),
                tx_hash=tx_hash,
                oid=self._oid(),
                crossed=True,
                fee="0.0",
                tid=self._tid(),
                liquidation={"liquidatedUser": liquidated_user.lower(), "markPx": mark_json, "method": "backstop"},
            ),
        )
        self._positions[(user, coin)] = Decimal(0)
        self._adl_fill_count += 1

    def ordinary_fills(
        self,
        address: str,
        n: int,
        *,
        coin: str = "BTC",
        zero_hash_ratio: float = 0.28,
        time_ms: int | None = None,
    ) -> list[Fill]:
        """``n`` plain fills (no liquidation object) on ``address``: noise a consumer must ignore.

        About ``zero_hash_ratio`` of them are maker fills with the all-zero hash; ~37% carry a ``cloid``, some
        taker fills a ``builderFee``; all have ``twapId: null`` (as observed on mainnet). About a fifth share the
        previous fill's time (same block), so page boundaries can fall inside a run of equal times.
        Starts at ``time_ms`` when given, else just after the clock; the clock ends at the last fill.
        """
        address = address.lower()
        when = self._time(time_ms)
        made: list[Fill] = []
        for i in range(n):
            if i and self.rng.random() >= 0.2:
                when += self.rng.randint(20, 900)
            zero = self.rng.random() < zero_hash_ratio
            crossed = False if zero else self.rng.random() < 0.5
            side_letter = self.rng.choice(("A", "B"))
            price = self._price(coin)
            sz = self._size(coin, max(1, self._spec(coin).max_lots // 20))
            direction, start, closing = self._trade_dir(address, coin, side_letter, sz)
            fee = self._fee(price * sz, taker=crossed)
            builder_fee = None
            if crossed and self.rng.random() < 0.15:
                builder_fee = fmt_decimal((price * sz * Decimal("0.0001")).quantize(Decimal("0.000001")))
            fill = self._fill(
                coin=coin,
                px=price,
                sz=sz,
                side=side_letter,
                time_ms=when,
                start=start,
                direction=direction,
                closed_pnl=self._pnl(price * sz) if closing else "0.0",
                tx_hash=ZERO_HASH if zero else self.new_hash(),
                oid=self._oid(),
                crossed=crossed,
                fee=fee,
                tid=self._tid(),
                cloid=f"0x{self.rng.getrandbits(128):032x}" if self.rng.random() < 0.37 else None,
                builder_fee=builder_fee,
            )
            self._add_fill(address, fill)
            made.append(fill)
        self.now_ms = max(self.now_ms, when)
        return made

    @staticmethod
    def _trade_item(
        coin: str, side: str, px: Decimal, sz: Decimal, when: int, tx_hash: str, tid: int, buyer: str, seller: str
    ) -> Trade:
        return {
            "coin": coin,
            "side": side,
            "px": fmt_decimal(px),
            "sz": fmt_decimal(sz),
            "time": when,
            "hash": tx_hash,
            "tid": tid,
            "users": [buyer, seller],
        }

    def trade(
        self,
        coin: str,
        *,
        buyer: str,
        seller: str,
        px: str,
        sz: str,
        tx_hash: str | None = None,
        time_ms: int | None = None,
        side: str = "B",
    ) -> Trade:
        """A public ``recentTrades`` entry (``users`` is [buyer, seller]; ``side`` is the taker's letter)."""
        tx_hash = tx_hash or self.new_hash()
        when = self._time(time_ms, tx_hash if tx_hash != ZERO_HASH else None)
        item = self._trade_item(
            coin, side, Decimal(px), Decimal(sz), when, tx_hash, self._tid(), buyer.lower(), seller.lower()
        )
        self._add_trade(coin, item)
        return item

    def book_trade(
        self,
        coin: str,
        *,
        maker: str,
        taker: str,
        taker_side: str,
        px: Decimal | None = None,
        sz: Decimal | None = None,
        time_ms: int | None = None,
        zero_hash: bool = False,
    ) -> Trade:
        """A public trade of a taker against a resting maker, and the maker's own (uncrossed) fill of it.

        Why the maker's fill too: a watchlist of makers polls their fills, and those are mostly such ordinary
        trades, with the liquidation legs among them. ``taker_side`` is the aggressor's letter (the trade's
        ``side``); the taker's own fill is not written (no watchlist follows takers). Without ``px`` or ``sz``,
        a random price in the coin's band and an ordinary size (as :meth:`ordinary_trades`).
        """
        if taker_side not in ("A", "B"):
            raise ValueError("taker_side must be 'A' or 'B'")
        px = px if px is not None else self._price(coin)
        sz = sz if sz is not None else self._size(coin, max(1, self._spec(coin).max_lots // 20))
        maker, taker = maker.lower(), taker.lower()
        tx_hash = ZERO_HASH if zero_hash else self.new_hash()
        when = self._time(time_ms, None if zero_hash else tx_hash)
        tid = self._tid()
        maker_letter = "A" if taker_side == "B" else "B"
        buyer, seller = (taker, maker) if taker_side == "B" else (maker, taker)
        item = self._trade_item(coin, taker_side, px, sz, when, tx_hash, tid, buyer, seller)
        self._add_trade(coin, item)
        direction, start, closing = self._trade_dir(maker, coin, maker_letter, sz)
        self._add_fill(
            maker,
            self._fill(
                coin=coin,
                px=px,
                sz=sz,
                side=maker_letter,
                time_ms=when,
                start=start,
                direction=direction,
                closed_pnl=self._pnl(px * sz) if closing else "0.0",
                tx_hash=tx_hash,
                oid=self._oid(),
                crossed=False,
                fee=self._fee(px * sz, taker=False),
                tid=tid,
            ),
        )
        return item

    def ordinary_trades(self, coin: str, n: int, *, zero_hash_ratio: float = 0.28) -> list[Trade]:
        """``n`` public trades between random users (about ``zero_hash_ratio`` with the all-zero hash)."""
        made = []
        for _ in range(n):
            zero = self.rng.random() < zero_hash_ratio
            made.append(
                self.trade(
                    coin,
                    buyer=self.address(),
                    seller=self.address(),
                    px=fmt_decimal(self._price(coin)),
                    sz=fmt_decimal(self._size(coin, max(1, self._spec(coin).max_lots // 20))),
                    tx_hash=ZERO_HASH if zero else None,
                    side=self.rng.choice(("A", "B")),
                )
            )
        return made

    def build(self) -> Scenario:
        """Freeze into a :class:`Scenario`: fills ascending by (time, tid), trades newest first."""
        fills = {
            address: sorted((dict(f) for f in items), key=lambda f: (f["time"], f["tid"]))
            for address, items in self._fills.items()
        }
        trades = {
            coin: sorted((dict(t) for t in items), key=lambda t: (t["time"], t["tid"]), reverse=True)
            for coin, items in self._trades.items()
        }
        return Scenario(
            fills=fills,
            trades=trades,
            liquidations=[acc.freeze() for acc in self._truth.values()],
            adl_fill_count=self._adl_fill_count,
            labels=dict(self._labels),
        )


def demo_scenario(seed: int = 1, start_ms: int | None = None) -> Scenario:
    """A realistic mix exercising every rule a consumer must get right (used by tests and the demo server).

    - 3 watched makers (:data:`DEMO_MAKERS`) absorbing several market liquidations, some shared with unwatched
      makers (partial visibility), plus one liquidation no watched address sees;
    - one hash with 2 liquidated users over 2 coins (one maker order absorbing both users: same oid);
    - 2 backstop liquidations on liquidator vaults (one with a JSON-number markPx), 3 ADL fills;
    - zero-hash ordinary fills on every maker, and :data:`DEMO_BUSY` with 4,500 fills burying its liquidation
      leg beyond the first 2,000-fill page;
    - recentTrades for BTC/ETH/SOL including a liquidator vault as buyer and as seller.
    """
    b = ScenarioBuilder(seed) if start_ms is None else ScenarioBuilder(seed, start_ms)
    m1, m2, m3 = DEMO_MAKERS
    for i, maker in enumerate(DEMO_MAKERS, 1):
        b.label(maker, f"maker-{i}")
    b.label(DEMO_BUSY, "busy-4500-fills").label(HLP_LIQUIDATOR, "HLP Liquidator").label(LIQUIDATOR_2, "Liquidator 2")

    b.market_liquidation(coin="BTC", side="long", makers=[DEMO_BUSY, b.address()])
    b.ordinary_fills(DEMO_BUSY, 4_500, coin="BTC")
    for maker, coin in zip(DEMO_MAKERS, ("BTC", "ETH", "SOL"), strict=True):
        b.ordinary_fills(maker, 40, coin=coin)

    b.market_liquidation(coin="BTC", side="long", makers=[m1, b.address(), b.address()])
    b.market_liquidation(coin="ETH", side="short", makers=[m2, m3])
    b.market_liquidation(coin="SOL", side="long", makers=[m1], mark_px=float(b.rng.randint(670, 690)) / 10)
    b.market_liquidation(coin="xyz:CRWV", side="short", makers=[m3], sizes=["2.47"], px="116.86", mark_px="116.84")
    b.market_liquidation(coin="HYPE", side="long", makers=[b.address()])  # seen by no watched address

    shared = b.new_hash()
    u1, u2 = b.address(), b.address()
    b.label(u1, "shared-hash-user-1").label(u2, "shared-hash-user-2")
    b.market_liquidation(coin="BTC", side="long", user=u1, makers=[m1, m2], tx_hash=shared)
    b.market_liquidation(coin="BTC", side="long", user=u2, makers=[m1], tx_hash=shared)
    b.market_liquidation(coin="ETH", side="short", user=u2, makers=[m2, b.address()], tx_hash=shared)

    b.backstop_liquidation(coin="SOL", side="long", vault=HLP_LIQUIDATOR, size="28.33", px="67.5499", mark_px=68.2)
    b.backstop_liquidation(coin="ETH", side="short", vault=LIQUIDATOR_2)

    b.adl(coin="AVAX", user=m2, size="28.53", px="22.075", mark_px="22.025")
    b.adl(coin="BTC", user=m3, size="0.01234", px="64050.0", side="A")
    b.adl(coin="SOL", user=DEMO_BUSY, size="3.5", px="67.61", liquidated_user=LIQUIDATOR_2)

    for coin in ("BTC", "ETH", "SOL"):
        b.ordinary_trades(coin, 8)
    b.trade("BTC", buyer=HLP_LIQUIDATOR, seller=b.address(), px="64011.0", sz="0.0412", side="A")
    b.trade("ETH", buyer=b.address(), seller=LIQUIDATOR_2, px="2497.3", sz="1.2034", side="B")
    b.trade("SOL", buyer=b.address(), seller=b.address(), px="67.61", sz="12.5", tx_hash=ZERO_HASH, side="B")
    return b.build()
