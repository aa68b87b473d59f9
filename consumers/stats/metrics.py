"""The stats aggregator's own metrics, beside the runner's: what entered the totals, live and from history."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from consumers.metrics import LABELS, PREFIX, runner_labels
from consumers.stats.service import StatsService


class StatsCollector(Collector):
    """Reads the aggregator's counts at scrape time, labelled like the runner's metrics.

    Events counted from the history on start are a gauge of their own, not part of the counter: a counter that
    started at the size of the history would read as a burst of events at every restart.
    """

    def __init__(self, service: StatsService) -> None:
        self.service = service

    def collect(self) -> Iterator[Metric]:
        labels = runner_labels(self.service.runner)
        counted = CounterMetricFamily(
            PREFIX + "stats_events_counted",
            "Events delivered to the group that entered the totals, by type.",
            labels=[*LABELS, "type"],
        )
        for kind in sorted({"liquidation", *self.service.counted}):
            counted.add_metric([*labels, kind], self.service.counted[kind])
        yield counted
        duplicates = CounterMetricFamily(
            PREFIX + "stats_duplicates_ignored",
            "Events not counted again because their key was seen recently.",
            labels=LABELS,
        )
        duplicates.add_metric(labels, self.service.totals.duplicates)
        yield duplicates
        rebuilt = GaugeMetricFamily(
            PREFIX + "stats_rebuilt_events",
            "Events counted from the stream's history when the process started.",
            labels=LABELS,
        )
        rebuilt.add_metric(labels, self.service.rebuilt)
        yield rebuilt
