"""What every consumer process does around its work: logging, the exit codes, and configuration errors."""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from redis.exceptions import RedisError

from consumers.errors import ConfigError, ConsumerError

Config = TypeVar("Config")

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_CONFIG = 2


def setup_logging(level: str) -> None:
    """Log lines to stderr, so stdout carries only the process's output (alerts, tables)."""
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)


def run_process(
    load: Callable[[], Config],
    level_of: Callable[[Config], str],
    main: Callable[[Config], Coroutine[Any, Any, int]],
) -> int:
    """Load the config (exit 2 on a bad setting), run ``main`` (exit 1 on our errors or Redis's), else its code."""
    try:
        config = load()
    except ConfigError as exc:
        sys.stderr.write(f"configuration error: {exc}\n")
        return EXIT_CONFIG
    setup_logging(level_of(config))
    try:
        return asyncio.run(main(config))
    except ConsumerError as exc:
        logging.getLogger("consumers").error("%s", exc)
        return EXIT_FAILED
    except RedisError as exc:
        logging.getLogger("consumers").error("Redis failed: %s (check REDIS_URL and that Redis is up)", exc)
        return EXIT_FAILED
