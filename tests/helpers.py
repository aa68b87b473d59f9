"""Helpers for testing code built on the consumers: events to publish, scratch keys, and waiting without sleeps.

Downstream services can use them in their own tests::

    async with scratch_stream(redis) as stream:
        await redis.xadd(stream, encode_entry(make_event(value_usd=Decimal("250000"))))
        await wait_until(lambda: len(seen) == 1, message="the handler saw the event")
"""

from __future__ import annotations

import asyncio
import inspect
import itertools
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from decimal import Decimal
from typing import Any

from aiohttp import web
from redis.asyncio import Redis

from schemas import LiquidationEvent

_serial = itertools.count(1)


def make_event(**overrides: Any) -> LiquidationEvent:
    """A plausible liquidation with a fresh transaction hash; ``overrides`` replace any field."""
    n = next(_serial)
    fields: dict[str, Any] = {
        "tx_hash": "0x" + uuid.uuid4().hex + f"{n:032x}",
        "coin": "BTC",
        "liquidation_side": "long",
        "price": Decimal("97000.5"),
        "size": Decimal("2"),
        "value_usd": Decimal("194001"),
        "liquidated_user": "0x" + f"{n:040x}",
        "timestamp": int(time.time() * 1000),
        "method": "market",
        "tids": (n,),
        "fills": 1,
    }
    fields.update(overrides)
    return LiquidationEvent(**fields)


async def wait_until(
    condition: Callable[[], bool | Awaitable[bool]],
    *,
    within: float = 5.0,
    interval: float = 0.01,
    message: str = "condition",
) -> None:
    """Poll ``condition`` (sync or async) until true; after ``within`` seconds, fail naming ``message``."""
    deadline = time.monotonic() + within
    while True:
        result = condition()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within:g} s waiting for {message}")
        await asyncio.sleep(interval)


def scratch_prefix() -> str:
    """A key prefix no other test run uses: ``test:<hex>``."""
    return f"test:{uuid.uuid4().hex}"


async def delete_prefix(redis: Redis, prefix: str) -> int:
    """Delete every key under ``prefix`` (SCAN, not KEYS: safe on a shared Redis)."""
    deleted = 0
    batch: list[Any] = []
    async for key in redis.scan_iter(match=f"{prefix}*", count=1000):
        batch.append(key)
        if len(batch) >= 500:
            deleted += await redis.delete(*batch)
            batch = []
    if batch:
        deleted += await redis.delete(*batch)
    return int(deleted)


@asynccontextmanager
async def scratch_stream(redis: Redis) -> AsyncIterator[str]:
    """A stream name ``test:<hex>:liq`` whose keys (stream, dead letters, markers, snapshots) are deleted after."""
    prefix = scratch_prefix()
    try:
        yield f"{prefix}:liq"
    finally:
        await delete_prefix(redis, prefix)


class FakeWebhooks:
    """A local HTTP server standing in for Telegram, Discord, Slack or a webhook: records JSON POSTs to any path and
    fails the next N of them on request. It keeps no access log, since paths may hold tokens.

        async with FakeWebhooks() as hooks:
            hooks.fail_next(2)
            ...  # point a sink at hooks.url + "/bot<token>/sendMessage"
            assert len(hooks.accepted) == 1
    """

    def __init__(self) -> None:
        self.received: list[tuple[str, Any]] = []
        """Every request: (path, JSON body)."""
        self.accepted: list[tuple[str, Any]] = []
        """The requests answered with success."""
        self._failures: list[tuple[int, Any, dict[str, str]]] = []
        self._runner: web.AppRunner | None = None
        self.url = ""

    def fail_next(self, times: int, status: int = 500, body: Any = None, headers: dict[str, str] | None = None) -> None:
        """Answer the next ``times`` requests with ``status`` (and a JSON ``body`` echoing the path by default)."""
        self._failures.extend([(status, body, headers or {})] * times)

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.received.append((request.path, body))
        if self._failures:
            status, reply, headers = self._failures.pop(0)
            payload = reply if reply is not None else {"ok": False, "description": f"failing {request.path}"}
            return web.json_response(payload, status=status, headers=headers)
        self.accepted.append((request.path, body))
        return web.json_response({"ok": True})

    async def start(self) -> str:
        app = web.Application()
        app.router.add_post("/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        self.url = f"http://{host}:{port}"
        return self.url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeWebhooks:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
