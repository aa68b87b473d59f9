"""The offline demo and its shipped sample, as a new user runs them."""

from __future__ import annotations

import asyncio
import re
import signal
import sys
import time
from decimal import Decimal
from pathlib import Path

import lz4.frame
import pytest
from redis.asyncio import Redis

from producer.demo import build_parser, key_patterns, load_demo_config
from producer.simulation.sample import SAMPLE_PATH, build_sample, render
from producer.simulation.scenarios import DEMO_WATCHLIST, Scenario, demo_scenario
from tests.helpers import REDIS_URL, terminate, wait_until
from tests.support.truth import adl_truth, visible_from

ROOT = Path(__file__).resolve().parent.parent


def test_the_shipped_sample_is_what_the_generator_builds() -> None:
    assert lz4.frame.decompress(SAMPLE_PATH.read_bytes()) == render(build_sample()), (
        "producer/simulation/data/cascade.jsonl.lz4 is stale: run python -m producer.simulation.sample"
    )


def test_the_sample_is_a_realistic_cascade() -> None:
    sample = build_sample()
    methods = {t.method for t in sample.liquidations}
    coins = {t.coin for t in sample.liquidations}
    times = sorted(t.timestamp for t in sample.liquidations)
    assert methods == {"market", "backstop"}
    assert len(coins) >= 10 and sample.adl_fill_count > 0
    burst = [t for t in times if t - times[-1] > -150_000]
    assert len(burst) >= 300  # hundreds within a couple of minutes
    assert any(t.value_usd >= 100_000 for t in sample.liquidations)


async def start_demo(*args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "producer.demo",
        "--redis-url",
        REDIS_URL,
        *args,
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )


async def run_demo(*args: str) -> tuple[int, str]:
    proc = await start_demo(*args)
    out, _ = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode is not None
    return proc.returncode, out.decode()


def published(out: str) -> int:
    """The stream's length as the demo reported it before removing the stream."""
    found = re.search(r"^demo: (\d+) events in ", out, re.MULTILINE)
    assert found, out
    return int(found[1])


async def keys_left(redis: Redis, prefix: str) -> list[bytes]:
    return [key async for key in redis.scan_iter(match=f"*{prefix}*", count=1000)]


async def test_node_demo_shows_alerts_and_statistics(redis_client: Redis, prefix: str, stream: str) -> None:
    code, out = await run_demo("--speed", "0", "--stream", stream)
    assert code == 0, out
    sample = build_sample()
    assert published(out) == len(sample.liquidations) + sample.adl_fill_count
    assert "[alerter] BTC" in out and "liquidated: $" in out
    assert f"[stats] all {len(sample.liquidations):>14}" in out
    assert "[stats] other types: adl" in out
    assert await keys_left(redis_client, prefix) == [], "the demo left keys in the user's Redis"


def watchlist_entries(scenario: Scenario) -> int:
    """The entries a watchlist producer writes: each liquidation and ADL fill it sees, and once more, complete, each
    liquidation it saw only on makers (the producer reads the liquidated user's fills and publishes the exact one)."""
    visible = visible_from(scenario, DEMO_WATCHLIST)
    watched = {address.lower() for address in DEMO_WATCHLIST}
    on_makers_only = [t for t in visible if t.method != "backstop" and t.key[2] not in watched]
    return len(visible) + len(adl_truth(scenario, DEMO_WATCHLIST)) + len(on_makers_only)


async def test_fills_demo_runs_the_polling_source_against_the_fake_exchange(
    redis_client: Redis, prefix: str, stream: str
) -> None:
    started = time.monotonic()
    code, out = await run_demo("--source", "fills", "--stream", stream)
    assert code == 0, out
    assert time.monotonic() - started < 30, "the fills demo should show its events within seconds"
    scenario = demo_scenario()
    expected = watchlist_entries(scenario)
    assert "fake exchange API at http://127.0.0.1:" in out
    assert published(out) == expected
    # With its own default threshold the fills demo alerts, and its events are dated recently enough that the
    # rolling windows show them, as for the node demo.
    assert "[alerter] BTC long liquidated: $" in out
    liquidations = len(visible_from(scenario, DEMO_WATCHLIST))
    assert f"[stats] 1h {liquidations:>15}" in out and f"[stats] all {liquidations:>14}" in out
    assert await keys_left(redis_client, prefix) == [], "the demo left keys in the user's Redis"


