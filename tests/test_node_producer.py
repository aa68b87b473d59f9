"""The real producer following node files into a real Redis: exactly once, across kills and restarts."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import replace
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from producer.config import ProducerConfig
from producer.publisher import checkpoint_key
from producer.service import Producer
from producer.simulation.sample import blocks_from
from producer.sources.node import CHECKPOINT_HOUR, CHECKPOINT_OFFSET
from producer.sources.node_files import find_hour_files
from tests.helpers import REDIS_URL, start_producer, stream_events, terminate, wait_until
from tests.support.node_writer import write_hours
from tests.support.truth import adl_truth, assert_node_truth, cascade


def node_config(root: Path, stream: str, **overrides: object) -> ProducerConfig:
    base = ProducerConfig(
        redis_url=REDIS_URL,
        source="node",
        node_paths=(root,),
        node_from=0,
        node_follow=False,
        stream=stream,
        poll_interval=0.05,
    )
    return replace(base, **overrides)  # type: ignore[arg-type]


async def test_replay_into_the_stream_then_a_rerun_adds_nothing(
    tmp_path: Path, stream: str, redis_client: aioredis.Redis
) -> None:
    scenario = cascade(500)
    write_hours(tmp_path, blocks_from(scenario), compressed=True)
    for _ in range(2):
        producer = Producer(node_config(tmp_path, stream, node_read_bytes=128 << 10))
        assert await producer.run() == 0
    assert_node_truth(await stream_events(stream), scenario)
    last = find_hour_files([tmp_path])[-1]
    checkpoint = await redis_client.hgetall(checkpoint_key(stream))
    assert checkpoint[CHECKPOINT_HOUR.encode()] == last.name.encode()
    assert int(checkpoint[CHECKPOINT_OFFSET.encode()]) > 0


async def test_sigkill_mid_file_and_restart_publish_every_liquidation_once(
    tmp_path: Path, stream: str, redis_client: aioredis.Redis
) -> None:
    scenario = cascade(3000)
    write_hours(tmp_path, blocks_from(scenario))
    env = {
        "REDIS_URL": REDIS_URL,
        "HL_SOURCE": "node",
        "HL_NODE_PATH": str(tmp_path),
        "HL_NODE_FROM": "0",
        "HL_NODE_FOLLOW": "false",
        "HL_NODE_READ_BYTES": "32768",
        "LIQ_STREAM": stream,
        "LOG_LEVEL": "WARNING",
    }
    total = len(scenario.liquidations)
    proc = await start_producer(env=env)

    async def a_quarter_published() -> bool:
        # XLEN, not a decode of the whole stream: the check must be quick, or the kill lands after the end.
        return int(await redis_client.xlen(stream)) >= total // 4

    try:
        await wait_until(a_quarter_published, within=15, interval=0.005, message="a quarter of the events")
    finally:
        proc.kill()  # SIGKILL: no chance to flush anything
        await proc.wait()
    killed_at = len(await stream_events(stream))
    assert 0 < killed_at < total, "the kill must land mid-file for this test to mean anything"

    restarted = await start_producer(env=env)
    out, _ = await asyncio.wait_for(restarted.communicate(), 120)
    assert restarted.returncode == 0, out.decode()
    assert_node_truth(await stream_events(stream), scenario)


async def test_sigterm_while_following_live_exits_cleanly(tmp_path: Path, stream: str) -> None:
    scenario = cascade(50)
    write_hours(tmp_path, blocks_from(scenario))
    env = {
        "REDIS_URL": REDIS_URL,
        "HL_SOURCE": "node",
        "HL_NODE_PATH": str(tmp_path),
        "HL_NODE_FROM": "0",
        "LIQ_STREAM": stream,
        "HL_POLL_INTERVAL": "0.1",
    }
    proc = await start_producer(env=env)

    async def caught_up() -> bool:
        return len(await stream_events(stream)) >= len(scenario.liquidations)

    try:
        await wait_until(caught_up, within=15, message="the producer to follow the files")
    finally:
        out, _ = await terminate(proc)
    assert proc.returncode == 0, out.decode()
    assert_node_truth(await stream_events(stream), scenario)


@pytest.mark.slow
async def test_a_cascade_sized_burst_through_the_real_producer(tmp_path: Path, stream: str) -> None:
    """Tens of thousands of liquidation fills within minutes, like 2025-10-10 21:15: each event exactly once."""
    scenario = cascade(12_000)
    write_hours(tmp_path, blocks_from(scenario))
    assert scenario.fill_count > 70_000
    env = {
        "REDIS_URL": REDIS_URL,
        "HL_SOURCE": "node",
        "HL_NODE_PATH": str(tmp_path),
        "HL_NODE_FROM": "0",
        "HL_NODE_FOLLOW": "false",
        "LIQ_STREAM": stream,
        "LIQ_STREAM_MAXLEN": "1000000",
        "LOG_LEVEL": "WARNING",
    }
    proc = await start_producer(env=env)
    out, _ = await asyncio.wait_for(proc.communicate(), 600)
    assert proc.returncode == 0, out.decode()
    assert_node_truth(await stream_events(stream), scenario)


@pytest.mark.parametrize("where", ["flag", "default"])
async def test_a_node_path_that_does_not_exist_is_one_line_and_exit_2(tmp_path: Path, where: str) -> None:
    args = ["--source", "node", *(["--node-path", "/nonexistent/dir"] if where == "flag" else [])]
    proc = await start_producer(*args, env={"HOME": str(tmp_path)})  # no node under this home
    out, _ = await asyncio.wait_for(proc.communicate(), 30)
    missing = "/nonexistent/dir" if where == "flag" else f"{tmp_path}/hl/data/node_fills_by_block"
    assert proc.returncode == 2
    assert out.decode().splitlines() == [
        f"configuration error: --node-path / HL_NODE_PATH: {missing} does not exist; point --node-path (or "
        "HL_NODE_PATH) at a node's data directory (~/hl/data or its node_fills_by_block), an archive directory "
        "or an hour file"
    ]


async def test_a_path_without_hour_files_makes_the_health_check_fail_with_the_reason(
    tmp_path: Path, stream: str
) -> None:
    producer = Producer(node_config(tmp_path, stream, node_follow=True))
    try:
        await producer.poll_once()
        healthy, detail = producer.progress.health()
        assert not healthy and "no hour files under" in str(detail["problem"])
        write_hours(tmp_path, blocks_from(cascade(5)))
        await producer.poll_once()
        assert producer.progress.health()[0]
    finally:
        await producer.close()


def event_lines(caplog: pytest.LogCaptureFixture, level: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelname == level and " -> " in r.getMessage()]


async def test_a_replay_logs_a_summary_per_hour_not_a_line_per_event(
    tmp_path: Path, stream: str, caplog: pytest.LogCaptureFixture
) -> None:
    scenario = cascade(300)
    write_hours(tmp_path, blocks_from(scenario))
    caplog.set_level(logging.DEBUG, logger="producer")
    assert await Producer(node_config(tmp_path, stream)).run() == 0
    assert event_lines(caplog, "INFO") == []
    assert len(event_lines(caplog, "DEBUG")) == len(scenario.liquidations) + len(adl_truth(scenario))
    done = [r.getMessage() for r in caplog.records if r.levelname == "INFO" and " done: " in r.getMessage()]
    assert done and done[0].startswith("node: 20251010/21 done: ")


async def test_live_events_keep_their_line_each(tmp_path: Path, stream: str, caplog: pytest.LogCaptureFixture) -> None:
    scenario = cascade(10, start_ms=int(time.time() * 1000) - 5_000)
    write_hours(tmp_path, blocks_from(scenario))
    caplog.set_level(logging.INFO, logger="producer")
    producer = Producer(node_config(tmp_path, stream, node_follow=True))
    try:
        await producer.poll_once()
    finally:
        await producer.close()
    assert len(event_lines(caplog, "INFO")) == len(scenario.liquidations) + len(adl_truth(scenario))


async def test_a_block_the_node_writes_is_published_at_once_not_at_the_next_interval(
    tmp_path: Path, stream: str
) -> None:
    """With a 30 s interval, an append to the hour file and the next hour's file each reach the stream in seconds."""
    this_hour = int(time.time() * 1000) // 3_600_000 * 3_600_000
    first = cascade(5, start_ms=this_hour - 3_600_000 + 60_000)
    appended = cascade(5, seed=8, start_ms=this_hour - 3_600_000 + 600_000)
    next_hour = cascade(5, seed=9, start_ms=this_hour)
    write_hours(tmp_path, blocks_from(first))
    env = {
        "REDIS_URL": REDIS_URL,
        "HL_SOURCE": "node",
        "HL_NODE_PATH": str(tmp_path),
        "HL_NODE_FROM": "0",
        "HL_POLL_INTERVAL": "30",
        "LIQ_STREAM": stream,
    }
    proc = await start_producer(env=env)
    expected = 0

    async def all_published() -> bool:
        return len(await stream_events(stream)) >= expected

    try:
        expected = len(first.liquidations) + len(adl_truth(first))
        await wait_until(all_published, within=15, message="the first hour")
        for scenario, what in ((appended, "the append to the hour file"), (next_hour, "the next hour's file")):
            write_hours(tmp_path, blocks_from(scenario))
            expected += len(scenario.liquidations) + len(adl_truth(scenario))
            await wait_until(all_published, within=5, message=f"{what}, well within the 30 s interval")
    finally:
        out, _ = await terminate(proc)
    assert proc.returncode == 0, out.decode()
    assert [f.start_ms for f in find_hour_files([tmp_path])] == [this_hour - 3_600_000, this_hour]
