"""The exchange's JSON, as msgspec Structs.

Only the fields the producer reads are declared; msgspec skips the rest without building them, which keeps
decoding fast and lets the exchange add fields (cloid, builderFee, twapId, ...) without breaking us. Prices and
sizes stay the exchange's decimal strings until the detector does exact arithmetic on the few fills that matter.

Decoding also checks that those strings and times are usable: a fill whose price reads ``"abc"``, ``"NaN"`` or
``"1,000"``, or whose time is past 2100, fails to decode like a fill of the wrong shape, so the caller skips and
counts it. Let through, it raised in the detector on every poll and every restart, and the source never moved
past it.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Literal

import msgspec

from schemas.limits import MAX_TIMESTAMP_MS, amount_problem

FillSide = Literal["A", "B"]
"""``B``: the fill's owner bought; ``A``: it sold (hit the ask side)."""

ADL_DIR = "Auto-Deleveraging"

DecimalText = Annotated[str, msgspec.Meta(pattern=r"^[0-9]{1,18}(\.[0-9]{1,18})?\Z")]
"""A price or size as the exchange writes it: plain digits, at most 18 before and 18 after the point.

No sign, exponent, separator, ``NaN`` or ``Infinity``; the detector's sums of such numbers stay exact and well
inside :mod:`schemas.limits`, so every event built from them can be published.
"""

Millis = Annotated[int, msgspec.Meta(gt=0, lt=MAX_TIMESTAMP_MS)]
"""An exchange time in milliseconds, between 1970 and 2100."""


class LiquidationInfo(msgspec.Struct, frozen=True):
    """The object the exchange attaches to fills of a liquidation (and, confusingly, to ADL fills)."""

    liquidatedUser: str
    markPx: Decimal | None
    """Arrives as a string or a number; both decode exactly. None only on fills we synthesise from trades."""
    method: str

    def __post_init__(self) -> None:
        # msgspec turns a ValueError here into a decode error of this fill (it has no bounds for decimals).
        if self.markPx is not None and (problem := amount_problem(self.markPx)) is not None:
            raise ValueError(f"markPx {problem}")


class Fill(msgspec.Struct, frozen=True):
    """One fill of one address, as ``userFillsByTime`` (and the node's fill files) return it."""

    coin: str
    px: DecimalText
    sz: DecimalText
    side: FillSide
    time: Millis
    hash: str
    tid: int
    dir: str = ""
    liquidation: LiquidationInfo | None = None


class Trade(msgspec.Struct, frozen=True):
    """One public trade from ``recentTrades``; carries no liquidation marker."""

    coin: str
    side: FillSide
    px: DecimalText
    sz: DecimalText
    time: Millis
    hash: str
    tid: int
    users: tuple[str, str]
    """Buyer first, then seller."""
