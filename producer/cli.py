"""``python -m producer``: parse the configuration, set up logging, run until a signal stops us."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from plumbing.observability import ObservabilityServer
from plumbing.process import install_signal_handlers, run_process
from producer.config import ProducerConfig, load_config
from producer.service import Producer
from producer.sources.hosted import DEFAULT_URLS
from producer.sources.ws import public_ws_url
from producer.websocket import mask_url

log = logging.getLogger("producer")


def source_scope(config: ProducerConfig) -> str:
    """What the chosen source reads, for the start-up line; each source only has settings of its own."""
    if config.source == "fills":
        return f"{len(config.watchlist)} addresses"
    if config.source == "ws":
        where = mask_url(config.ws_url or public_ws_url(config.api_url))
        if config.adaptive:
            return (
                f"{len(config.watchlist)} pinned addresses and the biggest makers, "
                f"{config.adaptive_slots} on the WebSocket at {where} and {config.adaptive_polled} read over REST"
            )
        return f"{len(config.watchlist)} addresses at {where}"
    if config.source == "trades":
        return ",".join(config.coins)
    if config.source == "hosted":
        return f"{config.hosted_dialect} at {mask_url(config.hosted_url or DEFAULT_URLS[config.hosted_dialect])}"
    return ",".join(str(path) for path in config.node_paths)


def cadence(config: ProducerConfig) -> str:
    """When the source is read, for the start-up line: a pushed feed is not polled every --interval."""
    if config.once:
        return "once"
    if config.source in ("ws", "hosted"):
        return "as the feed pushes them"
    if config.source == "node" and config.node_follow:
        return "as the files grow"
    return f"every {config.poll_interval:.1f}s"


async def _main(config: ProducerConfig) -> int:
    log.info(
        "publishing to stream %r at %s from source %r (%s), %s",
        config.stream,
        config.redis_where(),
        config.source,
        source_scope(config),
        cadence(config),
    )
    producer = Producer(config)
    remove_handlers = install_signal_handlers(producer.stop)
    server = None
    try:
        if config.metrics_port:
            server = ObservabilityServer(
                producer.metrics.registry, producer.progress.health, host=config.metrics_host, port=config.metrics_port
            )
            await server.start()
        return await producer.run()
    finally:
        if server is not None:
            await server.stop()
        remove_handlers()  # last: a second signal during the shutdown must not kill it


def main(argv: Sequence[str] | None = None) -> int:
    return run_process(lambda: load_config(argv), lambda c: c.log_level, _main, logger="producer")
