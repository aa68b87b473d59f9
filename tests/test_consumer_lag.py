"""Trimming past a group: the loss found from XINFO, pure, and said, counted and accounted for by the runner."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from redis.asyncio import Redis

from consumers import Runner, RunnerSettings
from consumers.lag import Assessment, GroupInfo, StreamInfo, assess
from consumers.metrics import LagCache, RunnerCollector
from schemas import encode_entry
from tests.helpers import Recorder, make_event, stop, wait_until

FAST = RunnerSettings(block_ms=100, count=1000, claim_idle_ms=300, retry_delay_ms=50, group_start="0")


def stream_info(length: int, first: str | None, last: str, added: int | None, deleted: str = "0-0") -> StreamInfo:
    return StreamInfo(
        length=length, first_id=first, last_generated_id=last, max_deleted_id=deleted, entries_added=added
    )


def group_info(last: str, read: int | None, lag: int | None = None) -> GroupInfo:
    return GroupInfo(last_delivered_id=last, entries_read=read, lag=lag)


@pytest.mark.parametrize(
    ("stream", "group", "expected"),
    [
        # The report: 5 read, then 1,655 more added with MAXLEN 300: 1,355 went unread, 300 are still to come.
        (
            stream_info(300, "100-5", "200-0", 1660),
            group_info("10-4", 5, 1655),
            Assessment(lag=300, lost=1355, gap=("10-4", "100-5"), entries_read=1360),
        ),
        # Behind the first entry but nothing went unread: only the last delivered entry itself was trimmed.
        (stream_info(300, "100-5", "200-0", 305), group_info("10-4", 5, 300), Assessment(lag=300)),
        # A group read through a gap unseen: caught up, yet Redis still counts the lost entries as to come.
        (
            stream_info(300, "100-5", "200-0", 1660),
            group_info("200-0", 305, 1355),
            Assessment(1355 - 1355, 1355, None, 1660),
        ),
        (stream_info(300, "100-5", "200-0", 1660), group_info("200-0", 1660, 0), Assessment(lag=0)),
        # Mid-stream: Redis's figure stands.
        (stream_info(300, "100-5", "200-0", 1660), group_info("150-0", 1500, 160), Assessment(lag=160)),
        # Everything trimmed (MAXLEN 0): all unread entries are lost.
        (stream_info(0, None, "200-0", 50), group_info("10-0", 20, 30), Assessment(lag=0, lost=30, entries_read=50)),
        # Redis lost count (group created at "0" after trimming, or XDEL ahead of the group), or Redis < 7.
        (stream_info(300, "100-5", "200-0", 1660), group_info("0-0", None, 300), Assessment(lag=300)),
        (stream_info(300, "100-5", "200-0", 1660, deleted="150-0"), group_info("10-4", 5, None), Assessment(lag=None)),
        (stream_info(300, "100-5", "200-0", None), group_info("10-4", None, None), Assessment(lag=None)),
        # Ids compare as numbers, not text ("9-0" < "10-0").
        (
            stream_info(1, "10-0", "10-0", 3),
            group_info("9-0", 1, 2),
            Assessment(lag=1, lost=1, gap=("9-0", "10-0"), entries_read=2),
        ),
    ],
)
def test_assess_finds_what_trimming_took_from_a_group(
    stream: StreamInfo, group: GroupInfo, expected: Assessment
) -> None:
    assert assess(stream, group) == expected


async def test_entries_trimmed_past_a_stopped_group_are_said_counted_and_leave_the_lag_true(
    redis_client: Redis, stream: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Consumers stopped, the producer publishes 1,650 entries with MAXLEN 300: the 1,350 the group never saw
    must show up as a warning with their id range and in ``lost_to_trimming``, and the lag must be 300, then 0."""
    caplog.set_level(logging.WARNING, logger="consumers.runner")
    redis = redis_client
    await redis.xgroup_create(stream, "g", id="0", mkstream=True)
    first = [make_event() for _ in range(10)]
    for event in first:
        await redis.xadd(stream, encode_entry(event))  # type: ignore[arg-type]
    seen = Recorder()
    r1 = Runner(redis, stream=stream, group="g", consumer="c1", handler=seen, settings=FAST)
    task = asyncio.create_task(r1.run())
    await wait_until(lambda: len(seen.keys) == 10, message="the first 10 handled")
    await stop(r1, task)

    async with redis.pipeline(transaction=False) as pipe:
        for _ in range(1650):
            pipe.xadd(stream, encode_entry(make_event()), maxlen=300, approximate=False)  # type: ignore[arg-type]
        await pipe.execute()
    r2 = Runner(redis, stream=stream, group="g", consumer="c2", handler=seen, settings=FAST)
    task = asyncio.create_task(r2.run())
    await wait_until(lambda: len(seen.keys) == 310, message="the 300 entries left handled")
    await stop(r2, task)

    assert r2.counters.lost_to_trimming == 1350
    assert await r2.consumer_group.lag() == 0
    (warning,) = [m for m in caplog.messages if "trimmed (MAXLEN) before group 'g' read them" in m]
    assert warning.startswith("1350 entries") and " between " in warning
    (group,) = await redis.xinfo_groups(stream)
    assert group["lag"] == 0, "Redis's own lag is true again"
    r3 = Runner(redis, stream=stream, group="g", consumer="c3", handler=seen, settings=FAST)
    assert await r3.consumer_group.check_trimmed() == Assessment(lag=0), (
        "a loss is counted once, not again by the next consumer"
    )


def test_the_loss_is_served_as_a_metric(redis_client: Redis) -> None:
    runner = Runner(redis_client, stream="s", group="g", consumer="c", handler=Recorder(), settings=FAST)
    runner.counters.lost_to_trimming = 1350
    lag = LagCache(runner)
    lag.value = 300
    samples = {s.name: s.value for m in RunnerCollector(runner, lag).collect() for s in m.samples}
    assert samples["hl_consumer_lost_to_trimming_total"] == 1350
    assert samples["hl_consumer_lag"] == 300


async def test_an_acl_without_the_check_commands_warns_once_and_keeps_consuming(
    redis_server: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="consumers.runner")
    admin = Redis.from_url(redis_server.url)
    await admin.acl_setuser(
        "liq", enabled=True, passwords=["+pw"], keys=["*"], commands=["+@all", "-xinfo|stream", "-xgroup|setid"]
    )
    client = Redis.from_url(f"redis://liq:pw@127.0.0.1:{redis_server.port}/0", socket_timeout=5)
    try:
        seen = Recorder()
        r = Runner(client, stream="s", group="g", consumer="c", handler=seen, settings=FAST)
        task = asyncio.create_task(r.run())
        events = [make_event() for _ in range(3)]
        for event in events:
            await admin.xadd("s", encode_entry(event))  # type: ignore[arg-type]
        await wait_until(lambda: len(seen.keys) == 3, message="events handled without the check")
        assert await r.consumer_group.lag() == 0, "Redis's own lag, unchecked"
        await stop(r, task)
    finally:
        await client.aclose()
        await admin.aclose()
    assert sum("cannot check group 'g' for entries trimmed" in m for m in caplog.messages) == 1
