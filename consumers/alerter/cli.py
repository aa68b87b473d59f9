"""``python -m consumers.alerter``: wire the config, Redis, the sinks, the alerter and the runner together."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import TextIO

import aiohttp

from consumers.alerter.config import AlerterConfig, load_alerter_config
from consumers.alerter.metrics import AlerterCollector
from consumers.alerter.service import Alerter
from consumers.alerter.sinks import build_sinks
from consumers.connection import connect
from consumers.humanize import usd
from consumers.metrics import serve_metrics
from consumers.sharded_runner import ShardedRunner
from plumbing.observability import TaskWatch
from plumbing.process import EXIT_OK, install_signal_handlers, run_process

log = logging.getLogger("consumers.alerter")


async def run_alerter(config: AlerterConfig, *, out: TextIO | None = None) -> int:
    """Alert until SIGTERM/SIGINT; then send what the cooldown still holds back, flush acknowledgements, return 0."""
    redis = connect(config.consumer)
    remove_handlers: Callable[[], None] | None = None
    try:
        async with aiohttp.ClientSession() as session:
            alerter = Alerter.from_config(config, redis, build_sinks(config, session, out))
            runner = ShardedRunner.from_config(redis, config.consumer, handler=alerter.handle)
            collector = AlerterCollector(alerter, runner)
            tasks = TaskWatch()
            async with serve_metrics(runner, config.consumer.observability, collector, tasks=tasks):
                remove_handlers = install_signal_handlers(runner.stop, alerter.stop)
                await runner.when_redis_answers(alerter.restore_held)
                tasks.start(alerter.run_summaries(runner), "cooldown summaries")
                overrides = ", ".join(f"{coin} {usd(amount)}" for coin, amount in config.thresholds.per_coin.items())
                log.info(
                    "alerting on liquidations of at least %s (%s) to %s, at most %d per coin per %g s; %s",
                    usd(config.thresholds.default),
                    overrides or "no coin overrides",
                    ", ".join(config.sinks),
                    config.burst,
                    config.cooldown_s,
                    config.consumer.describe(),
                )
                try:
                    await runner.run()
                finally:
                    runner.stop()
                    alerter.stop()
                    await tasks.join()
            log.info("alerter stopped: %s", alerter.counters.as_dict())
    finally:
        await redis.aclose()
        if remove_handlers is not None:
            remove_handlers()  # last: a second signal during the shutdown must not kill it
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    return run_process(
        lambda: load_alerter_config(argv), lambda c: c.consumer.log_level, run_alerter, logger="consumers"
    )
