"""The offline demo and its shipped sample, as a new user runs them."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import lz4.frame

from producer.simulation.sample import SAMPLE_PATH, build_sample, render
from producer.simulation.scenarios import DEMO_WATCHLIST, demo_scenario
from tests.test_service import adl_truth, stream_events

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


async def run_demo(*args: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "producer.demo",
        *args,
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode is not None
    return proc.returncode, out.decode()


async def test_node_demo_shows_alerts_and_statistics(stream: str) -> None:
    code, out = await run_demo("--speed", "0", "--stream", stream)
    assert code == 0, out
    sample = build_sample()
    events = await stream_events(stream)
    assert len(events) == len(sample.liquidations) + sample.adl_fill_count
    assert "[alerter] BTC" in out and "liquidated: $" in out
    assert f"[stats] all {len(sample.liquidations):>14}" in out
    assert "[stats] other types: adl" in out


async def test_fills_demo_runs_the_polling_source_against_the_fake_exchange(stream: str) -> None:
    code, out = await run_demo("--source", "fills", "--stream", stream, "--threshold-usd", "1000")
    assert code == 0, out
    scenario = demo_scenario()
    expected = len(scenario.visible_from(DEMO_WATCHLIST)) + len(adl_truth(scenario, DEMO_WATCHLIST))
    assert "fake exchange API at http://127.0.0.1:" in out
    assert len(await stream_events(stream)) == expected
    assert "[stats] all" in out
