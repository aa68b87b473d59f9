"""A background task that a failure does not end for good: the owner calls :meth:`RestartingTask.start` at every
turn of its loop, and a task that failed is logged once and started again.

Why: the producer's helpers beside the source (the coverage measure, the adaptive watchlist) must never stop the
producer, nor stay dead after one unforeseen error. A task that returned, or was cancelled, ended on purpose and
stays ended.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any

__all__ = ["RestartingTask"]


class RestartingTask:
    """``run()`` as a task named ``name``; ``what`` names it in the log line of a failure (``"coverage: the trades
    feed"`` → ``coverage: the trades feed failed (ValueError: …); restarting it``), on ``log``."""

    def __init__(self, name: str, what: str, run: Callable[[], Coroutine[Any, Any, None]], log: logging.Logger) -> None:
        self.name = name
        self.what = what
        self._run = run
        self._log = log
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start the task: once, and again after it failed."""
        task = self._task
        if task is not None and task.done() and not task.cancelled() and (exc := task.exception()) is not None:
            self._log.error("%s failed (%s: %s); restarting it", self.what, type(exc).__name__, exc)
            self._task = None
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=self.name)

    def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
