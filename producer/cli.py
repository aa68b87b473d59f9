"""``python -m producer``: parse the configuration, set up logging, run until a signal stops us."""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Sequence

from consumers.observability import ObservabilityServer
from consumers.options import redact_url
from producer.config import ProducerConfig, load_config
from producer.errors import ConfigError, ProducerError
from producer.service import Producer, install_signal_handlers

log = logging.getLogger("producer")


def source_scope(config: ProducerConfig) -> str:
    """What the chosen source reads, for the start-up line; each source only has settings of its own."""
    if config.source == "fills":
        return f"{len(config.watchlist)} addresses"
    if config.source == "trades":
        return ",".join(config.coins)
    return ",".join(str(path) for path in config.node_paths)


async def _main(config: ProducerConfig) -> int:
    producer = Producer(config)
    install_signal_handlers(producer)
    server = None
    if config.metrics_port:
        server = ObservabilityServer(
            producer.metrics.registry, producer.progress.health, host=config.metrics_host, port=config.metrics_port
        )
        await server.start()
    try:
        return await producer.run()
    finally:
        if server is not None:
            await server.stop()


def main(argv: Sequence[str] | None = None) -> int:
    try:
        config = load_config(argv)
    except ProducerError as exc:
        sys.stderr.write(f"configuration error: {exc}\n")
        return 2
    logging.basicConfig(
        level=config.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    log.info(
        "publishing to stream %r at %s from source %r (%s), every %.1fs%s",
        config.stream,
        redact_url(config.redis_url),
        config.source,
        source_scope(config),
        config.poll_interval,
        " once" if config.once else "",
    )
    try:
        return asyncio.run(_main(config))
    except ConfigError as exc:  # a setting found wrong only once Redis answered (its eviction policy)
        log.error("%s", exc)
        return 2
    except ProducerError as exc:
        log.error("%s", exc)
        return 1
