"""Consumer metrics and health as a scraper sees them: counters that move, the group's lag, /healthz that fails."""

from __future__ import annotations

import asyncio
import io
import os
import signal
import socket
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families
from redis.asyncio import Redis

from consumers import ConsumerConfig, Runner, RunnerSettings, connect
from consumers.alerter import StdoutSink
from consumers.alerter.config import load_alerter_config
from consumers.alerter.metrics import AlerterCollector
from consumers.alerter.service import Alerter
from consumers.config import ObservabilitySettings
from consumers.metrics import serve_metrics
from consumers.stats.config import load_stats_config
from plumbing.errors import ConfigError, MetricsUnavailable
from plumbing.redis_connect import RedisClient
from schemas import AdlEvent, Event, encode_entry
from tests.helpers import REDIS_URL, RedisServer, free_port, make_event, wait_until

ROOT = Path(__file__).resolve().parent.parent

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


async def scrape(port: int) -> Samples:
    async with aiohttp.ClientSession() as session, session.get(f"http://127.0.0.1:{port}/metrics") as resp:
        assert resp.status == 200
        text = await resp.text()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


async def health(port: int) -> tuple[int, dict[str, Any]]:
    async with aiohttp.ClientSession() as session, session.get(f"http://127.0.0.1:{port}/healthz") as resp:
        return resp.status, await resp.json()


def value(samples: Samples, name: str, **labels: str) -> float | None:
    """The sample named ``name`` whose labels include ``labels``; None if there is none."""
    wanted = set(labels.items())
    found = [v for (n, have), v in samples.items() if n == name and wanted <= have]
    assert len(found) <= 1, f"{name}{labels} matches {len(found)} samples"
    return found[0] if found else None


def adl() -> AdlEvent:
    return AdlEvent(
        tx_hash="0x" + os.urandom(32).hex(),
        coin="ETH",
        price=Decimal(3000),
        size=Decimal(2),
        value_usd=Decimal(6000),
        timestamp=1_732_495_402_000,
        deleveraged_user="0x" + "11" * 20,
        position_side="short",
        liquidated_user="0x" + "22" * 20,
    )


async def publish(redis: RedisClient, stream: str, events: list[Event]) -> None:
    async with redis.pipeline(transaction=False) as pipe:
        for event in events:
            pipe.xadd(stream, encode_entry(event))  # type: ignore[arg-type]
        await pipe.execute()


# --- settings --------------------------------------------------------------------------------------------------


