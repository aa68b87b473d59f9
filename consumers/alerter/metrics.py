"""The alerter's own metrics, beside the runner's: what went out to each sink, what the cooldown held back, and
what waits for a sink that is down (the entries behind it are the runner's ``hl_consumer_lag``)."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from consumers.alerter.service import Alerter
from consumers.metrics import LABELS, PREFIX, runner_labels
from consumers.sharded_runner import AnyRunner


class AlerterCollector(Collector):
    """Reads the alerter's counters at scrape time, labelled like the runner's metrics."""

    def __init__(self, alerter: Alerter, runner: AnyRunner) -> None:
        self.alerter = alerter
        self.runner = runner

    def collect(self) -> Iterator[Metric]:
        labels = runner_labels(self.runner)
        sent = CounterMetricFamily(
            PREFIX + "alerts_sent",
            "Alerts a sink took, by sink (summaries are counted apart).",
            labels=[*LABELS, "sink"],
        )
        for sink in self.alerter.sinks:
            sent.add_metric([*labels, sink.name], self.alerter.sent_by_sink[sink.name])
        yield sent
        counters = self.alerter.counters
        for name, value, documentation in (
            ("alerts_held_back", counters.held_back, "Alerts the per-coin cooldown held back for a summary."),
            ("alert_summaries", counters.summaries, "Summaries of held-back alerts sent."),
        ):
            counter = CounterMetricFamily(PREFIX + name, documentation, labels=LABELS)
            counter.add_metric(labels, value)
            yield counter
        gauges: tuple[tuple[str, float, str], ...] = (
            (
                "alerts_waiting",
                float(len(self.alerter.delivery.waiting)),
                "Alerts and summaries waiting now for a sink that is down (retried until it is back).",
            ),
            (
                "alert_oldest_wait_seconds",
                self.alerter.delivery.oldest_wait_s(),
                "How long the alert that has waited longest for a sink that is down has waited; 0 when none waits.",
            ),
            (
                "alerts_held_now",
                self.alerter.cooldown.held_count(),
                "Alerts held back now, their summary not sent yet.",
            ),
        )
        for name, level, documentation in gauges:
            gauge = GaugeMetricFamily(PREFIX + name, documentation, labels=LABELS)
            gauge.add_metric(labels, level)
            yield gauge
