"""What several test modules share: events to publish, scratch keys, waiting without sleeps, a webhook receiver,
the producer in process and as a subprocess, and reads of what landed in the stream.

Fixtures stay in conftest.py; fault injection in tests/faults; scenarios with known truth in tests/support.
Test modules import from here, never from one another, so a test module can move or go without breaking others::

    async with scratch_stream(redis) as stream:
        await redis.xadd(stream, encode_entry(make_event(value_usd=Decimal("250000"))))
        await wait_until(lambda: len(seen) == 1, message="the handler saw the event")
"""

from __future__ import annotations

import asyncio
import inspect
import itertools
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import replace
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
import pytest
import redis
import redis.asyncio as aioredis
from aiohttp import web
from redis.asyncio import Redis

from consumers import Runner
from producer.client import HyperliquidClient, RetryPolicy
from producer.config import ProducerConfig
from producer.exchange_types import Fill
from producer.ratelimit import WeightBudget
from producer.service import Producer
from producer.simulation.fake_exchange import FakeHyperliquid
from producer.simulation.scenarios import DEMO_WATCHLIST
from producer.sources.node import NodeSource, NodeWindow
from schemas import AdlEvent, Event, LiquidationEvent, decode_entry
from tests.faults.invariants import raw_entries

REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")

_serial = itertools.count(1)


async def terminate(proc: asyncio.subprocess.Process, within: float = 15) -> tuple[bytes, bytes]:
    """SIGTERM a process and collect what it printed; a process that will not stop is killed (and fails the test
    on its exit code), so no test leaves one behind."""
    try:
        proc.send_signal(signal.SIGTERM)
        out, err = await asyncio.wait_for(proc.communicate(), within)
        return out or b"", err or b""
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RedisServer:
    """A redis-server of the test's own, on a free port, that the test may kill and restart."""

    def __init__(self, workdir: Path, *extra: str, password: str | None = None) -> None:
        self.port = free_port()
        self.workdir = workdir
        self.password = password
        self.extra = (*extra, "--requirepass", password) if password else extra
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.fail("redis-server is not installed; .ci/run installs it")
        self.proc = subprocess.Popen(
            [
                binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.workdir),
                *self.extra,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                if redis.Redis(port=self.port, password=self.password, socket_connect_timeout=0.2).ping():
                    return
            except redis.exceptions.ConnectionError:
                time.sleep(0.05)
        self.kill()
        pytest.fail(f"redis-server on port {self.port} did not start")

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None


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


YEARS = 10 * 365 * 24 * 3600.0


class ManualClock:
    """A clock that moves only when the test moves it (``clock.now += 5``): waits and windows read exactly."""

    def __init__(self, now: float = 0.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def config_for(fake: FakeHyperliquid, stream: str, **overrides: object) -> ProducerConfig:
    base = ProducerConfig(
        redis_url=REDIS_URL,
        api_url=fake.url,
        source="fills",
        watchlist=DEMO_WATCHLIST,
        stream=stream,
        lookback=YEARS,
        poll_interval=0.05,
        http_attempts=2,
        weight_per_minute=1_000_000,
        coverage=False,  # its own info requests and connection would take the faults a test queues for the source
        complete=False,  # tests of what a watchlist sees compare with the watched legs; tests/test_completion.py
    )
    return replace(base, **overrides)  # type: ignore[arg-type]


def make_producer(config: ProducerConfig, *, budget: bool = False) -> Producer:
    """The producer with quick retries; with ``budget``, its client keeps to ``config.weight_per_minute`` as the
    producer's own would (tests of the flow leave the budget out, to run at full speed)."""
    client = HyperliquidClient(
        config.api_url,
        timeout=2,
        retry=RetryPolicy(attempts=config.http_attempts, base_delay=0.01, max_delay=0.02),
        budget=WeightBudget(config.weight_per_minute) if budget else None,
        rng=random.Random(1),
    )
    return Producer(config, client=client)


async def stream_events(stream: str, url: str = REDIS_URL) -> list[Event]:
    client = aioredis.Redis.from_url(url)
    try:
        return [decode_entry(fields) for _, fields in raw_entries(await client.xrange(stream))]
    finally:
        await client.aclose()


async def stream_liquidations(stream: str, url: str = REDIS_URL) -> list[LiquidationEvent]:
    return [e for e in await stream_events(stream, url) if isinstance(e, LiquidationEvent)]


ROOT = Path(__file__).resolve().parent.parent


async def start_producer(*args: str, env: dict[str, str] | None = None) -> asyncio.subprocess.Process:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("HL_", "LIQ_", "REDIS_URL"))}
    full_env.update(env or {})
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "producer",
        *args,
        cwd=ROOT,
        env=full_env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )


