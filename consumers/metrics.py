"""A consumer process's Prometheus metrics and health check, served on ``METRICS_PORT``.

The runner already counts what it does (:class:`~consumers.runner.RunnerCounters`): a collector reads those
counters at scrape time instead of counting everything a second time. The group's lag costs a Redis round trip
(XINFO GROUPS), and a scrape must answer at once even while Redis is away, so a background task refreshes it and
the scrape reads the cached value. Health is :class:`~plumbing.observability.Progress`, fed by every read of the
stream that Redis answered: ``/healthz`` turns 503 when Redis has been away, or the loop wedged, for longer than
``HEALTH_STALE_AFTER``.

A service built on the runner gets what the alerter and the stats aggregator serve::

    async with serve_metrics(runner, config.observability):
        await runner.run()
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector
from redis.exceptions import RedisError

from consumers.config import ObservabilitySettings
from consumers.sharded_runner import AnyRunner
from plumbing.observability import ObservabilityServer, Progress, TaskWatch, all_healthy

log = logging.getLogger("consumers.metrics")

PREFIX = "hl_consumer_"
LABELS = ("stream", "group", "consumer")
"""Every consumer metric carries these, so replicas and groups scraped into one Prometheus stay apart."""

LAG_REFRESH_S = 2.0
"""How often the group's lag is read from Redis: one cheap XINFO GROUPS, far more often than anyone scrapes."""

RUNNER_COUNTERS: dict[str, str] = {
    "processed": "Entries whose handler returned.",
    "failed": "Handler calls that raised, per entry; the entries stay pending and are retried.",
    "retried": "Entries handed to the handler again (delivered more than once).",
    "claimed": "Entries taken over from idle consumers (XAUTOCLAIM).",
    "dead_lettered": "Entries copied to the dead-letter stream and acknowledged.",
    "unknown_type": "Entries of an event type this reader does not know; acknowledged.",
    "deleted": "Pending entries found trimmed from the stream; acknowledged.",
    "skipped": "Entries acknowledged unhandled because the service had accounted for them (stats rebuild).",
    "lost_to_trimming": "Entries trimmed from the stream (MAXLEN) before the group read them; never delivered.",
}
"""The :class:`~consumers.runner.RunnerCounters` served, each as ``hl_consumer_<name>_total``."""


def runner_labels(runner: AnyRunner) -> list[str]:
    """The values of :data:`LABELS` for this runner."""
    return [runner.stream, runner.group, runner.consumer]


class LagCache:
    """The group's lag as last read from Redis; :meth:`run` keeps it fresh so that a scrape never waits on Redis.

    ``value`` is None when it is unknown: before the first refresh, while Redis does not answer (an old figure
    would look like a group that keeps up), and when Redis itself cannot tell (entries deleted mid-stream).
    """

    def __init__(self, runner: AnyRunner, *, every_s: float = LAG_REFRESH_S) -> None:
        self.runner = runner
        self.every_s = every_s
        self.value: int | None = None

    async def refresh(self) -> None:
        try:
            self.value = await self.runner.lag()
        except RedisError as exc:
            self.value = None
            log.debug("could not read the lag of group %r: %s", self.runner.group, exc)

    async def run(self) -> None:
        """Refresh every ``every_s`` until cancelled."""
        while True:
            await self.refresh()
            await asyncio.sleep(self.every_s)


class RunnerCollector(Collector):
    """The runner's counters, its group's lag and the age of its last successful read, read at scrape time."""

    def __init__(self, runner: AnyRunner, lag: LagCache, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.runner = runner
        self.lag = lag
        self.clock = clock

    def collect(self) -> Iterator[Metric]:
        labels = runner_labels(self.runner)
        counters = self.runner.counters.as_dict()
        for name, documentation in RUNNER_COUNTERS.items():
            counter = CounterMetricFamily(PREFIX + name, documentation, labels=LABELS)
            counter.add_metric(labels, counters[name])
            yield counter
        lag = GaugeMetricFamily(
            PREFIX + "lag",
            "Entries in the stream not yet delivered to the group, trimmed ones not included; absent when unknown.",
            labels=LABELS,
        )
        if self.lag.value is not None:
            lag.add_metric(labels, self.lag.value)
        yield lag
        since = GaugeMetricFamily(
            PREFIX + "seconds_since_read",
            "Seconds since a read of the stream last succeeded (an empty one counts).",
            labels=LABELS,
        )
        if self.runner.last_read_ok is not None:
            since.add_metric(labels, self.clock() - self.runner.last_read_ok)
        yield since


@asynccontextmanager
async def serve_metrics(
    runner: AnyRunner,
    settings: ObservabilitySettings,
    *collectors: Collector,
    lag_refresh_s: float = LAG_REFRESH_S,
    tasks: TaskWatch | None = None,
) -> AsyncIterator[ObservabilityServer | None]:
    """Serve ``/metrics`` (the runner's, plus ``collectors``: the process's own) and ``/healthz`` while inside.

    Does nothing (and yields None) when ``settings.metrics_port`` is 0. Enter it before :meth:`Runner.run`, so that
    the health check counts from the process's start and sees every read. ``tasks`` are the process's background
    tasks: ``/healthz`` turns 503 when one of them dies.
    """
    if not settings.enabled:
        yield None
        return
    progress = Progress(settings.health_stale_after)
    runner.add_read_listener(progress.succeeded)
    lag = LagCache(runner, every_s=lag_refresh_s)
    registry = CollectorRegistry()
    registry.register(RunnerCollector(runner, lag))
    for collector in collectors:
        registry.register(collector)
    own = TaskWatch()
    health = progress.health if tasks is None else all_healthy(progress.health, tasks.health)
    server = ObservabilityServer(
        registry, all_healthy(health, own.health), host=settings.metrics_host, port=settings.metrics_port
    )
    await server.start()
    own.start(lag.run(), "lag refresher")
    try:
        yield server
    finally:
        await own.cancel()
        await server.stop()
