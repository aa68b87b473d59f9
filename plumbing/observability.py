"""Prometheus metrics and a health check over HTTP, for any of our processes.

``/metrics`` serves a registry in Prometheus' text format; ``/healthz`` answers 200 while the process makes
progress and 503 once it has not for too long (no successful poll, no successful read), so an orchestrator can
restart a process that is alive but stuck. The process supplies the check; this module only serves it.

A process's background tasks (a report timer, a lag refresher) run beside its main loop, and asyncio keeps the
exception of one that dies until someone awaits it: at shutdown, if ever. :class:`TaskWatch` starts them instead,
logs a death the moment it happens and turns the health check 503 for good, so a dead task is a restart, not a
process that looks fine while doing only half its job.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

import msgspec
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from plumbing.errors import MetricsUnavailable

log = logging.getLogger(__name__)


@dataclass
class Progress:
    """When the process last did its job; the health check compares it with a deadline."""

    stale_after: float
    clock: Callable[[], float] = time.monotonic
    last_success: float | None = None
    started: float = 0.0
    problem: str | None = None
    """A known reason the process cannot do its job (nothing to read where it was pointed): unhealthy at once."""

    def __post_init__(self) -> None:
        self.started = self.clock()

    def succeeded(self) -> None:
        self.last_success = self.clock()

    def health(self) -> tuple[bool, dict[str, object]]:
        """Healthy while the last success (or the start, before any) is younger than ``stale_after``."""
        reference = self.last_success if self.last_success is not None else self.started
        age = self.clock() - reference
        detail: dict[str, object] = {
            "seconds_since_success": None if self.last_success is None else round(age, 3),
            "stale_after": self.stale_after,
        }
        if self.problem is not None:
            detail["problem"] = self.problem
            return False, detail
        return age <= self.stale_after, detail


Health = Callable[[], tuple[bool, dict[str, object]]]
"""A health check: healthy or not, and the details ``/healthz`` shows."""


class TaskWatch:
    """Starts a process's background tasks; one that ends with an exception fails the process's health.

    A task that returns or is cancelled ended on purpose (the process is stopping). One that raises is logged at
    once, in one line (the traceback at DEBUG), and :meth:`health` stays unhealthy from then on.
    """

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[None]] = set()
        self.deaths: list[str] = []
        """``name: error`` of every task that died, in order."""

    def start(self, work: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
        task = asyncio.create_task(work, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._ended)
        return task

    def _ended(self, task: asyncio.Task[None]) -> None:
        if task.cancelled() or task.exception() is None:
            return
        exc = task.exception()
        death = f"{task.get_name()}: {type(exc).__name__}: {exc}"
        self.deaths.append(death)
        log.error("background task %s died; /healthz now reports 503 (restart the process)", death[:500])
        log.debug("the background task's traceback", exc_info=exc)

    def health(self) -> tuple[bool, dict[str, object]]:
        if not self.deaths:
            return True, {}
        return False, {"dead_tasks": list(self.deaths)}

    async def join(self) -> None:
        """Wait for every task to end; a death was already reported, so it is not raised again here."""
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def cancel(self) -> None:
        for task in self._tasks:
            task.cancel()
        await self.join()


def all_healthy(*checks: Health) -> Health:
    """One health check out of several: healthy when all are, with all their details."""

    def health() -> tuple[bool, dict[str, object]]:
        ok, detail = True, {}
        for check in checks:
            one_ok, one_detail = check()
            ok = ok and one_ok
            detail.update(one_detail)
        return ok, detail

    return health


MAX_CONNECTIONS = 32
"""Open connections the server keeps at once; more are closed on arrival. A scraper needs one or two: the cap keeps
a flood of connections from using up the process's file descriptors, which its real work (Redis, the exchange)
needs."""
HEADER_TIMEOUT_S = 5.0
"""Seconds a client has to send its whole request head; a half-sent request is dropped after that."""
MAX_HEAD_BYTES = 8_192


def parse_request_head(head: bytes) -> tuple[str, str] | None:
    """(method, path without query) of an HTTP/1.x request head, or None if it is not one."""
    line = head.split(b"\r\n", 1)[0].decode("latin-1")
    parts = line.split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        return None
    return parts[0], parts[1].split("?", 1)[0]


def http_response(status: int, reason: str, content_type: str, body: bytes) -> bytes:
    head = (
        f"HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n"
    )
    return head.encode("latin-1") + body


class ObservabilityServer:
    """A deliberately small HTTP server: GET only, one request per connection, bounded in time and in connections.

    It binds 127.0.0.1 unless told otherwise (a container sets ``METRICS_HOST=0.0.0.0`` on purpose). An error while
    accepting (out of file descriptors) is logged by asyncio and accepting resumes; it never ends the process.
    """

    def __init__(
        self,
        registry: CollectorRegistry,
        health: Health,
        *,
        host: str = "127.0.0.1",
        port: int = 9100,
        max_connections: int = MAX_CONNECTIONS,
        header_timeout_s: float = HEADER_TIMEOUT_S,
    ) -> None:
        self.registry = registry
        self.health = health
        self.host = host
        self.port = port
        self.max_connections = max_connections
        self.header_timeout_s = header_timeout_s
        self.open_connections = 0
        self.refused_connections = 0
        self._server: asyncio.Server | None = None

    async def start(self) -> int:
        """Serve; returns the bound port (useful with port 0). A port taken or an address not on this host raises
        :class:`MetricsUnavailable`, one line naming the settings to change, for every process alike."""
        try:
            self._server = await asyncio.start_server(self._serve, self.host, self.port, limit=MAX_HEAD_BYTES)
        except OSError as exc:
            raise MetricsUnavailable(self.host, self.port, exc) from exc
        self.port = self._server.sockets[0].getsockname()[1]
        log.info("metrics on http://%s:%d/metrics, health on /healthz", self.host, self.port)
        return self.port

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._server.wait_closed(), 1.0)
            self._server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.open_connections >= self.max_connections:
            self.refused_connections += 1
            if self.refused_connections in (1, 10, 100) or self.refused_connections % 1000 == 0:
                log.warning(
                    "metrics server: %d connections open already, closing new ones (%d so far)",
                    self.open_connections,
                    self.refused_connections,
                )
            writer.transport.abort()
            return
        self.open_connections += 1
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), self.header_timeout_s)
            writer.write(self._answer(parse_request_head(head)))
            await asyncio.wait_for(writer.drain(), self.header_timeout_s)
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError, ValueError):
            pass  # slow, truncated, oversized or gone: the client gets nothing more
        finally:
            self.open_connections -= 1
            writer.transport.abort()

    def _answer(self, request: tuple[str, str] | None) -> bytes:
        if request is None:
            return http_response(400, "Bad Request", "text/plain", b"bad request\n")
        method, path = request
        if method not in ("GET", "HEAD"):
            return http_response(405, "Method Not Allowed", "text/plain", b"GET only\n")
        if path == "/metrics":
            return http_response(200, "OK", CONTENT_TYPE_LATEST, self._metrics())
        if path == "/healthz":
            status, body = self._healthz()
            return http_response(status, "OK" if status == 200 else "Service Unavailable", "application/json", body)
        return http_response(404, "Not Found", "text/plain", b"not found: try /metrics or /healthz\n")

    def _metrics(self) -> bytes:
        return generate_latest(self.registry)

    def _healthz(self) -> tuple[int, bytes]:
        ok, detail = self.health()
        body = msgspec.json.encode({"status": "ok" if ok else "stuck", **detail})
        return (200 if ok else 503), body