async def test_ws_demo_publishes_the_history_and_the_pushes_once(redis_client: Redis, prefix: str, stream: str) -> None:
    code, out = await run_demo("--source", "ws", "--stream", stream)
    assert code == 0, out
    scenario = demo_scenario()
    # Half the scenario came through the snapshot and the gap-fill, half pushed live: the same share as polling.
    expected = watchlist_entries(scenario)
    assert published(out) == expected
    assert "its WebSocket at ws://127.0.0.1:" in out and "[alerter] BTC long liquidated: $" in out
    assert await keys_left(redis_client, prefix) == [], "the demo left keys in the user's Redis"


async def test_hosted_demo_runs_the_hosted_source_against_a_fake_provider(
    redis_client: Redis, prefix: str, stream: str
) -> None:
    code, out = await run_demo("--source", "hosted", "--stream", stream)
    assert code == 0, out
    scenario = demo_scenario()
    # The feed is venue-wide: every liquidation and ADL fill of the scenario, not only a watchlist's share.
    assert published(out) == len(scenario.liquidations) + len(adl_truth(scenario))
    assert "fake Hydromancer feed at ws://127.0.0.1:" in out
    assert "[alerter] BTC long liquidated: $" in out
    assert f"[stats] all {len(scenario.liquidations):>14}" in out
    assert await keys_left(redis_client, prefix) == [], "the demo left keys in the user's Redis"


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
async def test_a_demo_stopped_half_way_removes_its_keys(
    redis_client: Redis, prefix: str, stream: str, sig: signal.Signals
) -> None:
    proc = await start_demo("--stream", stream, "--threshold-usd", "0")
    try:

        async def dedup_keys_and_markers_written() -> bool:
            keys = await keys_left(redis_client, prefix)
            return any(b":dedup:" in k for k in keys) and any(b":alerted:" in k for k in keys)

        await wait_until(dedup_keys_and_markers_written, within=30, message="the demo to publish and alert")
        proc.send_signal(sig)
        out, _ = await asyncio.wait_for(proc.communicate(), 30)
    finally:
        if proc.returncode is None:
            await terminate(proc)
    assert proc.returncode == 0, out.decode()
    assert "Traceback" not in out.decode()
    assert await keys_left(redis_client, prefix) == [], "the demo left keys in the user's Redis"


def test_a_stream_name_cannot_widen_the_clean_up_to_other_keys() -> None:
    assert key_patterns("demo:liquidations") == ("{demo:liquidations}:*", "demo:liquidations:*")
    assert key_patterns("d*[x]?") == (r"{d\*\[x\]\?}:*", r"d\*\[x\]\?:*")
    assert key_patterns("{demo}:liquidations")[0] == "{demo}{demo}:liquidations:*"


def test_the_help_is_plain_text_that_fits_the_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "100")
    text = build_parser().format_help()
    assert "--speed" in text and "REDIS_URL" in text
    assert "``" not in text
    assert [line for line in text.splitlines() if len(line) > 100] == []


def test_each_source_has_a_threshold_its_sample_reaches() -> None:
    assert load_demo_config([]).alert_threshold == Decimal(50_000)
    assert load_demo_config(["--source", "fills"]).alert_threshold == Decimal(10_000)
    assert load_demo_config(["--source", "fills", "--threshold-usd", "5"]).alert_threshold == Decimal(5)
    largest = max(t.value_usd for t in visible_from(demo_scenario(), DEMO_WATCHLIST))
    assert largest > load_demo_config(["--source", "fills"]).alert_threshold


def test_the_settings_take_redis_url_from_the_environment_and_a_flag_over_it() -> None:
    config = load_demo_config(["--speed", "0"], {"REDIS_URL": "redis://env:6379/1"})
    assert (config.speed, config.redis_url) == (0.0, "redis://env:6379/1")
    assert load_demo_config(["--redis-url", "redis://flag/0"], {"REDIS_URL": "redis://env/1"}).redis_url == (
        "redis://flag/0"
    )
