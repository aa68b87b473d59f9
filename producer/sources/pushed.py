"""What the sources fed by a WebSocket share: a background task that reads the feed into the source, and a wait
that ends as soon as something arrived, a held block is due, or the feed is about to turn unhealthy.

The loop polls a source and then waits on it (:meth:`LiquidationSource.wait`); for a pushed feed that wait is what
makes it real time, so it ends on the push itself, not on the poll interval.
"""

from __future__ import annotations

import asyncio

from producer.sources.base import LiquidationSource
from producer.websocket import WebSocketFeed


class PushedSource(LiquidationSource):
    """A source whose :meth:`_run` reads :attr:`feed` in the background and sets :attr:`_arrived` on news."""

    feed: WebSocketFeed

    def __init__(self) -> None:
        self._arrived = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        raise NotImplementedError

    def _due_in(self) -> float | None:
        """Seconds until a held block may be released without news, or None when nothing waits on the clock."""
        return None

    def close(self) -> None:
        if self._task is not None:
            self._task.cancel()

    def _started(self) -> asyncio.Task[None]:
        """The background task, started on first use; its failure (a refused key) is raised here, to the loop."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"{self.name} feed")
        if self._task.done() and not self._task.cancelled():
            self._task.result()
        return self._task

    async def wait(self, seconds: float) -> None:
        """Until news arrives, a held block is due, the feed turns unhealthy, or ``seconds``, whichever is first."""
        task = self._started()
        for deadline in (self._due_in(), self.feed.until_unhealthy()):
            if deadline is not None:
                seconds = min(seconds, max(0.0, deadline) + 0.001)
        arrived = asyncio.ensure_future(self._arrived.wait())
        try:
            await asyncio.wait({arrived, task}, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        finally:
            arrived.cancel()
        self._started()
