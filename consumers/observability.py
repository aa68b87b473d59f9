"""Prometheus metrics and a health check over HTTP, for any of our processes.

``/metrics`` serves a registry in Prometheus' text format; ``/healthz`` answers 200 while the process makes
progress and 503 once it has not for too long (no successful poll, no successful read), so an orchestrator can
restart a process that is alive but stuck. The process supplies the check; this module only serves it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

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


class ObservabilityServer:
    def __init__(
        self,
        registry: CollectorRegistry,
        health: Callable[[], tuple[bool, dict[str, object]]],
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
