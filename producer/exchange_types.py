"""The exchange's JSON, as msgspec Structs.

Only the fields the producer reads are declared; msgspec skips the rest without building them, which keeps
decoding fast and lets the exchange add fields (cloid, builderFee, twapId, ...) without breaking us. Prices and
sizes stay the exchange's decimal strings until the detector does exact arithmetic on the few fills that matter.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Literal

import msgspec

FillSide = Literal["A", "B"]
"""``B``: the fill's owner bought; ``A``: it sold (hit the ask side)."""

ADL_DIR = "Auto-Deleveraging"


class LiquidationInfo(msgspec.Struct, frozen=True):
    """The object the exchange attaches to fills of a liquidation (and, confusingly, to ADL fills)."""

    liquidatedUser: str
    markPx: Decimal | None
    """Arrives as a string or a number; both decode exactly. None only on fills we synthesise from trades."""
    method: str


class Fill(msgspec.Struct, frozen=True):
    """One fill of one address, as ``userFillsByTime`` (and the node's fill files) return it."""

    coin: str
    px: str
    sz: str
    side: FillSide
    time: int
    hash: str
    tid: int
    dir: str = ""
    liquidation: LiquidationInfo | None = None


class Trade(msgspec.Struct, frozen=True):
    """One public trade from ``recentTrades``; carries no liquidation marker."""

    coin: str
    side: FillSide
    px: str
    sz: str
    time: int
    hash: str
    tid: int
    users: tuple[str, str]
    """Buyer first, then seller."""


FILLS_TYPE = list[Fill]
TRADES_TYPE = list[Trade]
