"""What every process does around its work: logging, the exit codes, configuration errors and the stop signals.

The producer and each consumer run through :func:`run_process`, so they all log the same way, turn a bad setting
into one line and exit code 2, and a failure into one line and exit code 1, never a traceback.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from redis.exceptions import RedisError

from plumbing.errors import ConfigError, ProcessError

Config = TypeVar("Config")

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_CONFIG = 2

log = logging.getLogger("plumbing.process")


def setup_logging(level: str) -> None:
    """Log lines to stderr, so stdout carries only the process's output (alerts, tables)."""
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)


def run_process(
    load: Callable[[], Config],
    level_of: Callable[[Config], str],
    main: Callable[[Config], Coroutine[Any, Any, int]],
    *,
    logger: str,
) -> int:
    """Load the config (exit 2 on a bad setting), run ``main`` (exit 1 on our errors or Redis's), else its code.

    A bad setting found only at run time (Redis's eviction policy, a client handed in with too short a timeout) is
    still a bad setting: exit 2. ``logger`` names the process's logger, which reports the one line.
    """
    try:
        config = load()
    except ConfigError as exc:
        sys.stderr.write(f"configuration error: {exc}\n")
        return EXIT_CONFIG
    setup_logging(level_of(config))
    try:
        return asyncio.run(main(config))
    except ConfigError as exc:
        logging.getLogger(logger).error("%s", exc)
        return EXIT_CONFIG
    except ProcessError as exc:
        logging.getLogger(logger).error("%s", exc)
        return EXIT_FAILED
    except RedisError as exc:
        logging.getLogger(logger).error("Redis failed: %s (check REDIS_URL and that Redis is up)", exc)
        return EXIT_FAILED


def install_signal_handlers(stop: Callable[[], None], *more: Callable[[], None]) -> Callable[[], None]:
    """Call ``stop`` (and ``more``) on SIGTERM and SIGINT; returns a function that removes the handlers.

    A second signal does the same as the first (the stop is already under way): to kill a stuck process, use
    SIGKILL; nothing is lost, its pending entries are claimed by a live consumer. Call the returned function last,
    once the shutdown is done: from then on the signals are ignored, not restored to their default, so a signal
    that lands while the interpreter exits cannot turn a clean exit into a death by signal.
    """
    loop = asyncio.get_running_loop()
    callbacks = (stop, *more)

    def on_signal(signum: int) -> None:
        log.info("received %s", signal.Signals(signum).name)
        for callback in callbacks:
            callback()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal, sig)

    def remove() -> None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
            signal.signal(sig, signal.SIG_IGN)

    return remove
