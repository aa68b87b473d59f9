"""Node source benchmark: fills/s scanned through the node source on a large generated hour file.

    python bench/node_source.py                  # ~300k fills, a cascade-like mix
    python bench/node_source.py --fills 1000000  # bigger

Prints the raw read speed of the same file (bytes and lines, no parsing) beside the source's speed, and the
peak memory the source allocated (tracemalloc, in a second, untimed pass) against the file size, to show that
memory stays flat: it is bounded by --node-read-bytes per poll (32 MB by default), not by the file.
The goal: at least 200k fills/s scanned. It asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from producer.sources.node import NodeSource, NodeWindow

GOAL = 200_000
START_MS = 1_760_130_900_000
COINS = ("BTC", "ETH", "SOL", "AVAX", "HYPE", "DOGE", "xyz:CRWV")


def address(rng: random.Random) -> str:
    return "0x" + "".join(rng.choice("0123456789abcdef") for _ in range(40))


def fill(rng: random.Random, time_ms: int, tid: int, coin: str, liquidated: str | None, adl: bool) -> dict[str, object]:
    out: dict[str, object] = {
        "coin": coin,
        "px": f"{rng.uniform(1, 70000):.2f}",
        "sz": f"{rng.uniform(0.001, 50):.4f}",
        "side": rng.choice("AB"),
        "time": time_ms,
        "startPosition": "0.0",
        "dir": "Open Long",
        "closedPnl": "0.0",
        "hash": f"0x{rng.getrandbits(256):064x}",
        "oid": rng.getrandbits(40),
        "crossed": rng.random() < 0.5,
        "fee": "0.01",
        "tid": tid,
        "feeToken": "USDC",
    }
    if liquidated is not None:
        out["liquidation"] = {"liquidatedUser": liquidated, "markPx": out["px"], "method": "market"}
        out["dir"] = "Auto-Deleveraging" if adl else "Close Long"
    return out


def write_hour(path: Path, n_fills: int, liquidation_share: float, seed: int = 1) -> int:
    """Blocks of 1-40 fills; a share of blocks carry liquidation (and some ADL) fills. Returns the fill count."""
    rng = random.Random(seed)
    users = [address(rng) for _ in range(2000)]
    written, tid, block, time_ms = 0, 700_000_000_000_000, 758_800_000, START_MS
    with path.open("w") as handle:
        while written < n_fills:
            size = min(rng.randint(1, 40), n_fills - written)
            liquidating = rng.random() < liquidation_share
            events = []
            for _ in range(size):
                user = rng.choice(users)
                victim = rng.choice(users) if liquidating and rng.random() < 0.6 else None
                events.append([user, fill(rng, time_ms, tid, rng.choice(COINS), victim, rng.random() < 0.3)])
                tid += 1
            handle.write(
                json.dumps(
                    {
                        "local_time": "2025-10-10T21:15:00.000000000",
                        "block_time": "2025-10-10T21:15:00.000000000",
                        "block_number": block,
                        "events": events,
                    },
                    separators=(",", ":"),
                )
                + "\n"
            )
            written += size
            block += 1
            time_ms += 70
    return written


def raw_read(path: Path, chunk: int = 1 << 20) -> tuple[float, int]:
    started, lines = time.perf_counter(), 0
    with path.open("rb") as handle:
        while data := handle.read(chunk):
            lines += data.count(b"\n")
    return time.perf_counter() - started, lines


async def through_source(root: Path) -> tuple[float, int, int]:
    source = NodeSource([root], NodeWindow(start_ms=0, follow=False))
    events = 0
    started = time.perf_counter()
    while True:
        result = await source.poll(int(time.time() * 1000))
        events += len(result.events)
        if result.finished or not result.more:
            break
    source.close()
    return time.perf_counter() - started, events, source.blocks_read


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fills", type=int, default=300_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        hour = root / "hourly" / "20251010" / "21"
        hour.parent.mkdir(parents=True)
        for label, share in (("quiet hour (2% of blocks liquidating)", 0.02), ("cascade (60% of blocks)", 0.6)):
            n = write_hour(hour, args.fills, share)
            size = hour.stat().st_size
            raw_seconds, lines = raw_read(hour)
            seconds, events, blocks = asyncio.run(through_source(root))
            tracemalloc.start()  # a second pass: tracing allocations slows them too much to time the first
            asyncio.run(through_source(root))
            _, peak = tracemalloc.get_traced_memory()
            tracemalloc.stop()
            rate = n / seconds
            print(f"{label}: {n:,} fills in {blocks:,} blocks, {size / 1e6:.0f} MB, {events:,} events")
            print(f"  raw read:     {size / raw_seconds / 1e6:8.0f} MB/s  {n / raw_seconds:12,.0f} fills/s")
            print(
                f"  node source:  {size / seconds / 1e6:8.0f} MB/s  {rate:12,.0f} fills/s  "
                f"({rate / GOAL:.1f}x the {GOAL:,}/s goal)"
            )
            print(f"  peak memory allocated while reading: {peak / 1e6:.1f} MB for a {size / 1e6:.0f} MB file")
            assert lines == blocks
            hour.unlink()


if __name__ == "__main__":
    main()