def test_every_consumer_process_has_the_metrics_settings_with_metrics_off_by_default() -> None:
    """Off, and bound to this host only when turned on: exposing it is a choice (compose makes it)."""
    off = ObservabilitySettings(metrics_port=0, metrics_host="127.0.0.1", health_stale_after=120.0)
    assert load_alerter_config([], {}).consumer.observability == off
    assert load_stats_config([], {}).consumer.observability == off
    config = load_stats_config(["--metrics-port", "9464"], {"METRICS_HOST": "0.0.0.0", "HEALTH_STALE_AFTER": "30"})
    assert config.consumer.observability == ObservabilitySettings(
        metrics_port=9464, metrics_host="0.0.0.0", health_stale_after=30.0
    )


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"METRICS_PORT": "70000"}, r"--metrics-port / METRICS_PORT='70000': must be a port number"),
        ({"HEALTH_STALE_AFTER": "0"}, r"--health-stale-after / HEALTH_STALE_AFTER='0': must be a number greater"),
        (
            {"METRICS_PORT": "9464", "HEALTH_STALE_AFTER": "4", "LIQ_BLOCK_MS": "5000"},
            r"HEALTH_STALE_AFTER \(4 s\) must be longer than one read block",
        ),
    ],
)
def test_a_bad_metrics_setting_is_named(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_stats_config([], env)


async def test_a_taken_port_is_our_error_naming_the_setting(redis_client: Redis, stream: str) -> None:
    runner = Runner(redis_client, stream=stream, group="g", consumer="c", handler=_ignore)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        settings = ObservabilitySettings(metrics_port=port, metrics_host="127.0.0.1")
        with pytest.raises(MetricsUnavailable, match=rf"127\.0\.0\.1:{port} .*--metrics-port / METRICS_PORT"):
            async with serve_metrics(runner, settings):
                pass


async def _ignore(event: Event) -> None:
    pass


# --- in process ------------------------------------------------------------------------------------------------


async def test_alerter_metrics_move_as_entries_are_alerted_held_back_and_dead_lettered(stream: str) -> None:
    port = free_port()
    config = load_alerter_config(
        [],
        {
            "REDIS_URL": REDIS_URL,
            "LIQ_STREAM": stream,
            "LIQ_CONSUMER": "c1",
            "LIQ_GROUP_START": "0",
            "LIQ_BLOCK_MS": "100",
            "ALERT_BURST": "2",
            "METRICS_PORT": str(port),
            "METRICS_HOST": "127.0.0.1",
        },
    )
    redis = connect(config.consumer)
    out = io.StringIO()
    big = [make_event(value_usd=Decimal(500_000)) for _ in range(4)]
    await publish(redis, stream, [*big, make_event(value_usd=Decimal(5_000)), adl()])
    await redis.xadd(stream, {"type": "liquidation", "v": "1", "key": "k", "data": "{broken"})
    await redis.xadd(stream, {"type": "funding", "v": "1", "key": "k", "data": "{}"})
    alerter = Alerter.from_config(config, redis, [StdoutSink(out)])
    runner = Runner.from_config(redis, config.consumer, handler=alerter.handle)
    await runner.consumer_group.ensure()
    labels = {"stream": stream, "group": "alerter", "consumer": "c1"}
    try:
        async with serve_metrics(
            runner, config.consumer.observability, AlerterCollector(alerter, runner), lag_refresh_s=0.05
        ):

            async def lag_is(n: int) -> bool:
                return value(await scrape(port), "hl_consumer_lag", **labels) == n

            await wait_until(lambda: lag_is(8), message="the lag of the whole backlog")
            before = await scrape(port)
            assert value(before, "hl_consumer_processed_total", **labels) == 0
            assert value(before, "hl_consumer_seconds_since_read", **labels) is None, "nothing read yet"
            task = asyncio.create_task(runner.run())
            try:
                await wait_until(lambda: lag_is(0), message="the lag back to 0")
                await wait_until(lambda: runner.counters.processed == 6, message="the entries handled")
                after = await scrape(port)
            finally:
                runner.stop()
                await task
    finally:
        await redis.aclose()
    assert value(after, "hl_consumer_processed_total", **labels) == 6
    assert value(after, "hl_consumer_dead_lettered_total", **labels) == 1
    assert value(after, "hl_consumer_unknown_type_total", **labels) == 1
    assert value(after, "hl_consumer_failed_total", **labels) == 0
    assert value(after, "hl_consumer_alerts_sent_total", sink="stdout", **labels) == 2
    assert value(after, "hl_consumer_alerts_held_back_total", **labels) == 2
    assert value(after, "hl_consumer_alert_summaries_total", **labels) == 0
    since = value(after, "hl_consumer_seconds_since_read", **labels)
    assert since is not None and 0 <= since < 5
    assert len(out.getvalue().splitlines()) == 2


async def test_healthz_is_ok_while_reading_and_503_once_redis_is_gone_for_too_long(redis_server: RedisServer) -> None:
    port = free_port()
    config = ConsumerConfig(
        redis_url=redis_server.url,
        stream="liq",
        group="g",
        consumer="c",
        settings=RunnerSettings(block_ms=100, retry_delay_ms=50),
        observability=ObservabilitySettings(metrics_port=port, metrics_host="127.0.0.1", health_stale_after=0.5),
    )
    redis = connect(config)
    runner = Runner.from_config(redis, config, handler=_ignore)
    reads = []
    runner.add_read_listener(lambda: reads.append(1))
    try:
        async with serve_metrics(runner, config.observability, lag_refresh_s=0.05):
            task = asyncio.create_task(runner.run())
            try:
                # An idle stream: every empty read that Redis answered counts as progress.
                await wait_until(lambda: len(reads) >= 8, message="several empty reads")
                status, body = await health(port)
                assert (status, body["status"]) == (200, "ok")
                assert value(await scrape(port), "hl_consumer_lag", group="g") == 0
                redis_server.kill()

                async def stuck() -> bool:
                    return (await health(port))[0] == 503

                await wait_until(stuck, within=5, interval=0.05, message="/healthz to answer 503")
                status, body = await health(port)
                assert body["status"] == "stuck" and body["seconds_since_success"] > 0.5
                samples = await scrape(port)
                assert value(samples, "hl_consumer_lag", group="g") is None, "no stale lag while Redis is away"
                assert (value(samples, "hl_consumer_seconds_since_read", group="g") or 0) > 0.5
            finally:
                runner.stop()
                await task
    finally:
        await redis.aclose()


# --- the process -----------------------------------------------------------------------------------------------


async def test_the_stats_process_serves_metrics_and_health_on_its_port(redis_client: Redis, stream: str) -> None:
    liquidations = [make_event(value_usd=Decimal(1000 + i)) for i in range(5)]
    await publish(redis_client, stream, [*liquidations, adl()])
    await redis_client.xadd(stream, {"type": "liquidation", "v": "1", "key": "k", "data": "[]"})
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "consumers.stats",
        cwd=ROOT,
        env={
            **os.environ,
            "REDIS_URL": REDIS_URL,
            "LIQ_STREAM": stream,
            "LIQ_CONSUMER": "proc-1",
            "LIQ_BLOCK_MS": "200",
            "LIQ_GROUP_START": "0",
            "STATS_REBUILD": "false",
            "STATS_INTERVAL_S": "30",
            "METRICS_PORT": str(port),
            "METRICS_HOST": "127.0.0.1",
            "HEALTH_STALE_AFTER": "5",
        },
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    labels = {"stream": stream, "group": "stats", "consumer": "proc-1"}
    samples: Samples = {}
    try:

        async def caught_up() -> bool:
            nonlocal samples
            try:
                samples = await scrape(port)
            except aiohttp.ClientConnectionError:
                return False  # not listening yet
            return (
                value(samples, "hl_consumer_processed_total", **labels) == 6
                and value(samples, "hl_consumer_lag", **labels) == 0
            )

        await wait_until(caught_up, within=10, interval=0.05, message="the process's metrics to show it caught up")
        status, body = await health(port)
        assert (status, body["status"]) == (200, "ok")
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(proc.communicate(), 10)
    assert proc.returncode == 0, err.decode()
    assert value(samples, "hl_consumer_dead_lettered_total", **labels) == 1
    assert value(samples, "hl_consumer_stats_events_counted_total", type="liquidation", **labels) == 5
    assert value(samples, "hl_consumer_stats_events_counted_total", type="adl", **labels) == 1
    assert value(samples, "hl_consumer_stats_rebuilt_events", **labels) == 0
    assert "metrics on http://127.0.0.1:" in err.decode()
