"""How fast one consumer process decodes and acknowledges, and how long an entry takes from XADD to its handler.

    python bench/consumer_bench.py [--redis-url redis://127.0.0.1:6379/0] [--events 100000] [--seconds 5]

Throughput: the stream is filled first, then a :class:`~consumers.runner.Runner` with a handler that does nothing
reads it through a fresh group (per-event handler and batch handler, at two read sizes); figures are entries
decoded, handed over and acknowledged per second. Latency: a separate producer process XADDs at a steady rate
while the runner blocks on the group; the handler measures wall-clock time since the producer called XADD (carried
in the event's ``tids``, which this benchmark's events do not otherwise use). The goal is 100,000 events/s.

Uses its own stream key (``bench:<hex>:liq``), deleted at the end. Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from redis import Redis as SyncRedis
from redis.asyncio import Redis
from redis.utils import HIREDIS_AVAILABLE

from consumers import Runner, RunnerSettings
from schemas import Event, encode_entry
from tests.helpers import delete_prefix, make_event

GOAL = 100_000


async def fill(redis: Redis, stream: str, n: int) -> None:
    template = encode_entry(make_event())
    chunk = 2_000
    for start in range(0, n, chunk):
        async with redis.pipeline(transaction=False) as pipe:
            for _ in range(min(chunk, n - start)):
                pipe.xadd(stream, template)  # type: ignore[arg-type]
            await pipe.execute()


async def throughput(redis: Redis, stream: str, n: int, *, count: int, batch: bool) -> float:
    """Events per second through a fresh group over the filled stream."""
    group = f"tp-{count}-{'batch' if batch else 'each'}"
    settings = RunnerSettings(block_ms=200, count=count, claim_idle_ms=600_000, group_start="0")
    done = asyncio.Event()
    seen = 0

    async def each(event: Event) -> None:
        nonlocal seen
        seen += 1
        if seen == n:
            done.set()

    async def many(events: list[Event]) -> None:
        nonlocal seen
        seen += len(events)
        if seen >= n:
            done.set()

    if batch:
        runner = Runner(redis, stream=stream, group=group, consumer="bench", batch_handler=many, settings=settings)
    else:
        runner = Runner(redis, stream=stream, group=group, consumer="bench", handler=each, settings=settings)
    await runner.consumer_group.ensure()
    started = time.perf_counter()
    task = asyncio.create_task(runner.run())
    await asyncio.wait_for(done.wait(), 120)
    elapsed = time.perf_counter() - started
    runner.stop()
    await task
    pending = (await redis.xpending(stream, group))["pending"]
    if pending:
        print(f"  (warning: {pending} entries still pending in {group})")
    return n / elapsed


def produce(url: str, stream: str, rate: int, seconds: float) -> None:
    """In its own process: XADD ``rate`` events per second, each stamped with the time of its XADD call."""
    redis = SyncRedis.from_url(url)
    interval = 1 / rate
    total = int(rate * seconds)
    start = time.perf_counter()
    for i in range(total):
        target = start + i * interval
        delay = target - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        redis.xadd(stream, encode_entry(make_event(tids=(time.time_ns(),))))  # type: ignore[arg-type]
    redis.close()


async def latency(redis: Redis, url: str, stream: str, rate: int, seconds: float) -> list[float]:
    """Milliseconds from XADD (in another process) to the handler, for every event."""
    latencies: list[float] = []
    total = int(rate * seconds)
    done = asyncio.Event()

    async def handle(event: Event) -> None:
        latencies.append((time.time_ns() - event.tids[0]) / 1e6)
        if len(latencies) >= total:
            done.set()

    runner = Runner(
        redis,
        stream=stream,
        group="latency",
        consumer="bench",
        handler=handle,
        settings=RunnerSettings(block_ms=1_000, count=100, claim_idle_ms=600_000, group_start="$"),
    )
    await runner.consumer_group.ensure()
    task = asyncio.create_task(runner.run())
    producer = multiprocessing.get_context("spawn").Process(target=produce, args=(url, stream, rate, seconds))
    producer.start()
    try:
        await asyncio.wait_for(done.wait(), seconds + 30)
    finally:
        runner.stop()
        await task
        await asyncio.get_running_loop().run_in_executor(None, producer.join, 10)
    return latencies


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def main(args: argparse.Namespace) -> int:
    redis = Redis.from_url(args.redis_url, socket_timeout=30)
    prefix = f"bench:{uuid.uuid4().hex}"
    stream = f"{prefix}:liq"
    started = time.perf_counter()
    try:
        print(f"consumer bench: one process, Redis at {args.redis_url}, stream {stream}, pid {os.getpid()}")
        parser = "hiredis (C)" if HIREDIS_AVAILABLE else "redis-py's pure-Python parser (hiredis is about 4x faster)"
        print(f"reply parser: {parser}")
        t = time.perf_counter()
        await fill(redis, stream, args.events)
        print(f"filled {args.events:,} entries in {time.perf_counter() - t:.1f} s")
        results: list[tuple[str, float]] = []
        runs: list[tuple[str, Callable[[], Any]]] = [
            ("per-event handler, count 100", lambda: throughput(redis, stream, args.events, count=100, batch=False)),
            ("per-event handler, count 1000", lambda: throughput(redis, stream, args.events, count=1000, batch=False)),
            ("batch handler,     count 1000", lambda: throughput(redis, stream, args.events, count=1000, batch=True)),
        ]
        for name, run in runs:
            rate = await run()
            results.append((name, rate))
            print(f"  {name}: {rate:>10,.0f} events/s decoded + acked  ({rate / GOAL:.2f} x the {GOAL:,}/s goal)")
        await redis.delete(stream)
        lat = await latency(redis, args.redis_url, stream, args.rate, args.seconds)
        print(
            f"latency XADD -> handler over {len(lat):,} events at {args.rate:,}/s: "
            f"p50 {percentile(lat, 0.50):.2f} ms, p99 {percentile(lat, 0.99):.2f} ms, "
            f"max {max(lat):.2f} ms, mean {statistics.fmean(lat):.2f} ms"
        )
        best = max(rate for _, rate in results)
        print(
            f"best throughput {best:,.0f} events/s = {best / GOAL:.2f} x goal; total bench time "
            f"{time.perf_counter() - started:.1f} s"
        )
    finally:
        await delete_prefix(redis, prefix)
        await redis.aclose()
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--redis-url", default=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"))
    parser.add_argument("--events", type=int, default=100_000, help="entries for the throughput runs")
    parser.add_argument("--rate", type=int, default=2_000, help="events per second for the latency run")
    parser.add_argument("--seconds", type=float, default=5.0, help="length of the latency run")
    raise SystemExit(asyncio.run(main(parser.parse_args())))
