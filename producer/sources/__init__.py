"""Where liquidations are looked for: one module per source, each implementing :class:`LiquidationSource`.

``ws`` has the watchlist's fills pushed by the public WebSocket, ``fills`` polls them from the API,
``trades`` the recent public trades per coin (the original tracker's heuristic), ``node`` follows a node's fill files
or replays the archive, ``hosted`` reads a provider's venue-wide liquidation feed (see "What each source covers" in
the README). The configuration names one; :func:`build_source` makes it.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from plumbing.errors import ConfigError
from producer.client import HyperliquidClient
from producer.sources.base import LiquidationSource, PollResult
from producer.sources.fills import FillsSource
from producer.sources.hosted import HOSTED_KEY_MISSING, HostedSource, feed_settings
from producer.sources.node import NodeSource, NodeWindow
from producer.sources.trades import TradesSource
from producer.sources.ws import WsSource, public_ws_url, ws_settings
from producer.websocket import FeedSettings

if TYPE_CHECKING:
    # Only a type here: producer.config itself imports from this package (the node source's settings).
    from producer.config import ProducerConfig

__all__ = [
    "FillsSource",
    "HostedSource",
    "LiquidationSource",
    "NodeSource",
    "NodeWindow",
    "PollResult",
    "TradesSource",
    "WsSource",
    "build_source",
]


def with_timings(settings: FeedSettings, config: ProducerConfig) -> FeedSettings:
    """A feed's settings with the configured heartbeat and health timings (short ones in tests and on flaky links)."""
    return replace(
        settings,
        ping_after=config.feed_ping_after,
        silence_limit=config.feed_silence_limit,
        unhealthy_after=config.feed_unhealthy_after,
    )


def build_source(config: ProducerConfig, client: HyperliquidClient) -> LiquidationSource:
    if config.source == "trades":
        return TradesSource(client, config.coins, liquidators=config.liquidators)
    if config.source == "node":
        window = NodeWindow(start_ms=config.node_from, end_ms=config.node_until, follow=config.node_follow)
        return NodeSource(
            config.node_paths,
            window,
            max_bytes_per_poll=config.node_read_bytes,
            max_line=config.node_max_line,
            on_damage=config.node_damaged,
        )
    if config.source == "hosted":
        if config.hosted_key is None:
            raise ConfigError(HOSTED_KEY_MISSING)
        settings = feed_settings(config.hosted_dialect, config.hosted_url, config.hosted_key)
        return HostedSource(with_timings(settings, config), quiet=config.hosted_quiet)
    if config.source == "ws":
        url = config.ws_url or public_ws_url(config.api_url)
        return WsSource(
            client,
            config.watchlist,
            url=url,
            lookback_ms=int(config.lookback * 1000),
            quiet=config.ws_quiet,
            settings=with_timings(ws_settings(url, config.watchlist), config),
            polled_every=config.poll_interval,
        )
    return FillsSource(client, config.watchlist, lookback_ms=int(config.lookback * 1000))
