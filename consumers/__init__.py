"""Consumers of the liquidation stream: the group runner other services build on, and two services built on it.

``consumers.runner.Runner`` reads the stream through a Redis consumer group (at least once, with claims,
retries and a dead-letter stream), ``ShardedRunner`` every shard of a sharded one (``LIQ_SHARDS``);
``python -m consumers.alerter`` posts large liquidations to people; ``python -m consumers.stats`` keeps running
totals; ``python -m consumers.tail`` prints the stream live, outside any group. ``consumers.totals.Totals`` is
the pure aggregation the stats service (and the producer's in-process tracker) share; ``consumers.metrics`` serves
a runner's Prometheus metrics and health check.
"""

from consumers.config import (
    ConsumerConfig,
    GroupStart,
    ObservabilitySettings,
    RunnerSettings,
    consumer_config,
    load_consumer_config,
    runner_options,
)
from consumers.connection import check_socket_timeout, connect
from consumers.errors import ConsumerError, SocketTimeoutTooShort, WindowTooLong
from consumers.runner import BatchHandler, Handler, Runner, RunnerCounters
from consumers.sharded_runner import ShardedRunner
from consumers.totals import Totals

__all__ = [
    "BatchHandler",
    "ConsumerConfig",
    "ConsumerError",
    "GroupStart",
    "Handler",
    "ObservabilitySettings",
    "Runner",
    "RunnerCounters",
    "RunnerSettings",
    "ShardedRunner",
    "SocketTimeoutTooShort",
    "Totals",
    "WindowTooLong",
    "check_socket_timeout",
    "connect",
    "consumer_config",
    "load_consumer_config",
    "runner_options",
]
