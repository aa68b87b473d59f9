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
import logging
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

import msgspec
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

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


class ObservabilityServer:
    def __init__(
        self,
        registry: CollectorRegistry,
        health: Health,
        *,
        host: str = "0.0.0.0",
        port: int = 9100,
    ) -> None:
        self.registry = registry
        self.health = health
        self.host = host
        self.port = port
        self._runner: web.AppRunner | None = None

    async def start(self) -> int:
        """Serve; returns the bound port (useful with port 0)."""
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/healthz", self._healthz)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        self.port = self._runner.addresses[0][1]
        log.info("metrics on http://%s:%d/metrics, health on /healthz", self.host, self.port)
        return self.port

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _metrics(self, _: web.Request) -> web.Response:
        body = generate_latest(self.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def _healthz(self, _: web.Request) -> web.Response:
        ok, detail = self.health()
        body = msgspec.json.encode({"status": "ok" if ok else "stuck", **detail})
        return web.Response(body=body, status=200 if ok else 503, content_type="application/json")
