"""``python -m consumers.tail``: watch the stream live, as a table for people or JSON lines for tools.

It reads with plain XREAD, outside any consumer group, so it never takes entries from a group, never leaves
anything pending and never shows up in XINFO CONSUMERS: run it against production freely.

Modules: ``config`` (settings and where to start), ``format`` (an entry as a table row or a JSON line),
``cli`` (the process: read, print, stop cleanly).
"""

from consumers.tail.config import TailConfig, load_tail_config
from consumers.tail.format import format_entry, table_header

__all__ = ["TailConfig", "format_entry", "load_tail_config", "table_header"]
