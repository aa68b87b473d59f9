"""The WebSocket latency bench still runs end to end (tiny counts, no figures judged): a bench that rots is found
here, not the day someone needs its numbers."""

from __future__ import annotations

import asyncio

import pytest
from redis.asyncio import Redis

from bench import latency_feeds
from tests.helpers import REDIS_URL, scratch_prefix


async def keys_under(prefix: str) -> list[bytes]:
    redis = Redis.from_url(REDIS_URL)
    try:
        return [key async for key in redis.scan_iter(match=f"*{prefix}*", count=1000)]
    finally:
        await redis.aclose()


def test_the_bench_prints_every_figure_of_each_source_and_leaves_no_keys(capsys: pytest.CaptureFixture[str]) -> None:
    prefix = scratch_prefix()
    latency_feeds.main(
        [
            *("--redis-url", REDIS_URL, "--key-prefix", prefix),
            *("--isolated", "1", "--stream-blocks", "3", "--gap-ms", "5"),
            *("--burst-events", "20", "--per-block", "5", "--anchor-rounds", "3", "--quiet", "0.05"),
        ]
    )
    lines = [line.strip() for line in capsys.readouterr().out.splitlines()]
    labels = [subject.label for subject in latency_feeds.subjects(0.05)]
    assert [line for line in lines if line.removesuffix(":") in labels] == [f"{label}:" for label in labels]
    for figure in ("isolated liquidation", "in a stream (every", "from the latest push", "burst of 20 events"):
        assert sum(line.startswith(figure) for line in lines) == len(labels), figure
    assert sum(line.startswith("goal ") for line in lines) == 4 * len(labels)
    assert any(line.startswith("anchor: XADD round trip") for line in lines)
    assert asyncio.run(keys_under(prefix)) == []
