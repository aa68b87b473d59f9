"""Shared fixtures: an isolated corner of the real Redis, private redis-servers, and the fake exchange."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import hypothesis
import pytest
import redis
import redis.asyncio as aioredis

from producer.simulation.fake_exchange import FakeHyperliquid
from tests.helpers import REDIS_URL, FakeWebhooks, RedisServer

# Fixtures with modules of their own: a Redis Cluster and a Sentinel set-up per test module, the slot guard.
pytest_plugins = ["tests.faults.redis_cluster", "tests.slot_guard"]

# Machines here are shared and noisy: a property test's example may take long for reasons of its own, which says
# nothing about the property. No per-example deadline; the pytest timeout still bounds a test.
hypothesis.settings.register_profile("shared-machines", deadline=None)
hypothesis.settings.load_profile("shared-machines")


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
