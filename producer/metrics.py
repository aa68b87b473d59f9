"""The producer's Prometheus metrics.

Counters the producer already keeps (the client's per-kind request errors) are read at scrape time by a
collector rather than counted twice; what only the poll loop knows is counted where it happens.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from producer.client import ClientStats
from producer.coverage import Coverage

API_ERROR_KINDS = ("rate_limited", "server_errors", "timeouts", "connection_errors", "malformed", "skipped_items")


class _ClientCollector(Collector):
    def __init__(self, stats: ClientStats) -> None:
        self.stats = stats

    def collect(self) -> Iterator[Metric]:
        requests = CounterMetricFamily("hl_producer_api_requests", "Requests sent to the exchange's info API.")
        requests.add_metric([], self.stats.requests)
        yield requests
        retries = CounterMetricFamily("hl_producer_api_retries", "Requests retried after a transient failure.")
        retries.add_metric([], self.stats.retries)
        yield retries
        errors = CounterMetricFamily(
            "hl_producer_api_errors", "Failed or unusable answers by kind; rate_limited are 429s.", labels=["kind"]
        )
        for kind in API_ERROR_KINDS:
            errors.add_metric([kind], getattr(self.stats, kind))
        yield errors


class ProducerMetrics:
    def __init__(self, client_stats: ClientStats, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.polls = Counter("hl_producer_polls", "Polls of the source.", ["source"], registry=r)
        self.poll_errors = Counter("hl_producer_poll_errors", "Addresses or coins a poll could not read.", registry=r)
        self.found = Counter("hl_producer_events_found", "New events detected, by type.", ["type"], registry=r)
        self.completed = Counter(
            "hl_producer_events_completed",
            "Partial liquidations completed from the liquidated user's own fills, and published again.",
            registry=r,
        )
        self.left_partial = Counter(
            "hl_producer_events_left_partial",
            "Partial liquidations never completed: too many waiting (a cascade) or not in the user's fills.",
            registry=r,
        )
        self.published = Counter("hl_producer_events_published", "Events added to the stream.", ["type"], registry=r)
        self.duplicates = Counter(
            "hl_producer_duplicates_skipped", "Events whose dedup key was already set (published before).", registry=r
        )
        self.unreplicated = Counter(
            "hl_producer_publishes_unreplicated",
            "Publishes that no replica (of --wait-replicas) confirmed in time: held and published again.",
            registry=r,
        )
        self.publish_seconds = Histogram(
            "hl_producer_publish_seconds",
            "Time to publish one outbox batch (script round trip).",
            registry=r,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
        )
        self.pending = Gauge("hl_producer_pending_events", "Events waiting for Redis in the outbox.", registry=r)
        self.skipped = Counter(
            "hl_producer_fills_skipped",
            "Fills left out because they were stamped further ahead of our clock than clock skew explains.",
            registry=r,
        )
        self.gap_seconds = Counter(
            "hl_producer_gap_seconds",
            "Seconds of exchange time a feed missed and could not replay (the log names each window to backfill).",
            registry=r,
        )
        self.redis_up = Gauge(
            "hl_producer_redis_up",
            "1 when Redis answered the producer's last command (a load, a publish, or a PING after a quiet poll).",
            registry=r,
        )
        r.register(_ClientCollector(client_stats))
        self.coverage_ratio = Gauge(
            "hl_producer_watch_coverage_ratio",
            "Share of a coin's maker volume the watched addresses made in the ranking's window, by USD or by "
            "trades: the estimated share of its market liquidations the producer sees.",
            ["coin", "by"],
            registry=r,
        )
        self.coverage_overall = Gauge(
            "hl_producer_watch_coverage_overall_ratio",
            "Share of all coins' maker volume the watched addresses made, by USD or by trades.",
            ["by"],
            registry=r,
        )
        self.coverage_window_trades = Gauge(
            "hl_producer_watch_coverage_window_trades", "Public trades in the ranking's window.", registry=r
        )
        self.coverage_trades = Counter(
            "hl_producer_watch_coverage_trades", "Public trades counted into the maker ranking.", registry=r
        )
        self.coverage_coins = Gauge(
            "hl_producer_watch_coverage_coins", "Perp coins whose public trades are followed.", registry=r
        )
        self._coverage_coins: set[str] = set()
        self.watch_addresses = Gauge(
            "hl_producer_watchlist_addresses",
            "Addresses the adaptive watchlist watches, by tier: pinned (on the WebSocket), pushed (makers on the "
            "WebSocket), polled (makers read over REST in turn).",
            ["tier"],
            registry=r,
        )
        self.watch_changes = Counter(
            "hl_producer_watchlist_changes",
            "Makers that joined or left the adaptive watchlist at a re-rank (each joining one costs a gap-fill).",
            ["change"],
            registry=r,
        )
        self.watch_polled_oldest = Gauge(
            "hl_producer_watchlist_polled_oldest_read_seconds",
            "Seconds since the polled maker read longest ago was read: how late, at worst, a polled maker's "
            "liquidation reaches the stream.",
            registry=r,
        )

    def set_coverage(self, coverage: Coverage) -> None:
        """The gauges of one measure; a coin that left the window loses its series (no stale share)."""
        for coin in self._coverage_coins - coverage.per_coin.keys():
            for by in ("usd", "trades"):
                self.coverage_ratio.remove(coin, by)
        self._coverage_coins = set(coverage.per_coin)
        for coin, share in coverage.per_coin.items():
            self.coverage_ratio.labels(coin, "usd").set(share.fraction or 0.0)
            self.coverage_ratio.labels(coin, "trades").set(share.trade_fraction or 0.0)
        if coverage.overall.fraction is not None:
            self.coverage_overall.labels("usd").set(coverage.overall.fraction)
        if coverage.overall.trade_fraction is not None:
            self.coverage_overall.labels("trades").set(coverage.overall.trade_fraction)
        self.coverage_window_trades.set(coverage.overall.total_trades)
