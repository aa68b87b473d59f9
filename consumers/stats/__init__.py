"""``python -m consumers.stats``: running totals of the stream, rebuilt on restart, printed and published as JSON.

Modules: ``config`` (settings), ``service`` (rebuild, handler, snapshot), ``table`` (what is printed),
``cli`` (the process). The aggregation itself is :mod:`consumers.totals`.
"""

from consumers.stats.config import StatsConfig, load_stats_config
from consumers.stats.service import StatsService
from consumers.stats.table import render_table

__all__ = ["StatsConfig", "StatsService", "load_stats_config", "render_table"]
