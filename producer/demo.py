"""``python -m producer.demo``: the whole pipeline, offline, in one command.

Node mode (the default) plays the shipped sample cascade (``producer/simulation/data``) into a temporary
directory laid out like a node's output, block by block at ``--speed`` times real time (re-timed to now, so the
rolling windows fill), while the real processes run against the local Redis: the producer following the files
with the node source, the alerter and the stats aggregator. Fills mode instead serves the fake exchange API
on 127.0.0.1 and runs the producer's polling source against it. Either way a new user sees alerts and a
statistics table within seconds, on a stream of its own (``demo:liquidations``) that the demo resets first.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import msgspec
import redis.asyncio as aioredis

from consumers.options import redact_url
from producer.publisher import key_namespace
from producer.simulation.fake_exchange import FakeHyperliquid
from producer.simulation.node_writer import hour_path
from producer.simulation.sample import load_blocks
from producer.simulation.scenarios import DEMO_WATCHLIST, demo_scenario


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m producer.demo", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--source",
        choices=("node", "fills"),
        default="node",
        help="node: replay the sample cascade as a node's files; fills: serve the fake exchange API",
    )
    parser.add_argument(
        "--speed", type=float, default=10.0, help="replay speed, times real time (0: as fast as possible) (default: 10)"
    )
    parser.add_argument(
        "--redis-url",
        default=os.environ.get("REDIS_URL", "redis://localhost:6379/0"),
        help="Redis to use [REDIS_URL] (default: redis://localhost:6379/0)",
    )
    parser.add_argument("--stream", default="demo:liquidations", help="stream the demo resets and uses")
    parser.add_argument("--threshold-usd", default="50000", help="alert threshold for the demo (default: 50000)")
    parser.add_argument("--verbose", action="store_true", help="show the producer's log line for every event")
    return parser.parse_args(argv)


class Demo:
    def __init__(self, args: argparse.Namespace, workdir: Path) -> None:
        self.args = args
        self.workdir = workdir
        self.procs: list[asyncio.subprocess.Process] = []
        self.pipes: list[asyncio.Task[None]] = []

    def env(self, **extra: str) -> dict[str, str]:
        keep = {k: v for k, v in os.environ.items() if not k.startswith(("HL_", "LIQ_", "ALERT_", "STATS_"))}
        return {**keep, "REDIS_URL": self.args.redis_url, "LIQ_STREAM": self.args.stream, **extra}

    async def spawn(self, label: str, module: str, env: dict[str, str]) -> None:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", module, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
        )
        self.procs.append(proc)
        self.pipes.append(asyncio.create_task(self._relay(label, proc)))

    async def _relay(self, label: str, proc: asyncio.subprocess.Process) -> None:
        assert proc.stdout is not None
        async for raw in proc.stdout:
            sys.stdout.write(f"[{label}] {raw.decode(errors='replace')}")
            sys.stdout.flush()

    async def reset_stream(self) -> None:
        client = aioredis.Redis.from_url(self.args.redis_url)
        try:
            keys = [self.args.stream]
            for pattern in (f"{key_namespace(self.args.stream)}*", f"{self.args.stream}:*"):
                keys += [k async for k in client.scan_iter(match=pattern, count=1000)]
            await client.delete(*keys)
        finally:
            await client.aclose()

    async def start_consumers(self) -> None:
        common = {"LIQ_GROUP_START": "0", "LIQ_BLOCK_MS": "500", "LOG_LEVEL": "WARNING"}
        await self.spawn(
            "alerter",
            "consumers.alerter",
            self.env(
                **common,
                LIQ_GROUP="demo-alerter",
                ALERT_THRESHOLD_USD=self.args.threshold_usd,
                ALERT_COOLDOWN_S="10",
                ALERT_BURST="3",
            ),
        )
        await self.spawn(
            "stats", "consumers.stats", self.env(**common, LIQ_GROUP="demo-stats", STATS_INTERVAL_S="5", STATS_TOP="6")
        )

    async def play_node_files(self) -> int:
        """Write the sample's blocks into hour files at the chosen pace; returns the events it holds."""
        blocks = list(load_blocks())
        first = blocks[0]["events"][0][1]["time"]
        # Compress the sample's clock by the speed and move it to now, so that an event's exchange time is the
        # moment it is written: the rolling windows of the stats then show the cascade as it happens.
        speed = self.args.speed if self.args.speed > 0 else 1000.0
        start_ms = int(time.time() * 1000)
        started = time.monotonic()
        events = 0
        for block in blocks:
            offset = (block["events"][0][1]["time"] - first) / speed
            if self.args.speed > 0:
                await asyncio.sleep(max(0.0, started + offset / 1000 - time.monotonic()))
            block_ms = start_ms + int(offset)
            events += _retime(block, block_ms)
            path = hour_path(self.workdir, block_ms)
            path.parent.mkdir(parents=True, exist_ok=True)
            with path.open("ab") as handle:
                handle.write(msgspec.json.encode(block) + b"\n")
        return events

    async def run(self) -> int:
        await self.reset_stream()
        print(f"demo: stream {self.args.stream!r} on {redact_url(self.args.redis_url)}, source {self.args.source}")
        producer_log = "INFO" if self.args.verbose else "WARNING"
        fake: FakeHyperliquid | None = None
        if self.args.source == "node":
            await self.spawn(
                "producer",
                "producer",
                self.env(
                    HL_SOURCE="node",
                    HL_NODE_PATH=str(self.workdir),
                    HL_NODE_FROM=str(int(time.time() * 1000) - 1000),
                    HL_POLL_INTERVAL="0.5",
                    LOG_LEVEL=producer_log,
                ),
            )
        else:
            fake = FakeHyperliquid()
            fake.load(demo_scenario())
            await fake.start()
            print(f"demo: fake exchange API at {fake.url}/info")
            await self.spawn(
                "producer",
                "producer",
                self.env(
                    HL_API_URL=fake.url,
                    HL_WATCHLIST=",".join(DEMO_WATCHLIST),
                    HL_LOOKBACK=str(10 * 365 * 86400),
                    HL_POLL_INTERVAL="2",
                    LOG_LEVEL=producer_log,
                ),
            )
        await self.start_consumers()
        try:
            if self.args.source == "node":
                written = await self.play_node_files()
                print(f"demo: the sample cascade is written ({written} liquidation and ADL fills)")
            published = await self.wait_for_stream()
            print(f"demo: {published} events in {self.args.stream!r}; stopping (the stats print a last table)")
        finally:
            await self.stop()
            if fake is not None:
                await fake.stop()
        return 0

    async def wait_for_stream(self, quiet_seconds: float = 2.0) -> int:
        """Until the stream stops growing for a few seconds: the producer has caught up."""
        client = aioredis.Redis.from_url(self.args.redis_url)
        try:
            last, since = -1, time.monotonic()
            while True:
                length = int(await client.xlen(self.args.stream))
                if length != last:
                    last, since = length, time.monotonic()
                elif length and time.monotonic() - since >= quiet_seconds:
                    return length
                await asyncio.sleep(0.25)
        finally:
            await client.aclose()

    async def stop(self) -> None:
        for proc in self.procs:
            if proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                await asyncio.wait_for(proc.wait(), 15)
            except TimeoutError:
                proc.kill()
                await proc.wait()
        for pipe in self.pipes:
            with contextlib.suppress(asyncio.CancelledError):
                await pipe


def _retime(block: dict[str, Any], block_ms: int) -> int:
    """Give every fill of the block its new block time; returns the block's liquidation and ADL fills."""
    count = 0
    for _, fill in block["events"]:
        fill["time"] = block_ms
        count += "liquidation" in fill
    return count


async def _main(args: argparse.Namespace) -> int:
    with tempfile.TemporaryDirectory(prefix="hl-demo-") as tmp:
        demo = Demo(args, Path(tmp))
        task = asyncio.ensure_future(demo.run())
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, task.cancel)
        try:
            return await task
        except asyncio.CancelledError:
            await demo.stop()
            return 0


def main(argv: Sequence[str] | None = None) -> int:
    return asyncio.run(_main(parse_args(argv)))


if __name__ == "__main__":
    raise SystemExit(main())