def producer_env(fake: FakeHyperliquid, stream: str, redis_url: str = REDIS_URL) -> dict[str, str]:
    return {
        "REDIS_URL": redis_url,
        "HL_API_URL": fake.url,
        "HL_SOURCE": "fills",
        "LIQ_STREAM": stream,
        "HL_WATCHLIST": ",".join(DEMO_WATCHLIST),
        "HL_LOOKBACK": str(10 * 365 * 86400),
        "HL_WEIGHT_PER_MINUTE": "100000",
        "HL_POLL_INTERVAL": "0.2",
        "HL_COVERAGE": "false",  # its info requests and connection would take faults queued for the source
        "HL_COMPLETE": "false",  # the truth compared with is the watched legs'; tests/test_completion.py completes
    }


REPLAY_ALL = NodeWindow(start_ms=0, follow=False)


NOW_MS = int(time.time() * 1000)
"""The clock the tests poll with: the scenarios' hours (October 2025) are in its past."""


async def drain(source: NodeSource, now_ms: int = NOW_MS) -> tuple[list[Event], dict[str, str]]:
    """Poll until the source has nothing more right now; the events and the last checkpoint."""
    events: list[Event] = []
    checkpoint: dict[str, str] = {}
    for _ in range(10_000):
        result = await source.poll(now_ms)
        events.extend(result.events)
        checkpoint.update(result.checkpoint)
        if not result.more:
            return events, checkpoint
    raise AssertionError("the source never caught up")


async def healthz(port: int) -> int:
    """The status ``/healthz`` answers on ``port``."""
    async with aiohttp.ClientSession() as session, session.get(f"http://127.0.0.1:{port}/healthz") as resp:
        return resp.status


async def scrape(port: int) -> dict[str, float]:
    """The producer's /metrics, as ``name{labels}`` -> value."""
    async with aiohttp.ClientSession() as session, session.get(f"http://127.0.0.1:{port}/metrics") as resp:
        text = await resp.text()
    values = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            values[name] = float(value)
    return values


def api_errors(metrics: dict[str, float], kind: str) -> int:
    return int(metrics.get(f'hl_producer_api_errors_total{{kind="{kind}"}}', 0))


LIQUIDATED = "0xbb8b801eeddaa7061ae171041ec77516313f2921"


TX = "0xe6838c8a3dba3578e7fd044214d3e2020481006fd8bd544a8a4c37dcfcbe0f63"


def fill(**overrides: Any) -> Fill:
    """A maker's fill of a market liquidation, as the API returned it (xyz:CRWV sample), with overrides."""
    raw: dict[str, Any] = {
        "coin": "xyz:CRWV",
        "px": "116.86",
        "sz": "2.47",
        "side": "A",
        "time": 1786628572099,
        "startPosition": "-143.54",
        "dir": "Open Short",
        "closedPnl": "0.0",
        "hash": TX,
        "oid": 515445455983,
        "crossed": False,
        "fee": "0.008659",
        "tid": 711626751774561,
        "liquidation": {"liquidatedUser": LIQUIDATED, "markPx": "116.84", "method": "market"},
        "feeToken": "USDC",
        "twapId": None,
    }
    raw.update(overrides)
    return msgspec.json.decode(msgspec.json.encode(raw), type=Fill)


class Recorder:
    """A handler that records keys, optionally failing or hanging on chosen events."""

    def __init__(self, *, fail: Callable[[Event, int], bool] | None = None, delay: float = 0.0) -> None:
        self.keys: list[str] = []
        self.calls: dict[str, int] = {}
        self.fail = fail
        self.delay = delay

    async def __call__(self, event: Event) -> None:
        n = self.calls[event.key] = self.calls.get(event.key, 0) + 1
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.fail is not None and self.fail(event, n):
            raise RuntimeError(f"handler refuses {event.key} (call {n})")
        self.keys.append(event.key)


async def stop(r: Runner, task: asyncio.Task[None]) -> None:
    r.stop()
    await asyncio.wait_for(task, 5)


def events(n: int, start: int = 0) -> list[LiquidationEvent]:
    return [
        LiquidationEvent(
            tx_hash=f"0x{i:064x}",
            coin="BTC",
            liquidation_side="long",
            price=Decimal("64142.0"),
            size=Decimal("0.00052"),
            value_usd=Decimal("33.35384"),
            liquidated_user="0x" + "ab" * 20,
            timestamp=1_787_047_599_030 + i,
            method="market",
            tids=(i,),
            fills=1,
        )
        for i in range(start, start + n)
    ]


def make_adl(**overrides: object) -> AdlEvent:
    fields: dict[str, object] = dict(
        tx_hash="0x922ada1583e0175a93a4042d3a6101010100f1fb1ee3362c35f3856842e3f145",
        coin="AVAX",
        price=Decimal("22.075"),
        size=Decimal("28.53"),
        value_usd=Decimal("629.79975"),
        timestamp=1760130964831,
        mark_price=Decimal("22.025"),
        tids=(771334864158847,),
        fills=1,
        source="node",
        observed_via=("node",),
        deleveraged_user="0xe92d2041199b18f611b137457f3acee8bedb22d3",
        position_side="short",
        liquidated_user="0x2e3d94f0562703b25c83308a05046ddaf9a8dd14",
    )
    fields.update(overrides)
    return AdlEvent(**fields)  # type: ignore[arg-type]
