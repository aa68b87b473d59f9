"""Producer benchmarks: detection on a 2,000-fill answer, and publishing to the local Redis.

    python bench/detect_publish.py            # both
    python bench/detect_publish.py --events 50000 --redis-url redis://127.0.0.1:6379/0

Prints figures and their ratio to the goals (detect >= 10x json.loads-and-dicts; publish >= 100k events/s from
one process). It asserts nothing: machines here are shared and noisy, so figures are read, not gated.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
import uuid
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import msgspec

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.figures import delete_stream_keys
from producer.detector import detect_from_fills
from producer.exchange_types import Fill
from producer.publisher import Publisher
from producer.simulation.scenarios import ScenarioBuilder
from schemas import Event, LiquidationEvent

DETECT_GOAL = 10.0
PUBLISH_GOAL = 100_000.0


def answer_bytes() -> tuple[str, bytes]:
    """A realistic 2,000-fill answer of one maker: ~4% liquidation fills, zero hashes, optional fields."""
    builder = ScenarioBuilder(seed=99)
    maker = builder.address()
    for i in range(80):
        builder.market_liquidation(coin=("BTC", "ETH", "SOL")[i % 3], side=("long", "short")[i % 2], makers=[maker])
    builder.ordinary_fills(maker, 1920)
    fills = builder.build().fills[maker][:2000]
    return maker, json.dumps(fills).encode()


def dicts_and_floats(raw: bytes, observer: str) -> list[dict[str, Any]]:
    """The original tracker's approach, for comparison: json.loads into dicts, then dict lookups and float money."""
    events: dict[tuple[str, str, str], dict[str, Any]] = {}
    for fill in json.loads(raw):
        liq = fill.get("liquidation")
        if not liq or fill.get("dir") == "Auto-Deleveraging":
            continue
        key = (fill["hash"], fill["coin"], liq["liquidatedUser"])
        event = events.setdefault(key, {"size": 0.0, "value": 0.0, "tids": set(), "observer": observer})
        if fill["tid"] not in event["tids"]:
            event["tids"].add(fill["tid"])
            event["size"] += float(fill["sz"])
            event["value"] += float(fill["px"]) * float(fill["sz"])
    return list(events.values())


def ours(raw: bytes, observer: str, decoder: msgspec.json.Decoder[list[Fill]]) -> list[Event]:
    """What the fills source does with an answer: decode into Structs, keep liquidation fills, detect."""
    fills = decoder.decode(raw)
    return detect_from_fills([(observer, f) for f in fills if f.liquidation is not None], detected_at=0)


def per_second(fn: Callable[[], object], seconds: float = 2.0) -> float:
    fn()
    runs, started = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - started) < seconds:
        fn()
        runs += 1
    return runs / elapsed


def bench_detect() -> None:
    observer, raw = answer_bytes()
    decoder = msgspec.json.Decoder(list[Fill])
    n_events = len(ours(raw, observer, decoder))
    assert n_events == len(dicts_and_floats(raw, observer))
    decode_only = per_second(lambda: decoder.decode(raw))
    ours_rate = per_second(lambda: ours(raw, observer, decoder))
    dicts_rate = per_second(lambda: dicts_and_floats(raw, observer))
    json_only = per_second(lambda: json.loads(raw))
    print(f"detect: one answer of 2,000 fills ({len(raw) / 1e6:.2f} MB), {n_events} liquidation events")
    print(f"  msgspec decode into Structs only      {decode_only * 2000 / 1e6:8.2f} M fills/s")
    print(f"  msgspec decode + detect (ours)        {ours_rate * 2000 / 1e6:8.2f} M fills/s")
    print(f"  json.loads only                       {json_only * 2000 / 1e6:8.2f} M fills/s")
    print(f"  json.loads + dict detection (original) {dicts_rate * 2000 / 1e6:8.2f} M fills/s")
    ratio = ours_rate / dicts_rate
    verdict = "met" if ratio >= DETECT_GOAL else "NOT met"
    print(f"  ratio ours / original: {ratio:.1f}x (goal {DETECT_GOAL:.0f}x: {verdict})")


def synthetic_events(n: int) -> list[LiquidationEvent]:
    return [
        LiquidationEvent(
            tx_hash=f"0x{i:064x}",
            coin="BTC",
            liquidation_side="long",
            price=Decimal("64142.0"),
            size=Decimal("0.00052"),
            value_usd=Decimal("33.35384"),
            liquidated_user="0xbb8b801eeddaa7061ae171041ec77516313f2921",
            timestamp=1_787_047_599_030 + i,
            method="market",
            mark_price=Decimal("64140.5"),
            tids=(711626751774561 + i,),
            fills=1,
            observed_via=("0x654086857e1fad6dcf05cf6695cce51ea3984268",),
            detected_at=1_787_047_600_000,
        )
        for i in range(n)
    ]


async def bench_publish(redis_url: str, n: int, batch_size: int) -> None:
    from redis.asyncio import Redis

    client = Redis.from_url(redis_url)
    stream = f"bench:{uuid.uuid4().hex[:8]}:liquidations"
    events = synthetic_events(n)
    publisher = Publisher(client, stream, maxlen=n * 2, dedup_ttl=600, batch_size=batch_size)
    try:
        await publisher.publish(synthetic_events(10))  # loads the script
        chunk = batch_size * 20
        started = time.perf_counter()
        for i in range(0, n, chunk):
            await publisher.publish(events[i : i + chunk])
        elapsed = time.perf_counter() - started
        again_started = time.perf_counter()
        dup = await publisher.publish(events[:chunk])
        dup_elapsed = time.perf_counter() - again_started
        length = await client.xlen(stream)
    finally:
        await delete_stream_keys(client, stream)
        await client.aclose()
    rate = n / elapsed
    print(f"publish: {n} events in batches of {batch_size} to {redis_url} -> stream length {length}")
    print(
        f"  {rate:,.0f} events/s (goal {PUBLISH_GOAL:,.0f}/s: {rate / PUBLISH_GOAL:.2f}x, "
        f"{'met' if rate >= PUBLISH_GOAL else 'NOT met'})"
    )
    print(f"  duplicates rejected: {len(dup.duplicates) / dup_elapsed:,.0f} events/s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--skip-publish", action="store_true")
    args = parser.parse_args()
    bench_detect()
    if not args.skip_publish:
        asyncio.run(bench_publish(args.redis_url, args.events, args.batch_size))


if __name__ == "__main__":
    main()
