"""The processes as deployed: SIGTERM makes them finish what they hold, flush acknowledgements and exit 0."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from decimal import Decimal
from pathlib import Path

from redis.asyncio import Redis
from redis.exceptions import ResponseError

from consumers.entries import id_tuple
from plumbing.stream_keys import stream_key
from schemas import encode_entry
from tests.faults.invariants import raw_entries
from tests.helpers import make_event, wait_until

ROOT = Path(__file__).resolve().parent.parent
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


async def spawn(module: str, env: dict[str, str]) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        module,
        cwd=ROOT,
        env={**os.environ, "REDIS_URL": REDIS_URL, **env},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def group_state(redis: Redis, stream: str, group: str) -> dict[str, object]:
    try:
        for info in await redis.xinfo_groups(stream):
            if info["name"].decode() == group:
                return dict(info)
    except ResponseError:
        pass
    return {}


async def test_sigterm_stops_the_stats_process_after_flushing_and_reporting(redis_client: Redis, stream: str) -> None:
    events = [make_event(value_usd=Decimal(1000 + i)) for i in range(40)]
    for event in events:
        await redis_client.xadd(stream, encode_entry(event))  # type: ignore[arg-type]
    proc = await spawn(
        "consumers.stats",
        {
            "LIQ_STREAM": stream,
            "LIQ_CONSUMER": "proc-1",
            "LIQ_BLOCK_MS": "2000",
            "LIQ_GROUP_START": "0",
            "STATS_REBUILD": "false",
            "STATS_INTERVAL_S": "30",
        },
    )
    try:

        async def consumed() -> bool:
            state = await group_state(redis_client, stream, "stats")
            return state.get("lag") == 0 and state.get("pending") == 0

        await wait_until(consumed, within=8, message="the stats process consumed the stream")
        proc.send_signal(signal.SIGTERM)
        out, err = await asyncio.wait_for(proc.communicate(), 8)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 0, err.decode()
    assert "received SIGTERM" in err.decode()
    table = out.decode()
    assert "full view" in table and [line.split()[:2] for line in table.splitlines() if line.startswith("all")] == [
        ["all", "40"]
    ]
    published = await redis_client.get(stream_key(stream, "stats:stats:proc-1"))
    assert published is not None, "the stats consumer published no snapshot"
    snapshot = json.loads(published)
    assert Decimal(snapshot["totals"]["value_usd"]) == sum(e.value_usd for e in events)
    assert await redis_client.xinfo_consumers(stream, "stats") == [], "it left the group with nothing pending"


async def test_sigterm_mid_stream_stops_the_alerter_without_losing_or_repeating(
    redis_client: Redis, stream: str
) -> None:
    events = [make_event(value_usd=Decimal(500_000)) for _ in range(300)]
    async with redis_client.pipeline(transaction=False) as pipe:
        for event in events:
            pipe.xadd(stream, encode_entry(event))  # type: ignore[arg-type]
        await pipe.execute()
    proc = await spawn(
        "consumers.alerter",
        {
            "LIQ_STREAM": stream,
            "LIQ_CONSUMER": "proc-1",
            "LIQ_BLOCK_MS": "2000",
            "LIQ_GROUP_START": "0",
            "ALERT_BURST": "1000",
            "TELEGRAM_BOT_TOKEN": "555:SECRET-not-used",
        },
    )
    try:
        assert proc.stdout is not None
        first = await asyncio.wait_for(proc.stdout.readline(), 8)
        assert b"liquidated" in first
        proc.send_signal(signal.SIGTERM)
        rest, err = await asyncio.wait_for(proc.communicate(), 8)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 0, err.decode()
    alerted = {line.split(" | ")[-1].rsplit("/", 1)[-1] for line in (first + rest).decode().splitlines()}
    pending = await redis_client.xpending_range(stream, "alerter", min="-", max="+", count=1000)
    pending_ids = {row["message_id"] for row in pending}
    last = id_tuple((await group_state(redis_client, stream, "alerter"))["last-delivered-id"])  # type: ignore[arg-type]
    entries = [
        (i, json.loads(fields[b"data"])["tx_hash"]) for i, fields in raw_entries(await redis_client.xrange(stream))
    ]
    held_back = {tx for entry_id, tx in entries if entry_id in pending_ids}
    unread = {tx for entry_id, tx in entries if id_tuple(entry_id) > last}
    assert not alerted & held_back, "an alerted entry was left unacknowledged"
    assert not (alerted | held_back) & unread
    assert alerted | held_back | unread == {e.tx_hash for e in events}, "every entry is alerted, handed back or unread"
    assert "SECRET" not in err.decode()
