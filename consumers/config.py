"""What every consumer process is configured with: where the stream is, which group it joins, how it reads.

:class:`RunnerSettings` holds the knobs of :class:`consumers.runner.Runner`; :class:`ObservabilitySettings` where
the process serves its metrics and health; :class:`ConsumerConfig` adds the connection and identity. A process
builds one config once (environment, then flags) and passes it down.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from plumbing.errors import ConfigError
from plumbing.options import (
    LOG_LEVEL_OPTION,
    SHARDS_OPTION,
    Option,
    hostname_pid,
    non_empty,
    observability_options,
    positive_int,
    read_options,
    stream_option,
)
from plumbing.redis_connect import RedisSettings, redis_options
from plumbing.shards import MAX_SHARDS, shard_streams
from plumbing.stream_keys import same_slot, stream_key
from schemas.stream import DEFAULT_STREAM

GroupStart = Literal["0", "$"]
"""Where a group that does not exist yet starts: the stream's first retained entry ("0") or new entries ("$")."""


@dataclass(frozen=True, kw_only=True)
class RunnerSettings:
    """How a :class:`~consumers.runner.Runner` reads; the defaults suit a service, tests shrink the times.

    ``claim_idle_ms`` is how long an entry may sit unacknowledged with its consumer before another consumer takes
    it over: longer than the slowest handler call, or live consumers steal each other's work.
    """

    block_ms: int = 5_000
    """How long one XREADGROUP waits for new entries; also bounds how late a claim or retry can start."""
    count: int = 100
    """Entries per read (and per claim page); the handler sees at most this many at once in batch mode."""
    claim_idle_ms: int = 60_000
    """Idle time after which a pending entry is taken over (XAUTOCLAIM) by any live consumer."""
    claim_interval_ms: int | None = None
    """How often to look for such entries; default half of ``claim_idle_ms`` (at least 50 ms)."""
    max_deliveries: int = 5
    """An entry delivered more often than this is dead-lettered instead of handled again."""
    group_start: GroupStart = "$"
    """Where the group starts if this runner creates it."""
    dead_letter_stream: str | None = None
    """Where undeliverable entries go; default ``<stream>:dead``."""
    retry_delay_ms: int = 1_000
    """First wait before a failed entry is handed to the handler again; doubles while failures continue."""
    retry_delay_max_ms: int = 30_000
    """Cap of that wait."""

    def __post_init__(self) -> None:
        for name in ("block_ms", "count", "claim_idle_ms", "max_deliveries", "retry_delay_ms", "retry_delay_max_ms"):
            value = getattr(self, name)
            if not isinstance(value, int) or value <= 0:
                raise ConfigError(f"RunnerSettings.{name} must be a whole number greater than 0, not {value!r}")
        if self.claim_interval_ms is not None and self.claim_interval_ms <= 0:
            raise ConfigError(f"RunnerSettings.claim_interval_ms must be greater than 0, not {self.claim_interval_ms}")
        if self.group_start not in ("0", "$"):
            raise ConfigError(f"RunnerSettings.group_start must be '0' or '$', not {self.group_start!r}")

    @property
    def claim_every_ms(self) -> int:
        return self.claim_interval_ms if self.claim_interval_ms is not None else max(50, self.claim_idle_ms // 2)

    def dead_letter_for(self, stream: str) -> str:
        return self.dead_letter_stream or stream_key(stream, "dead")


@dataclass(frozen=True, kw_only=True)
class ObservabilitySettings:
    """Where a consumer process serves Prometheus ``/metrics`` and ``/healthz`` (see :mod:`consumers.metrics`)."""

    metrics_port: int = 0
    """0 serves nothing: metrics are opt-in, so two processes on one host never fight over a default port."""
    metrics_host: str = "127.0.0.1"
    health_stale_after: float = 120.0
    """``/healthz`` answers 503 once no read of the stream has succeeded for this many seconds."""

    def __post_init__(self) -> None:
        if not 0 <= self.metrics_port <= 65535:
            raise ConfigError(f"ObservabilitySettings.metrics_port must be 0 to 65535, not {self.metrics_port}")
        if not self.health_stale_after > 0:
            raise ConfigError(
                f"ObservabilitySettings.health_stale_after must be greater than 0, not {self.health_stale_after}"
            )

    @property
    def enabled(self) -> bool:
        return self.metrics_port != 0


@dataclass(frozen=True, kw_only=True)
class ConsumerConfig(RedisSettings):
    """One consumer process's identity and connection; built once per process, passed down."""

    stream: str = DEFAULT_STREAM
    shards: int = 1
    """How many streams the producer spreads the stream over (:mod:`plumbing.shards`); each is read by the group."""
    group: str
    consumer: str
    settings: RunnerSettings = field(default_factory=RunnerSettings)
    log_level: str = "INFO"
    observability: ObservabilitySettings = field(default_factory=ObservabilitySettings)

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 1 <= self.shards <= MAX_SHARDS:
            raise ConfigError(f"ConsumerConfig.shards must be 1 to {MAX_SHARDS}, not {self.shards!r}")
        shards = shard_streams(self.stream, self.shards)
        dead = self.settings.dead_letter_for(self.stream)
        if self.redis_kind == "cluster" and not all(same_slot(self.settings.dead_letter_for(s), s) for s in shards):
            where = "the stream's Redis Cluster hash slot" if len(shards) == 1 else "every shard's hash slot at once"
            raise ConfigError(
                f"--dead-letter-stream / LIQ_DEAD_LETTER_STREAM {dead!r} is not in {where}, so dead letters cannot "
                f"be written with their acknowledgements: "
                + ("give it the stream's {tag}, or " if len(shards) == 1 else "")
                + f"leave it unset ({stream_key(self.stream, 'dead')!r}"
                + (")" if len(shards) == 1 else ", one per shard)")
            )
        # An idle stream is read once per block: a shorter staleness limit would report a healthy idle consumer
        # as stuck between two reads.
        o = self.observability
        if o.enabled and o.health_stale_after * 1000 <= self.settings.block_ms:
            raise ConfigError(
                f"--health-stale-after / HEALTH_STALE_AFTER ({o.health_stale_after:g} s) must be longer than one "
                f"read block (--block-ms / LIQ_BLOCK_MS, {self.settings.block_ms} ms), or /healthz reports an idle "
                "consumer as stuck: raise the first or lower the second"
            )

    def describe(self) -> str:
        """A log line's worth, without the Redis password."""
        s = self.settings
        sharded = f" in {self.shards} shards" if self.shards > 1 else ""
        return (
            f"stream {self.stream!r}{sharded} group {self.group!r} consumer {self.consumer!r} at {self.redis_where()} "
            f"(block {s.block_ms} ms, count {s.count}, claim idle {s.claim_idle_ms} ms, "
            f"max deliveries {s.max_deliveries}, dead letters to {s.dead_letter_for(self.stream)!r})"
        )


def _group_start(value: str) -> GroupStart:
    if value == "0":
        return "0"
    if value == "$":
        return "$"
    raise ValueError("must be 0 (the stream's first retained entry) or $ (only new entries)")


OBSERVABILITY_OPTIONS = observability_options("a successful read of the stream")
"""Where a consumer process serves metrics and health; part of :func:`runner_options`."""


def runner_options(*, default_group: str, default_start: GroupStart = "$") -> tuple[Option, ...]:
    """The options every consumer process shares; ``default_group`` differs per process."""
    return (
        *redis_options("Redis holding the stream"),
        stream_option(DEFAULT_STREAM, "Redis stream key to read."),
        SHARDS_OPTION,
        Option(
            "group",
            "--group",
            "LIQ_GROUP",
            non_empty,
            default_group,
            "Consumer group; replicas in one group split the entries, every group sees all of them.",
        ),
        Option(
            "consumer",
            "--consumer",
            "LIQ_CONSUMER",
            non_empty,
            hostname_pid,
            "This consumer's name within the group; unique per live process.",
        ),
        Option(
            "block_ms",
            "--block-ms",
            "LIQ_BLOCK_MS",
            positive_int,
            "5000",
            "Milliseconds one read waits for new entries.",
        ),
        Option("count", "--count", "LIQ_COUNT", positive_int, "100", "Entries per read."),
        Option(
            "claim_idle_ms",
            "--claim-idle-ms",
            "LIQ_CLAIM_IDLE_MS",
            positive_int,
            "60000",
            "Milliseconds an entry may stay unacknowledged before another consumer takes it over; "
            "longer than the slowest handler call.",
        ),
        Option(
            "max_deliveries",
            "--max-deliveries",
            "LIQ_MAX_DELIVERIES",
            positive_int,
            "5",
            "Deliveries after which a failing entry goes to the dead-letter stream.",
        ),
        Option(
            "group_start",
            "--group-start",
            "LIQ_GROUP_START",
            _group_start,
            default_start,
            "Where a new group starts: 0 (first retained entry) or $ (new entries only).",
        ),
        Option(
            "dead_letter_stream",
            "--dead-letter-stream",
            "LIQ_DEAD_LETTER_STREAM",
            non_empty,
            None,
            "Stream for entries that cannot be handled.",
            default_help="<stream>:dead, {<stream>}:dead for a stream without a {tag}",
        ),
        Option(
            "retry_delay_ms",
            "--retry-delay-ms",
            "LIQ_RETRY_DELAY_MS",
            positive_int,
            "1000",
            "Milliseconds before a failed entry is retried; doubles while failures continue (max 30 s).",
        ),
        LOG_LEVEL_OPTION,
        *OBSERVABILITY_OPTIONS,
    )


def consumer_config(values: Mapping[str, Any]) -> ConsumerConfig:
    """The :class:`ConsumerConfig` out of resolved :func:`runner_options` values."""
    retry = values["retry_delay_ms"]
    settings = RunnerSettings(
        block_ms=values["block_ms"],
        count=values["count"],
        claim_idle_ms=values["claim_idle_ms"],
        max_deliveries=values["max_deliveries"],
        group_start=values["group_start"],
        dead_letter_stream=values["dead_letter_stream"],
        retry_delay_ms=retry,
        retry_delay_max_ms=max(retry, 30_000),
    )
    return ConsumerConfig(
        redis_url=values["redis_url"],
        redis_cluster_nodes=values["redis_cluster_nodes"],
        redis_sentinels=values["redis_sentinels"],
        redis_sentinel_master=values["redis_sentinel_master"],
        stream=values["stream"],
        shards=values["shards"],
        group=values["group"],
        consumer=values["consumer"],
        settings=settings,
        log_level=values["log_level"],
        observability=ObservabilitySettings(
            metrics_port=values["metrics_port"],
            metrics_host=values["metrics_host"],
            health_stale_after=values["health_stale_after"],
        ),
    )


def load_consumer_config(
    default_group: str,
    argv: Sequence[str] | None = None,
    env: Mapping[str, str] | None = None,
    *,
    prog: str | None = None,
    description: str = "Read the Hyperliquid liquidation stream through a Redis consumer group.",
) -> ConsumerConfig:
    """A downstream service's config from the shared variables and flags (``--help`` lists them); for services
    with settings of their own, add :func:`runner_options` to their table and call :func:`consumer_config`."""
    options = runner_options(default_group=default_group)
    return consumer_config(read_options(prog or default_group, description, options, argv, env))
