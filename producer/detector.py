"""Fills (or trades) in, liquidation events out. Pure: no I/O, no clock, so every rule is tested directly.

The rules come from what the exchange writes, not from guesses:

* A fill is part of a liquidation when it carries a ``liquidation`` object and is not an ADL fill. ADL fills carry
  the object too, but they deleverage the fill's owner; nobody was liquidated there: they become ADL events.
* An event is keyed by (tx hash, coin, liquidated user). Its amounts are summed over distinct trade ids, so seeing
  both legs of a trade, or the same fill twice, never counts it twice.
* The liquidated side: on the liquidated user's own fill, selling (``A``) closes a long; on a counterparty's fill,
  buying (``B``) takes over a long.

Decoding (:mod:`producer.exchange_types`) already refused fills whose amounts or times are unusable; an event that
still breaks :mod:`schemas.limits` (fills built in code) is dropped and logged rather than raised, since a raise
here fails the poll, and every poll after it, at the same fill.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Context, Decimal
from typing import Any

from producer.exchange_types import ADL_DIR, Fill, FillSide, LiquidationInfo, Trade
from schemas import AdlEvent, Event, LiquidationEvent, Method, Side, Source, event_key, event_problem

log = logging.getLogger(__name__)

_PRECISION = 100
"""Decimal digits for sums: a decodable px x sz has at most 72, so sums of any number of trades are exact."""

_SUMS = Context(prec=_PRECISION)
"""The context of every sum, passed explicitly: entering a local context per event cost more than its sums."""
_ZERO = Decimal(0)

_EXTRA_PRICE_PLACES = 6
"""A volume-weighted price rarely divides exactly; keep this many places beyond the finest fill price."""

KNOWN_METHODS: frozenset[str] = frozenset({"market", "backstop"})


def liquidated_side(fill_side: FillSide, *, own_fill: bool) -> Side:
    """The liquidated position's side, seen from one leg of the trade."""
    sold = fill_side == "A"
    return "long" if sold == own_fill else "short"


@dataclass
class _Accumulator:
    """Everything seen so far of one event; trades keyed by tid so a trade seen twice counts once."""

    adl: bool
    tx_hash: str
    coin: str
    user: str
    """The liquidated user (for ADL: the one whose liquidation caused it)."""
    owner: str
    """For ADL: the deleveraged user, whose fill it is."""
    side: Side
    method: Method
    timestamp: int
    mark_price: Decimal | None
    own_leg_seen: bool
    trades: dict[int, tuple[str, str]] = field(default_factory=dict)
    observed_via: set[str] = field(default_factory=set)

    def add(self, tid: int, px: str, sz: str, observer: str) -> None:
        self.trades.setdefault(tid, (px, sz))
        self.observed_via.add(observer)

    def build(self, source: Source, detected_at: int, via: tuple[str, ...] | None) -> Event:
        # The liquidated user's own fills carry every leg; so does a backstop's vault fill (the vault took the
        # whole position in one trade); an ADL event is one user's own fill. Makers' legs alone are a part.
        complete = self.adl or self.own_leg_seen or self.method == "backstop"
        add, multiply = _SUMS.add, _SUMS.multiply
        size = value = _ZERO
        trades = self.trades
        for px, sz in trades.values():
            amount = Decimal(sz)
            size = add(size, amount)
            value = add(value, multiply(Decimal(px), amount))
        tids: tuple[int, ...] = tuple(sorted(trades))
        if len(tids) == 1:  # most events: one trade, whose price is the event's
            price = Decimal(trades[tids[0]][0])
        else:
            price = _weighted_price(value, size, {px for px, _ in trades.values()})
        observed_via = via if via is not None else tuple(sorted(self.observed_via))
        common: dict[str, Any] = {
            "tx_hash": self.tx_hash,
            "coin": self.coin,
            "price": price,
            "size": size,
            "value_usd": value,
            "timestamp": self.timestamp,
            "mark_price": self.mark_price,
            "tids": tids,
            "fills": len(tids),
            "observed_via": observed_via,
            "source": source,
            "detected_at": detected_at,
            "complete": complete,
        }
        if self.adl:
            return AdlEvent(deleveraged_user=self.owner, position_side=self.side, liquidated_user=self.user, **common)
        return LiquidationEvent(liquidation_side=self.side, liquidated_user=self.user, method=self.method, **common)


def _weighted_price(value: Decimal, size: Decimal, prices: set[str]) -> Decimal:
    """The exact price when all trades share one (the usual case), else the VWAP at a documented precision."""
    if len(prices) == 1:
        return Decimal(next(iter(prices)))
    if not size:
        return Decimal(0)
    vwap = _SUMS.divide(value, size)
    places = max(-int(Decimal(px).as_tuple().exponent) for px in prices) + _EXTRA_PRICE_PLACES
    if -int(vwap.as_tuple().exponent) > places:
        vwap = vwap.quantize(Decimal(1).scaleb(-places, context=_SUMS), context=_SUMS)
    return vwap


