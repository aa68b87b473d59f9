"""A webhook receiver that counts alerts per event and can leave one path's requests unanswered, be down (answer
every alert with a 5xx), or redirect every alert elsewhere.

To kill an alerter *mid-batch* for certain, its sink must be busy when the kill lands: requests to a held path
are received (the alerter is now blocked inside its handler, with its batch pending) and never answered. Each
alerter replica gets its own path, so only the doomed one blocks. Only answered (2xx) deliveries count as
accepted: that is what "the alert went out" means to the alerter. Summaries are kept apart (``summaries``), and every
request of any method counts in ``requests`` (a followed redirect shows up there, as a GET or a POST).
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import Counter
from typing import Any

from aiohttp import web

from schemas import event_key


def alert_key(body: dict[str, Any]) -> str | None:
    """The event key of a webhook alert (its payload carries the event), or None for a summary."""
    event = body.get("event")
    if not isinstance(event, dict):
        return None
    return event_key(event["tx_hash"], event["coin"], event["liquidated_user"], event["timestamp"])


class HoldingWebhooks:
    def __init__(self) -> None:
        self.url = ""
        self.accepted: Counter[str] = Counter()
        """Alerts answered with 200, by event key."""
        self.accepted_at: list[float] = []
        """When each accepted alert arrived (monotonic clock), to measure how long alerting stalled."""
        self.held: list[str] = []
        """Keys of the alerts received on a held path (never answered)."""
        self.hold_paths: set[str] = set()
        self.down_status: int | None = None
        """While set, every alert is answered with this status (an outage)."""
        self.refused = 0
        self.redirect: tuple[int, str] | None = None
        """While set, every alert is answered with this status and ``Location``."""
        self.redirected = 0
        self.summaries: list[dict[str, Any]] = []
        """Summary payloads answered with 200."""
        self.requests: list[tuple[str, str]] = []
        """(method, path) of every request received."""
        self._release = asyncio.Event()
        self._runner: web.AppRunner | None = None

    async def start(self) -> str:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        host, port = self._runner.addresses[0][:2]
        self.url = f"http://{host}:{port}"
        return self.url

    def longest_silence(self, since: float) -> float:
        """The longest stretch from ``since`` to the last accepted alert with no alert accepted."""
        marks = [since, *sorted(t for t in self.accepted_at if t >= since)]
        return max((b - a for a, b in itertools.pairwise(marks)), default=0.0)

    async def stop(self) -> None:
        self._release.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _handle(self, request: web.Request) -> web.Response:
        self.requests.append((request.method, request.path))
        if request.method != "POST":
            return web.json_response({"ok": True})  # what a followed 302 would "succeed" with
        body = await request.json()
        key = alert_key(body)
        if request.path in self.hold_paths:
            self.held.append(key or "summary")
            await self._release.wait()
            return web.json_response({"ok": False}, status=503)
        if self.down_status is not None:
            self.refused += 1
            return web.json_response({"ok": False}, status=self.down_status)
        if self.redirect is not None:
            self.redirected += 1
            status, location = self.redirect
            return web.json_response({"moved": location}, status=status, headers={"Location": location})
        if key is not None:
            self.accepted[key] += 1
            self.accepted_at.append(time.monotonic())
        elif body.get("kind") == "summary":
            self.summaries.append(body)
        return web.json_response({"ok": True})
