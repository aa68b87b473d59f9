"""Metrics and health as a scraper sees them."""

from __future__ import annotations

import asyncio
import os
import re
import signal

import aiohttp
import pytest
from prometheus_client import CollectorRegistry

from plumbing.observability import ObservabilityServer, Progress, TaskWatch, all_healthy, parse_request_head
from producer.service import Producer
from producer.simulation.fake_exchange import RATE_LIMITED, SERVER_ERROR, FakeHyperliquid
from producer.simulation.scenarios import DEMO_WATCHLIST, demo_scenario
from tests.helpers import RedisServer, config_for, free_port, make_producer, producer_env, start_producer
from tests.support.truth import visible_from


def sample(text: str, name: str, labels: str = "") -> float:
    match = re.search(rf"^{re.escape(name)}{re.escape(labels)} ([0-9.e+-]+)$", text, re.M)
    assert match, f"{name}{labels} not in the scrape"
    return float(match.group(1))


def test_health_turns_stuck_when_nothing_succeeds_for_too_long() -> None:
    now = [0.0]
    progress = Progress(stale_after=30, clock=lambda: now[0])
    assert progress.health()[0]  # just started: give it time
    now[0] = 31
    ok, detail = progress.health()
    assert not ok and detail["seconds_since_success"] is None
    progress.succeeded()
    now[0] = 50
    ok, detail = progress.health()
    assert ok and detail["seconds_since_success"] == 19


async def test_scrape_counts_polls_events_errors_and_publishes(fake_hl: FakeHyperliquid, stream: str) -> None:
    scenario = demo_scenario(seed=31)
    fake_hl.load(scenario)
    fake_hl.fail_next(RATE_LIMITED, times=1)
    fake_hl.fail_next(SERVER_ERROR, times=1)
    producer = make_producer(config_for(fake_hl, stream))
    server = ObservabilityServer(producer.metrics.registry, producer.progress.health, host="127.0.0.1", port=0)
    port = await server.start()
    try:
        await producer.poll_once()
        await producer.poll_once()
        async with aiohttp.ClientSession() as session:
            async with session.get(f"http://127.0.0.1:{port}/metrics") as resp:
                assert resp.status == 200
                text = await resp.text()
            async with session.get(f"http://127.0.0.1:{port}/healthz") as resp:
                assert resp.status == 200
                assert (await resp.json())["status"] == "ok"
    finally:
        await server.stop()
        await producer.close()
    expected = len(visible_from(scenario, DEMO_WATCHLIST))
    assert sample(text, "hl_producer_polls_total", '{source="fills"}') == 2
    assert sample(text, "hl_producer_events_published_total", '{type="liquidation"}') == expected
    assert sample(text, "hl_producer_api_errors_total", '{kind="rate_limited"}') == 1
    assert sample(text, "hl_producer_api_errors_total", '{kind="server_errors"}') == 1
    # Two attempts per request here: the 429 was retried, the 500 that followed gave up on that address for a poll.
    assert sample(text, "hl_producer_api_retries_total") == 1
    assert sample(text, "hl_producer_poll_errors_total") == 1
    assert sample(text, "hl_producer_redis_up") == 1
    assert sample(text, "hl_producer_pending_events") == 0
    assert sample(text, "hl_producer_publish_seconds_count") >= 1


async def test_healthz_fails_while_redis_is_away(fake_hl: FakeHyperliquid, redis_server: RedisServer) -> None:
    fake_hl.load(demo_scenario(seed=32))
    producer = make_producer(config_for(fake_hl, "liq", redis_url=redis_server.url, health_stale_after=0.2))
    server = ObservabilityServer(producer.metrics.registry, producer.progress.health, host="127.0.0.1", port=0)
    port = await server.start()
    try:
        redis_server.kill()
        await producer.poll_once()
        await asyncio.sleep(0.3)
        async with aiohttp.ClientSession() as session, session.get(f"http://127.0.0.1:{port}/healthz") as resp:
            assert resp.status == 503
            assert (await resp.json())["status"] == "stuck"
    finally:
        await server.stop()
        await producer.close()
    assert producer.metrics.redis_up._value.get() == 0


