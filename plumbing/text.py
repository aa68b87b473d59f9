"""Text from outside (the exchange, a sink's answer) made safe to show on one line of a log, a terminal or an alert.

The exchange's strings (coin names, transaction hashes, user addresses) reach our log lines and alerts as they
came; every process escapes them through here, so a hostile name cannot forge a log record in one and not in another.
"""

from __future__ import annotations


def printable(text: str, limit: int = 80) -> str:
    """Text from the exchange made safe for one line of a log, a terminal or an alert.

    Control characters (newlines that would forge a log record, escape sequences that would drive a terminal)
    become ``?``; text longer than ``limit`` is cut with an ellipsis, so a hostile coin name cannot flood a line.
    """
    if not text.isprintable():
        text = "".join(c if c.isprintable() else "?" for c in text)
    return text if len(text) <= limit else text[: limit - 1] + "…"
