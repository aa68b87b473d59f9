"""``python -m consumers.stats``: rebuild from history, then aggregate the group's share until a signal stops it."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TextIO

from consumers.connection import connect
from consumers.metrics import serve_metrics
from consumers.stats.config import StatsConfig, load_stats_config
from consumers.stats.metrics import StatsCollector
from consumers.stats.service import StatsService
from plumbing.observability import TaskWatch
from plumbing.process import EXIT_OK, install_signal_handlers, run_process

log = logging.getLogger("consumers.stats")


async def run_stats(config: StatsConfig, *, out: TextIO | None = None) -> int:
    """Aggregate until SIGTERM/SIGINT; then flush acknowledgements, print and publish a last report, return 0."""
    redis = connect(config.consumer)
    service = StatsService(config, redis, out=out)
    remove_handlers = install_signal_handlers(service.runner.stop)
    try:
        tasks = TaskWatch()
        async with serve_metrics(service.runner, config.consumer.observability, StatsCollector(service), tasks=tasks):
            log.info(
                "aggregating; reporting every %g s to stdout and %r; %s",
                config.interval_s,
                config.key,
                config.consumer.describe(),
            )
            if config.rebuild:
                await service.runner.when_redis_answers(service.rebuild)
            else:  # the view's share is counted from here either way
                await service.runner.when_redis_answers(service.begin)
            tasks.start(service.run_reports(), "stats reports")
            try:
                await service.runner.run()
            finally:
                service.runner.stop()
                await tasks.join()
            await service.final_report()
    finally:
        await redis.aclose()
        remove_handlers()  # last: a second signal during the final report must not kill it
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    return run_process(lambda: load_stats_config(argv), lambda c: c.consumer.log_level, run_stats, logger="consumers")
