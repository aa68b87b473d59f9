"""The events that travel on the stream.

Every event is a tagged msgspec Struct: its JSON carries ``"type"`` so that a subscriber can decode the union of all
event types and skip the ones it does not know. Fields added in later versions always get defaults, so a reader
built against an older version keeps decoding newer entries (msgspec ignores unknown fields).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Literal

import msgspec
from msgspec import Meta

from schemas.limits import MAX_TIMESTAMP_MS

SCHEMA_VERSION = 1
"""Bumped when a field changes meaning or a required field is added; additive changes keep the version."""

Side = Literal["long", "short"]
"""The side of the position that was liquidated (not the side of the fill that closed it)."""

Source = Literal["fills", "trades", "node", "hosted", "ws"]
"""Where the producer saw the liquidation: watched addresses' fills (polled), public trades, a node's fill files, a
hosted provider's venue-wide liquidation feed, or watched addresses' fills pushed by the public WebSocket."""

Method = Literal["market", "backstop", "unknown"]
"""How the exchange liquidated: sent to the book (market), taken over by a liquidator vault (backstop), or not
known (the trades heuristic carries no liquidation metadata)."""


class _Trades(msgspec.Struct, frozen=True, kw_only=True):
    """What every event type sums over its distinct trades; amounts are exact decimals (JSON strings).

    Amounts are finite, non-negative, below 10^40 and have at most 40 decimal places; times lie between 1970 and
    2100 (:mod:`schemas.limits`). Readers reject an entry that breaks these bounds as malformed.
    """

    tx_hash: Annotated[str, Meta(description="Transaction hash shared by every fill of the event.")]
    coin: Annotated[str, Meta(description="The exchange's coin name, e.g. BTC, or xyz:CRWV for a builder market.")]
    price: Annotated[Decimal, Meta(description="Volume-weighted average fill price over tids.")]
    size: Annotated[Decimal, Meta(description="Sum of the distinct trades' sizes, in coin units.")]
    value_usd: Annotated[Decimal, Meta(description="Sum of px x sz over the distinct trades, in USD.")]
    timestamp: Annotated[
        int, Meta(gt=0, lt=MAX_TIMESTAMP_MS, description="Exchange time of the fills, milliseconds since the epoch.")
    ]
    mark_price: Annotated[Decimal | None, Meta(description="Mark price the exchange acted at.")] = None
    tids: Annotated[tuple[int, ...], Meta(description="Trade ids summed, ascending; both legs share one.")] = ()
    fills: Annotated[int, Meta(description="How many distinct trades (tids) the event sums.")] = 0
    observed_via: Annotated[
        tuple[str, ...], Meta(description="Watched addresses, vaults or 'node' whose data showed the event.")
    ] = ()
    source: Annotated[Source, Meta(description="Which producer source found it.")] = "fills"
    detected_at: Annotated[
        int, Meta(ge=0, lt=MAX_TIMESTAMP_MS, description="Producer time the event was built, ms since the epoch.")
    ] = 0


class LiquidationEvent(_Trades, frozen=True, kw_only=True, tag="liquidation", tag_field="type"):
    """One liquidation of one user's position in one coin, within one transaction.

    The identity is ``(tx_hash, coin, liquidated_user)``: one transaction can liquidate several users in several
    coins, and one liquidation is absorbed by many makers, so neither the hash nor a fill identifies it alone.
    """

    liquidation_side: Annotated[Side, Meta(description="Side of the liquidated position.")]
    liquidated_user: Annotated[str, Meta(description="Address whose position was liquidated.")]
    method: Annotated[Method, Meta(description="market: sent to the book; backstop: taken over by a vault.")]

    @property
    def key(self) -> str:
        """The deduplication key: stable for the same liquidation whichever legs or producer saw it."""
        return event_key(self.tx_hash, self.coin, self.liquidated_user, self.timestamp)


class AdlEvent(_Trades, frozen=True, kw_only=True, tag="adl", tag_field="type"):
    """One auto-deleveraging of one user's position in one coin, within one transaction.

    When a liquidation cannot be absorbed (book and backstop exhausted), the exchange closes profitable opposite
    positions against it. The fills carry a ``liquidation`` object like a liquidation's, but the fill's owner is
    the one deleveraged: nobody was liquidated in that fill, so it is an event of its own.
    """

    deleveraged_user: Annotated[str, Meta(description="Address whose position was auto-deleveraged.")]
    position_side: Annotated[Side, Meta(description="Side of the deleveraged position.")]
    liquidated_user: Annotated[
        str, Meta(description="The account whose liquidation caused it (often a liquidator vault).")
    ]

    @property
    def key(self) -> str:
        return "adl|" + event_key(self.tx_hash, self.coin, self.deleveraged_user, self.timestamp)


ZERO_HASH = "0x" + "0" * 64
"""The exchange writes this hash on many ordinary fills; it identifies no transaction."""


def event_key(tx_hash: str, coin: str, liquidated_user: str, timestamp: int) -> str:
    """Join the identity parts (``|`` appears in no hash, coin name or address).

    An all-zero hash names no transaction, so the block time stands in for it; otherwise two liquidations of one
    user in one coin would share a key and the second would be dropped as a duplicate.
    """
    tx = f"{tx_hash}@{timestamp}" if tx_hash == ZERO_HASH else tx_hash
    return f"{tx}|{coin}|{liquidated_user}"


Event = LiquidationEvent | AdlEvent
"""The union of every event type on the stream; a reader decodes it and skips the types it does not know."""

EVENT_TYPES: dict[str, type[Event]] = {"liquidation": LiquidationEvent, "adl": AdlEvent}