def _method(raw: str) -> Method:
    return raw if raw in KNOWN_METHODS else "unknown"  # type: ignore[return-value]


def detect_from_fills(
    observed: Iterable[tuple[str, Fill]],
    *,
    source: Source = "fills",
    detected_at: int,
    own_legs_only: bool = False,
    via: tuple[str, ...] | None = None,
) -> list[Event]:
    """Turn ``(owner address, fill)`` pairs into events: liquidations, and ADL events for ADL fills.

    The owner is the address whose fill it is: it tells which leg we are looking at. ``own_legs_only`` counts a
    liquidation from the liquidated user's own fills alone (a node sees every leg, and the user's own are exact);
    ``via`` replaces the per-event list of owners in ``observed_via``. Events come out in exchange-time order.
    """
    events: dict[str, _Accumulator] = {}
    for observer, fill in observed:
        info = fill.liquidation
        if info is None:
            continue
        user = info.liquidatedUser.lower()
        owner = observer.lower()
        adl = fill.dir == ADL_DIR
        own_fill = owner == user
        if own_legs_only and not (own_fill or adl):
            continue
        if adl:
            key = "adl|" + event_key(fill.hash, fill.coin, owner, fill.time)
        else:
            key = event_key(fill.hash, fill.coin, user, fill.time)
        acc = events.get(key)
        if acc is None:
            acc = events[key] = _Accumulator(
                adl=adl,
                tx_hash=fill.hash,
                coin=fill.coin,
                user=user,
                owner=owner,
                # An ADL fill is always the deleveraged user's own: selling closed a long.
                side=liquidated_side(fill.side, own_fill=own_fill or adl),
                method=_method(info.method),
                timestamp=fill.time,
                mark_price=info.markPx,
                own_leg_seen=own_fill,
            )
        elif own_fill and not acc.own_leg_seen and not adl:
            # The liquidated user's own leg is the authority on the side; a counterparty leg only implies it.
            acc.side = liquidated_side(fill.side, own_fill=True)
            acc.own_leg_seen = True
        acc.add(fill.tid, fill.px, fill.sz, owner)
    return _finish(events, source, detected_at, via)


def detect_from_trades(
    trades: Iterable[Trade], *, liquidators: frozenset[str], detected_at: int
) -> list[LiquidationEvent]:
    """The original tracker's heuristic: a public trade with a liquidator vault on one side is taken for a backstop
    liquidation.

    Public trades carry no liquidation marker, so this both misses (market liquidations never touch a vault) and
    invents (a vault unwinding inventory it took over looks the same). The other party is reported as the
    liquidated user and ``method`` is ``unknown``. ``liquidators`` must be lowercase.
    """
    # Each such trade becomes the vault's own fill of it, which the fill rules already read right: the vault is
    # the counterparty, so its buying means a long was taken over.
    observed: list[tuple[str, Fill]] = []
    vault_side: FillSide
    for trade in trades:
        buyer, seller = (u.lower() for u in trade.users)
        if buyer in liquidators:
            vault, user, vault_side = buyer, seller, "B"
        elif seller in liquidators:
            vault, user, vault_side = seller, buyer, "A"
        else:
            continue
        info = LiquidationInfo(liquidatedUser=user, markPx=None, method="unknown")
        fill = Fill(
            coin=trade.coin,
            px=trade.px,
            sz=trade.sz,
            side=vault_side,
            time=trade.time,
            hash=trade.hash,
            tid=trade.tid,
            liquidation=info,
        )
        observed.append((vault, fill))
    return [
        e
        for e in detect_from_fills(observed, source="trades", detected_at=detected_at)
        if isinstance(e, LiquidationEvent)
    ]


def _finish(
    events: dict[str, _Accumulator], source: Source, detected_at: int, via: tuple[str, ...] | None
) -> list[Event]:
    built = []
    # In exchange-time order, then by key: an event's key is its accumulator's (sorted here, not rebuilt per event).
    for _, acc in sorted(events.items(), key=lambda item: (item[1].timestamp, item[0])):
        try:
            event = acc.build(source, detected_at, via)
        except ArithmeticError as exc:  # amounts that are not numbers: Decimal raises InvalidOperation
            problem: str | None = f"its amounts do not add up ({type(exc).__name__})"
        else:
            problem = event_problem(event)
        if problem is not None:
            log.error("dropped the event of tx %.80r in %.80r: %s", acc.tx_hash, acc.coin, problem)
            continue
        built.append(event)
    return built
