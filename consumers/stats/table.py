"""The compact table the aggregator prints: read from a snapshot, so what people see is what other services read."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from consumers.humanize import usd_compact, utc
from plumbing.text import printable


def _usd(value: str | None) -> str:
    return usd_compact(Decimal(value)) if value is not None else "-"


def _side(tallies: dict[str, Any], side: str) -> str:
    tally = tallies.get("by_side", {}).get(side)
    return _usd(tally["value_usd"]) if tally else "$0"


def render_table(snapshot: dict[str, Any], *, top: int = 10) -> str:
    """A dozen lines: the view, windows and all-time totals by side, top coins, largest, other types, runner.

    Coin names and hashes are the exchange's text: escaped like in logs and alerts, so a coin name cannot move the
    cursor, recolour the terminal or forge a line of the table.
    """
    totals = snapshot["totals"]
    view = snapshot["view"]
    when = utc(snapshot["generated_at"])
    lines = [
        f"{snapshot['stream']}  group {snapshot['group']}  consumer {snapshot['consumer']}  {when}  {view['note']}",
        f"{'window':<8}{'count':>10}{'value':>12}{'longs':>12}{'shorts':>12}",
    ]
    rows = [(name, window) for name, window in totals["windows"].items()] + [("all", totals)]
    for name, tallies in rows:
        lines.append(
            f"{name:<8}{tallies['count']:>10,}{_usd(tallies['value_usd']):>12}"
            f"{_side(tallies, 'long'):>12}{_side(tallies, 'short'):>12}"
        )
    coins = list(totals["by_coin"].items())[:top]
    if coins:
        lines.append(
            "top coins: " + "  ".join(f"{printable(c)} {t['count']:,} {_usd(t['value_usd'])}" for c, t in coins)
        )
    largest = totals["largest"]
    if largest:
        lines.append(
            f"largest: {printable(largest['coin'])} {largest['liquidation_side']} {_usd(largest['value_usd'])} "
            f"at {utc(largest['timestamp'])} tx {printable(largest['tx_hash'])}"
        )
    if totals["other"]:
        lines.append(
            "other types: "
            + "  ".join(
                f"{printable(kind)} {t['count']:,} {_usd(t['value_usd'])}" for kind, t in totals["other"].items()
            )
        )
    runner = snapshot.get("runner") or {}
    if runner:
        lag = runner.get("lag")
        lines.append(
            f"processed {runner.get('processed', 0):,}  dead-lettered {runner.get('dead_lettered', 0):,}  "
            f"unknown type {runner.get('unknown_type', 0):,}  lag {'?' if lag is None else f'{lag:,}'}  "
            f"rebuilt from history {snapshot.get('rebuilt_from_history', 0):,}"
        )
    return "\n".join(lines)