async def test_the_producer_process_serves_metrics_on_the_configured_port(
    fake_hl: FakeHyperliquid, stream: str
) -> None:
    fake_hl.load(demo_scenario(seed=33))
    port = free_port()
    proc = await start_producer(
        env={**producer_env(fake_hl, stream), "METRICS_PORT": str(port), "METRICS_HOST": "127.0.0.1"}
    )
    try:
        text = ""
        async with aiohttp.ClientSession() as session:
            for _ in range(200):
                try:
                    async with session.get(f"http://127.0.0.1:{port}/metrics") as resp:
                        text = await resp.text()
                    if "hl_producer_polls_total{" in text:
                        break
                except aiohttp.ClientConnectionError:
                    pass
                await asyncio.sleep(0.05)
        assert sample(text, "hl_producer_polls_total", '{source="fills"}') >= 1
    finally:
        proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(proc.wait(), 15)
    assert proc.returncode == 0


def test_metrics_port_must_be_a_port() -> None:
    from plumbing.errors import ConfigError
    from producer.config import load_config

    with pytest.raises(ConfigError, match="METRICS_PORT"):
        load_config([], {**os.environ, "METRICS_PORT": "70000"})


def test_producer_uses_its_config_for_health(fake_hl: FakeHyperliquid, stream: str) -> None:
    producer = Producer(config_for(fake_hl, stream, health_stale_after=5))
    assert producer.progress.stale_after == 5


async def test_redis_up_follows_redis_on_a_quiet_market(fake_hl: FakeHyperliquid, redis_server: RedisServer) -> None:
    """Nothing to publish for hours must not read as "Redis down" on a dashboard, nor hide a real outage."""
    producer = make_producer(config_for(fake_hl, "liq", redis_url=redis_server.url))  # the fake has no fills
    server = ObservabilityServer(producer.metrics.registry, producer.progress.health, host="127.0.0.1", port=0)
    port = await server.start()

    async def redis_up() -> float:
        async with aiohttp.ClientSession() as session, session.get(f"http://127.0.0.1:{port}/metrics") as resp:
            return sample(await resp.text(), "hl_producer_redis_up")

    try:
        seen = []
        for step in ("up", "down", "back"):
            if step == "down":
                redis_server.kill()
            elif step == "back":
                redis_server.start()
            summary = await producer.poll_once()
            assert summary.published == 0
            seen.append(await redis_up())
    finally:
        await server.stop()
        await producer.close()
    assert seen == [1, 0, 1]


async def test_a_background_task_that_dies_is_logged_at_once_and_fails_health_for_good(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The stats report task died at its first report and nobody knew until SIGTERM: /healthz said 200."""
    tasks = TaskWatch()

    async def report() -> None:
        raise ArithmeticError("NaN in a sum")

    async def clean() -> None:
        return None

    tasks.start(clean(), "finishes")
    died = tasks.start(report(), "stats reports")
    await asyncio.wait({died})
    await asyncio.sleep(0)  # done callbacks run on the next turn of the loop
    assert "background task stats reports: ArithmeticError: NaN in a sum died" in caplog.text
    assert tasks.health() == (False, {"dead_tasks": ["stats reports: ArithmeticError: NaN in a sum"]})
    await tasks.join()  # already reported: not raised again at shutdown
    progress = Progress(stale_after=30)
    progress.succeeded()
    assert not all_healthy(progress.health, tasks.health)()[0]
    assert all_healthy(progress.health, TaskWatch().health)()[0]


async def test_the_metrics_server_bounds_connections_and_drops_half_sent_requests() -> None:
    """A slowloris must not hold a file descriptor for ever, nor a flood use them all up; scrapes still work after."""
    registry = CollectorRegistry()
    server = ObservabilityServer(
        registry, lambda: (True, {}), host="127.0.0.1", port=0, max_connections=4, header_timeout_s=0.3
    )
    port = await server.start()
    try:
        writers = []
        for _ in range(10):
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GET /metrics HTTP/1.1\r\n")
            writers.append(writer)
        await asyncio.sleep(0.1)
        assert server.open_connections == 4 and server.refused_connections == 6
        await asyncio.sleep(0.4)
        assert server.open_connections == 0, "half-sent requests dropped after the head timeout"
        async with aiohttp.ClientSession() as session, session.get(f"http://127.0.0.1:{port}/healthz") as resp:
            assert resp.status == 200 and (await resp.json())["status"] == "ok"
        for writer in writers:
            writer.close()
    finally:
        await server.stop()


def test_a_request_head_is_read_as_method_and_path() -> None:
    assert parse_request_head(b"GET /metrics?x=1 HTTP/1.1\r\nHost: a\r\n\r\n") == ("GET", "/metrics")
    assert parse_request_head(b"\x16\x03\x01 binary junk\r\n\r\n") is None


def test_the_default_bind_is_this_host_only() -> None:
    assert ObservabilityServer(CollectorRegistry(), lambda: (True, {})).host == "127.0.0.1"
