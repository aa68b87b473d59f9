"""How an alert reads: amounts a person takes in at a glance, UTC times, a link to the transaction. Pure functions.

Every sink renders the same :class:`Message`: chat sinks post ``text`` (title, details, link on separate lines),
stdout prints ``one_line``, the generic webhook posts ``payload`` (the text plus the event as JSON).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import msgspec

from consumers.humanize import amount, usd, usd_compact, utc
from plumbing.text import printable
from schemas import ZERO_HASH, LiquidationEvent

EXPLORER_TX_URL = "https://app.hyperliquid.xyz/explorer/tx/"


@dataclass(frozen=True)
class Message:
    """One thing to tell people: an alert about one liquidation, or a summary of held-back ones."""

    title: str
    lines: tuple[str, ...] = ()
    link: str | None = None
    payload: dict[str, Any] = field(default_factory=dict)

    @property
    def text(self) -> str:
        return "\n".join((self.title, *self.lines, *((self.link,) if self.link else ())))

    @property
    def one_line(self) -> str:
        return " | ".join((self.title, *self.lines, *((self.link,) if self.link else ())))


def explorer_link(tx_hash: str, explorer_url: str = EXPLORER_TX_URL) -> str | None:
    """The transaction's page, or None for the all-zero hash, which names no transaction."""
    if not tx_hash or tx_hash == ZERO_HASH:
        return None
    return f"{explorer_url.rstrip('/')}/{tx_hash}"


def format_alert(event: LiquidationEvent, explorer_url: str = EXPLORER_TX_URL) -> Message:
    """The alert for one liquidation."""
    how = f" ({event.method})" if event.method != "unknown" else ""
    mark = f", mark ${amount(event.mark_price)}" if event.mark_price is not None else ""
    coin = printable(event.coin)  # the exchange's text: one line per alert, whatever it holds
    lines = (
        f"{amount(event.size)} {coin} at ${amount(event.price)}{mark}{how}",
        f"user {printable(event.liquidated_user)}",
        f"time {utc(event.timestamp)}",
    )
    title = f"{coin} {event.liquidation_side} liquidated: {usd(event.value_usd)}"
    link = explorer_link(event.tx_hash, explorer_url)
    payload = {
        "kind": "liquidation",
        "text": "\n".join((title, *lines, *((link,) if link else ()))),
        "link": link,
        "event": msgspec.to_builtins(event),
    }
    return Message(title=title, lines=lines, link=link, payload=payload)


def format_summary(coin: str, count: int, value_usd: Decimal, largest_usd: Decimal, seconds: float) -> Message:
    """One line for what a cooldown held back, instead of one message per liquidation."""
    noun = "liquidation" if count == 1 else "liquidations"
    title = (
        f"… and {count} more {printable(coin)} {noun} worth {usd_compact(value_usd)} held back in the last "
        f"{round(seconds)}s"
        f" (largest {usd_compact(largest_usd)})"
    )
    payload = {
        "kind": "summary",
        "text": title,
        "coin": coin,
        "count": count,
        "value_usd": str(value_usd),
        "largest_usd": str(largest_usd),
        "seconds": round(seconds),
    }
    return Message(title=title, payload=payload)
