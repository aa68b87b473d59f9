"""Shared fixtures: an isolated corner of the real Redis, private redis-servers, and the fake exchange."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import hypothesis
import pytest
import redis
import redis.asyncio as aioredis

from consumers.testing import FakeWebhooks
from producer.simulation.fake_exchange import FakeHyperliquid

REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")

# Fixtures with modules of their own: a Redis Cluster and a Sentinel set-up per test module, the slot guard.
pytest_plugins = ["tests.faults.redis_cluster", "tests.slot_guard"]

# Machines here are shared and noisy: a property test's example may take long for reasons of its own, which says
# nothing about the property. No per-example deadline; the pytest timeout still bounds a test.
hypothesis.settings.register_profile("shared-machines", deadline=None)
hypothesis.settings.load_profile("shared-machines")


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


@pytest.fixture
def prefix() -> Iterator[str]:
    """A unique key prefix; every key containing it is deleted after the test."""
    tag = f"test:{uuid.uuid4().hex[:12]}"
    yield tag
    client = redis.Redis.from_url(REDIS_URL)
    keys = list(client.scan_iter(match=f"*{tag}*", count=1000))
    if keys:
        client.delete(*keys)
    client.close()


@pytest.fixture
def stream(prefix: str) -> str:
    return f"{prefix}:liquidations"


@pytest.fixture
async def redis_client() -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(REDIS_URL)
    yield client
    await client.aclose()


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


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path)
    server.start()
    yield server
    server.kill()


@pytest.fixture
async def fake_hl() -> AsyncIterator[FakeHyperliquid]:
    fake = FakeHyperliquid()
    await fake.start()
    yield fake
    await fake.stop()


@pytest.fixture(name="redis")
def redis_alias(redis_client: aioredis.Redis) -> aioredis.Redis:
    """The alerter tests' name for the shared client."""
    return redis_client


@pytest.fixture
async def hooks() -> AsyncIterator[FakeWebhooks]:
    """A local webhook receiver (Telegram, Discord, Slack, generic) that can be told to fail."""
    async with FakeWebhooks() as fake:
        yield fake


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client
