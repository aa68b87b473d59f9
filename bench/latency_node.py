"""Node source latency: from a block appended to the hour file to its entry in the stream, through the real producer.

    python bench/latency_node.py [--redis-url redis://127.0.0.1:6379/0] [--appends 200] [--anchor-appends 40]

A ``python -m producer --source node`` process follows a generated hour file (a 30 s interval, so only the source's
own wake-up can make it quick); this process appends one block with one liquidation at a time, stamps the moment
it wrote it, and waits for the entry with XREAD BLOCK on its own connection. Figures: p50, p99 and max over the
appends, against the goal p99 < 20 ms, and the producer's CPU while the node is quiet (5 s without appends).
Anchor, measured in the same run: the same producer with the fixed-interval wait every source had before
(``HL_POLL_INTERVAL=0.5``, a wait that sleeps the interval out), its appends spread over the interval.

Uses its own stream key (``bench:<hex>:liq``) and hour files in a temporary directory, both deleted at the end.
Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from redis import Redis

from bench.figures import percentile
from producer.simulation.sample import hour_path

GOAL_P99_MS = 20.0
ROOT = Path(__file__).resolve().parent.parent
FIXED_INTERVAL = (
    "from producer.sources.base import LiquidationSource\n"
    "from producer.sources.node import NodeSource\n"
    "NodeSource.wait = LiquidationSource.wait\n"
    "from producer.cli import main\n"
    "raise SystemExit(main())\n"
)
"""The producer with the node source's wake-up taken out: the loop sleeps the interval between polls."""


def block_line(number: int, time_ms: int, liquidated: str) -> bytes:
    """One block in the node's format holding one liquidated user's own fill: one event each."""
    moment = datetime.fromtimestamp(time_ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")
    fill = {
        "coin": "BTC",
        "px": "60000.5",
        "sz": "0.25",
        "side": "A",
        "time": time_ms,
        "dir": "Close Long",
        "hash": f"0x{number:064x}",
        "tid": number,
        "liquidation": {"liquidatedUser": liquidated, "markPx": "60010.0", "method": "market"},
    }
    block = {"local_time": moment, "block_time": moment, "block_number": number, "events": [[liquidated, fill]]}
    return json.dumps(block, separators=(",", ":")).encode() + b"\n"


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Node:
    """Appends blocks to the current hour's file, as a node does, one write per block."""

    def __init__(self, root: Path) -> None:
        self.path = hour_path(root, int(time.time() * 1000))
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_bytes(b"")
        self.number = random.randrange(1 << 40)
        self.user = f"0x{uuid.uuid4().hex:0>40}"

    def append(self) -> float:
        """Write one block; the wall-clock time it was written."""
        self.number += 1
        line = block_line(self.number, int(time.time() * 1000), self.user)
        with self.path.open("ab") as handle:
            handle.write(line)
            written = time.time()
        return written


@contextmanager
def producer(root: Path, stream: str, url: str, interval: float, code: str | None) -> Iterator[subprocess.Popen[bytes]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HL_", "LIQ_", "REDIS_URL"))}
    env.update(
        REDIS_URL=url,
        HL_SOURCE="node",
        HL_NODE_PATH=str(root),
        HL_POLL_INTERVAL=str(interval),
        LIQ_STREAM=stream,
        LOG_LEVEL="WARNING",
    )
    command = [sys.executable, "-c", code] if code else [sys.executable, "-m", "producer"]
    proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL)
    try:
        yield proc
    finally:
        proc.terminate()
        proc.wait(15)


def next_entry(redis: Redis, stream: str, after: str, block_ms: int) -> tuple[str, float] | None:
    """The id of the first entry after ``after`` and when it was seen; None when none came within ``block_ms``."""
    answer: Any = redis.xread({stream: after}, count=1, block=block_ms)
    if not answer:
        return None
    seen = time.time()
    entry_id = answer[0][1][0][0]
    return entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id), seen


def measure(
    redis: Redis, url: str, stream: str, root: Path, appends: int, interval: float, code: str | None
) -> dict[str, float]:
    """Latencies (ms) of ``appends`` appends through one producer process, and its idle CPU share."""
    node = Node(root)
    with producer(root, stream, url, interval, code) as proc:
        last = "0-0"
        for _ in range(120):  # until the producer follows the file: an append before that is behind its start
            node.append()
            got = next_entry(redis, stream, last, 500)
            if got is not None:
                last = got[0]
                break
        else:
            raise SystemExit("the producer did not publish a warm-up block within a minute; is Redis up?")
        while (got := next_entry(redis, stream, last, 1500)) is not None:
            last = got[0]  # warm-up blocks still on their way
        before, started = cpu_seconds(proc.pid), time.perf_counter()
        time.sleep(5)
        idle = (cpu_seconds(proc.pid) - before) / (time.perf_counter() - started)
        latencies: list[float] = []
        for _ in range(appends):
            written = node.append()
            got = next_entry(redis, stream, last, 10_000)
            if got is None:
                raise SystemExit("an appended block did not reach the stream within 10 s")
            last, seen = got
            latencies.append((seen - written) * 1000)
            time.sleep(random.uniform(0, min(interval, 0.02) if code is None else interval))  # out of step with polls
    return {
        "p50": percentile(latencies, 0.50),
        "p99": percentile(latencies, 0.99),
        "max": max(latencies),
        "mean": statistics.fmean(latencies),
        "idle_cpu": idle * 100,
        "n": len(latencies),
    }


def report(label: str, figures: dict[str, float]) -> None:
    print(
        f"  {label}: p50 {figures['p50']:7.1f} ms  p99 {figures['p99']:7.1f} ms  max {figures['max']:7.1f} ms  "
        f"over {figures['n']:.0f} appends; idle CPU {figures['idle_cpu']:.2f}% of a core"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--appends", type=int, default=200)
    parser.add_argument("--anchor-appends", type=int, default=40, help="appends for the fixed-interval anchor")
    args = parser.parse_args()
    redis = Redis.from_url(args.redis_url)
    streams = [f"bench:{uuid.uuid4().hex[:8]}:liq" for _ in range(2)]  # each run its own checkpoint
    print(f"node latency bench: append -> stream entry through python -m producer, Redis at {args.redis_url}")
    try:
        with tempfile.TemporaryDirectory() as tmp:
            live = measure(redis, args.redis_url, streams[0], Path(tmp) / "live", args.appends, 30.0, None)
            anchor = measure(
                redis, args.redis_url, streams[1], Path(tmp) / "fixed", args.anchor_appends, 0.5, FIXED_INTERVAL
            )
    finally:
        for stream in streams:
            redis.delete(stream)
            for key in redis.scan_iter(match=f"{{{stream}}}:*", count=1000):
                redis.delete(key)
    report("node source, woken by the file (interval 30 s)", live)
    report("anchor: fixed-interval wait (interval 0.5 s)  ", anchor)
    verdict = "meets" if live["p99"] < GOAL_P99_MS else "misses"
    print(f"  goal p99 < {GOAL_P99_MS:.0f} ms: {verdict} it ({anchor['p50'] / live['p50']:.0f}x the anchor's p50)")


if __name__ == "__main__":
    main()
