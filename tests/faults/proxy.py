"""A TCP relay in front of Redis that catches the producer's publish in flight, to kill the producer mid-publish.

"Mid-publish" is a moment of a few microseconds; a kill timed by sleeping lands there by luck. The relay makes it
certain: armed, it holds back the first bytes a client sends that name a dedup key (the publish script of a batch
with events) and everything after them on that connection, and tells the test. The test SIGKILLs the producer and
then decides what the crash looked like from Redis's side:

- :meth:`RedisRelay.drop`: the request never reached Redis (the crash came before the script);
- :meth:`RedisRelay.deliver`: it reached Redis and ran, but the producer died before the answer (after the script).

Both must end the same way once the producer restarts: every event in the stream exactly once.
"""

from __future__ import annotations

import asyncio
import contextlib

NEEDLE = b":dedup:"
"""In every publish script call that carries events: its keys are the events' dedup keys."""


class _Link:
    def __init__(self, upstream_writer: asyncio.StreamWriter) -> None:
        self.upstream = upstream_writer
        self.held = bytearray()
        self.holding = False


class RedisRelay:
    def __init__(self, target_port: int, host: str = "127.0.0.1") -> None:
        self.target = (host, target_port)
        self.port = 0
        self.armed = False
        self.caught = asyncio.Event()
        self._caught_link: _Link | None = None
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    def arm(self) -> None:
        """Catch the next publish that carries events."""
        self.caught.clear()
        self._caught_link = None
        self.armed = True

    async def drop(self) -> int:
        """Throw the caught request away and close its Redis connection; returns the bytes dropped."""
        link = self._take()
        dropped = len(link.held)
        link.upstream.close()
        return dropped

    async def deliver(self) -> int:
        """Send the caught request on to Redis (its client is dead by now) and let Redis answer into the void."""
        link = self._take()
        sent = len(link.held)
        link.upstream.write(bytes(link.held))
        await link.upstream.drain()
        return sent

    def _take(self) -> _Link:
        assert self._caught_link is not None, "nothing was caught"
        link, self._caught_link = self._caught_link, None
        link.holding = False
        return link

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for writer in self._writers:
            writer.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _serve(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self.target)
        self._writers.update((client_writer, up_writer))
        link = _Link(up_writer)
        down = asyncio.create_task(self._pump(up_reader, client_writer))
        self._tasks.add(down)
        try:
            while chunk := await client_reader.read(65536):
                if not link.holding and self.armed and NEEDLE in chunk:
                    self.armed = False
                    link.holding = True
                    self._caught_link = link
                    self.caught.set()
                if link.holding:
                    link.held += chunk
                    continue
                up_writer.write(chunk)
                await up_writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            if not link.holding:  # a caught link stays open until the test drops or delivers it
                up_writer.close()
            client_writer.close()

    @staticmethod
    async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            while chunk := await reader.read(65536):
                writer.write(chunk)
                await writer.drain()
