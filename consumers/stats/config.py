"""The stats aggregator's one configuration object: the runner's settings plus reporting."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from consumers.config import ConsumerConfig, consumer_config, runner_options
from plumbing.options import (
    Option,
    boolean,
    invoked_as,
    non_empty,
    positive_float,
    positive_int,
    read_options,
)
from plumbing.stream_keys import stream_key

OPTIONS: tuple[Option, ...] = (
    *runner_options(default_group="stats"),
    Option(
        "interval_s",
        "--interval-s",
        "STATS_INTERVAL_S",
        positive_float,
        "60",
        "Seconds between reports (table on stdout, snapshot in Redis); one more on exit.",
    ),
    Option(
        "snapshot_key",
        "--snapshot-key",
        "STATS_SNAPSHOT_KEY",
        non_empty,
        None,
        "Redis key the latest snapshot (JSON) is written to.",
        default_help="<stream>:stats:<group>:<consumer>",
    ),
    Option(
        "snapshot_ttl_s",
        "--snapshot-ttl-s",
        "STATS_SNAPSHOT_TTL_S",
        positive_int,
        None,
        "Seconds the snapshot key lives unless refreshed, so a stopped replica's snapshot goes away.",
        default_help="3 x interval, at least 60",
    ),
    Option(
        "rebuild",
        "--rebuild",
        "STATS_REBUILD",
        boolean,
        "true",
        "On start, rebuild the totals from the stream's retained history (true/false).",
    ),
    Option("top", "--top", "STATS_TOP", positive_int, "10", "Coins listed in the table."),
)


@dataclass(frozen=True, kw_only=True)
class StatsConfig:
    consumer: ConsumerConfig
    interval_s: float = 60.0
    snapshot_key: str | None = None
    snapshot_ttl_s: int | None = None
    rebuild: bool = True
    top: int = 10

    @property
    def key(self) -> str:
        c = self.consumer
        return self.snapshot_key or stream_key(c.stream, f"stats:{c.group}:{c.consumer}")

    @property
    def ttl_s(self) -> int:
        return self.snapshot_ttl_s or max(60, int(3 * self.interval_s))


def load_stats_config(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> StatsConfig:
    """Flags over environment over defaults; raises :class:`~plumbing.errors.ConfigError` naming the setting."""
    values = read_options(
        invoked_as("consumers.stats"),
        "Keep running totals of Hyperliquid liquidations from the Redis stream (overall, by coin, by side, "
        "5 min / 1 h / 24 h windows), print them and publish them to Redis as JSON.",
        OPTIONS,
        argv,
        env,
    )
    return StatsConfig(
        consumer=consumer_config(values),
        interval_s=values["interval_s"],
        snapshot_key=values["snapshot_key"],
        snapshot_ttl_s=values["snapshot_ttl_s"],
        rebuild=values["rebuild"],
        top=values["top"],
    )
