"""python -m producer.demo: the whole pipeline, offline, in one command.

Node mode (the default) plays the shipped sample cascade (producer/simulation/data) into a temporary
directory laid out like a node's output, block by block at --speed times real time (re-timed to now, so the
rolling windows fill), while the real processes run against the local Redis: the producer following the files
with the node source, the alerter and the stats aggregator. Fills mode instead serves the fake exchange API
on 127.0.0.1 and runs the producer's polling source against it; ws mode serves the fake exchange's WebSocket too,
with half the scenario as history (the snapshot and the gap-fill) and the rest pushed live. Hosted mode serves a
fake Hydromancer feed and pushes the same scenario's liquidation fills to the producer's hosted source. Either way
a new user sees alerts and a statistics table within seconds, on a stream of its own (demo:liquidations) that the
demo resets first.

When it ends (on its own, on Ctrl-C or on SIGTERM) it removes every key it created from Redis: the stream,
its consumer groups, dedup keys, the checkpoint, alert markers and statistics snapshots.
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
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

import msgspec
from redis.asyncio.connection import parse_url
from redis.exceptions import AuthenticationError, RedisError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from plumbing.errors import ConfigError
from plumbing.options import (
    LineWrappingHelpFormatter,
    add_options,
    environ,
    invoked_as,
    non_empty,
    non_negative_decimal,
    non_negative_float,
    parse_value,
    redact_url,
    resolve,
)
from plumbing.redis_connect import RedisClient, RedisSettings, connect_redis, redis_options
from producer.publisher import key_namespace
from producer.simulation.fake_exchange import FakeHyperliquid
from producer.simulation.fake_feeds import FakeFeeds, blocks_of
from producer.simulation.sample import hour_path, load_blocks
from producer.simulation.scenarios import DEMO_WATCHLIST, Fill, demo_scenario

EXIT_FAILED = 1
EXIT_CONFIG = 2

REDIS_OPTIONS = redis_options("Redis to use; the demo touches only its own stream's keys")


class DemoError(Exception):
    """The demo cannot go on; the message says why and what to do, in one line."""


@dataclass(frozen=True, kw_only=True)
class DemoConfig(RedisSettings):
    source: Literal["node", "fills", "ws", "hosted"] = "node"
    speed: float = 10.0
    """Times real time; 0 plays the sample as fast as the processes take it."""
    stream: str = "demo:liquidations"
    threshold_usd: Decimal | None = None
    """None: the source's own default (:data:`DEFAULT_THRESHOLDS`)."""
    verbose: bool = False

    @property
    def alert_threshold(self) -> Decimal:
        return DEFAULT_THRESHOLDS[self.source] if self.threshold_usd is None else self.threshold_usd


DEFAULT_THRESHOLDS: dict[str, Decimal] = {
    "node": Decimal(50_000),
    "fills": Decimal(10_000),
    "ws": Decimal(10_000),
    "hosted": Decimal(10_000),
}
"""Each source's sample has a few liquidations above its threshold: the fills scenario is smaller than the
cascade, and a threshold it never reaches would show a new user no alert at all."""


FILLS_SCENARIO_AGE_MS = 31 * 60_000


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=invoked_as("producer.demo"), description=__doc__, formatter_class=LineWrappingHelpFormatter
    )
    parser.add_argument(
        "--source",
        choices=("node", "fills", "ws", "hosted"),
        default="node",
        help="node: replay the sample cascade as a node's files; fills: serve the fake exchange API; "
        "ws: serve its public WebSocket too and push half the fills scenario live; "
        "hosted: push the fills scenario's liquidations over a fake provider's feed",
    )
    parser.add_argument(
        "--speed", default="10", help="replay speed, times real time (0: as fast as possible) (default: 10)"
    )
    add_options(parser, REDIS_OPTIONS)
    parser.add_argument("--stream", default="demo:liquidations", help="stream the demo resets, uses and removes")
    parser.add_argument(
        "--threshold-usd",
        default=None,
        help="alert threshold for the demo (default: 50000 for node, 10000 for the others: a few alerts either way)",
    )
    parser.add_argument("--verbose", action="store_true", help="show the producer's log line for every event")
    return parser


def load_demo_config(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> DemoConfig:
    """The demo's settings, each checked with the parser the real processes use for the same kind of value, so a
    typo stops here in one line instead of in a child process's traceback."""
    args = build_parser().parse_args(argv)
    redis = resolve(args, environ(env), REDIS_OPTIONS)
    return DemoConfig(
        **redis,
        source=args.source,
        speed=parse_value("--speed", args.speed, non_negative_float),
        stream=parse_value("--stream", args.stream, non_empty),
        threshold_usd=None
        if args.threshold_usd is None
        else parse_value("--threshold-usd", args.threshold_usd, non_negative_decimal),
        verbose=args.verbose,
    )


def redis_problem(exc: RedisError, url: str) -> str:
    """What a Redis failure means to someone trying the demo, and what to do about it."""
    shown = redact_url(url)
    # AuthenticationError is a ConnectionError to redis-py; to a user it is the opposite of "no Redis".
    if isinstance(exc, AuthenticationError):
        if parse_url(url).get("password") is None:
            return (
                f"authentication failed: Redis at {shown} wants a password; put it in REDIS_URL, "
                "as redis://:password@host:6379/0 (or redis://user:password@... for an ACL user)"
            )
        return f"authentication failed at Redis {shown}: the user or password in REDIS_URL is wrong"
    if isinstance(exc, RedisConnectionError | RedisTimeoutError):
        return f"no Redis at {shown}: start one with `redis-server` (or set REDIS_URL)"
    return f"Redis at {shown} refused the demo ({exc}): use a Redis, or a Redis user, that allows it"


def key_patterns(stream: str) -> tuple[str, ...]:
    """SCAN patterns of every key the demo's processes create besides the stream: the producer's dedup keys and
    checkpoint under the stream's hash tag, and the consumers' ``<stream>:...`` keys (alert markers, statistics
    snapshots, dead letters). Glob characters in the name are escaped, so a stream named ``*`` cannot match the
    user's other keys."""
    return (f"{_glob_escape(key_namespace(stream))}*", f"{_glob_escape(stream)}:*")


def _glob_escape(text: str) -> str:
    return "".join(f"\\{c}" if c in "*?[]\\" else c for c in text)


class Demo:
    def __init__(self, config: DemoConfig, workdir: Path) -> None:
        self.config = config
        self.workdir = workdir
        self.procs: list[tuple[str, asyncio.subprocess.Process]] = []
        self.pipes: list[asyncio.Task[None]] = []
        self.feeds: FakeFeeds | None = None
        self.to_push: list[list[tuple[str, Fill]]] = []
        """Blocks of the fills scenario (dated to the last half hour, so the stats' windows fill) to push live."""

    def env(self, **extra: str) -> dict[str, str]:
        keep = {k: v for k, v in os.environ.items() if not k.startswith(("HL_", "LIQ_", "ALERT_", "STATS_"))}
        return {**keep, **self.config.redis_env(), "LIQ_STREAM": self.config.stream, **extra}

    async def spawn(self, label: str, module: str, env: dict[str, str]) -> None:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", module, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
        )
        self.procs.append((label, proc))
        self.pipes.append(asyncio.create_task(self._relay(label, proc)))

    async def _relay(self, label: str, proc: asyncio.subprocess.Process) -> None:
        assert proc.stdout is not None
        async for raw in proc.stdout:
            sys.stdout.write(f"[{label}] {raw.decode(errors='replace')}")
            sys.stdout.flush()

    def check_processes(self) -> None:
        """A process that exits before the demo stops it would leave the demo waiting for ever."""
        for label, proc in self.procs:
            if proc.returncode is not None:
                raise DemoError(f"the {label} exited with code {proc.returncode}: its last lines, above, say why")

    async def remove_keys(self, client: RedisClient) -> int:
        """Delete the stream and every key the demo's processes made for it; returns how many there were."""
        keys: list[Any] = [self.config.stream]
        for pattern in key_patterns(self.config.stream):
            keys += [k async for k in client.scan_iter(match=pattern, count=1000)]
        return int(await client.delete(*keys))

    async def start_consumers(self) -> None:
        common = {"LIQ_GROUP_START": "0", "LIQ_BLOCK_MS": "500", "LOG_LEVEL": "WARNING"}
        await self.spawn(
            "alerter",
            "consumers.alerter",
            self.env(
                **common,
                LIQ_GROUP="demo-alerter",
                ALERT_THRESHOLD_USD=str(self.config.alert_threshold),
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
        speed = self.config.speed if self.config.speed > 0 else 1000.0
        start_ms = int(time.time() * 1000)
        started = time.monotonic()
        events = 0
        for block in blocks:
            offset = (block["events"][0][1]["time"] - first) / speed
            if self.config.speed > 0:
                await asyncio.sleep(max(0.0, started + offset / 1000 - time.monotonic()))
                self.check_processes()
            block_ms = start_ms + int(offset)
            events += _retime(block, block_ms)
            path = hour_path(self.workdir, block_ms)
            path.parent.mkdir(parents=True, exist_ok=True)
            with path.open("ab") as handle:
                handle.write(msgspec.json.encode(block) + b"\n")
        return events

    async def run(self) -> int:
        """Check Redis, reset the stream, run the pipeline until the stream stops growing, then stop the processes
        and remove the keys, also when cancelled (Ctrl-C, SIGTERM) or failing half-way."""
        client = connect_redis(self.config, socket_timeout=None, socket_connect_timeout=5)
        try:
            await client.ping()
            await self.remove_keys(client)
            shown = self.config.redis_where()
            print(f"demo: stream {self.config.stream!r} on {shown}, source {self.config.source}")
            fake: FakeHyperliquid | None = None
            try:
                fake = await self.start_producer()
                await self.start_consumers()
                if self.config.source == "node":
                    written = await self.play_node_files()
                    print(f"demo: the sample cascade is written ({written} liquidation and ADL fills)")
                if self.feeds is not None:
                    pushed = await self.push_to_feed(self.feeds)
                    print(f"demo: the fake feed pushed {pushed} blocks of liquidation fills")
                published = await self.wait_for_stream(client)
                print(f"demo: {published} events in {self.config.stream!r}; stopping (the stats print a last table)")
            finally:
                await self.stop()
                if fake is not None:
                    await fake.stop()
                if self.feeds is not None:
                    await self.feeds.stop()
                removed = await self.remove_keys(client)
                print(f"demo: removed the demo's {removed} keys from Redis")
        finally:
            await client.aclose()
        return 0

    async def start_producer(self) -> FakeHyperliquid | None:
        """The producer on the chosen source; for fills, also the fake exchange it polls (returned, to stop it)."""
        producer_log = "INFO" if self.config.verbose else "WARNING"
        if self.config.source == "node":
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
            return None
        if self.config.source == "hosted":
            await self.start_hosted_producer(producer_log)
            return None
        fake = FakeHyperliquid()
        # Dated to the last half hour (the scenario spans about 29 minutes), so the 5m/1h/24h windows fill.
        scenario = demo_scenario(start_ms=int(time.time() * 1000) - FILLS_SCENARIO_AGE_MS)
        if self.config.source == "ws":
            blocks = blocks_of(scenario)
            half = len(blocks) // 2
            for address, fill in (pair for block in blocks[:half] for pair in block):
                fake.add_fills(address, [fill])
            self.feeds, self.to_push = fake.feeds, blocks[half:]
        else:
            fake.load(scenario)
        await fake.start()
        print(
            f"demo: fake exchange API at {fake.url}/info"
            + (f", its WebSocket at {fake.feeds.public_url}" if self.feeds else "")
        )
        await self.spawn(
            "producer",
            "producer",
            self.env(
                HL_SOURCE=self.config.source,
                HL_WS_QUIET="0.2",
                HL_API_URL=fake.url,
                HL_WATCHLIST=",".join(DEMO_WATCHLIST),
                HL_LOOKBACK="3600",
                HL_POLL_INTERVAL="2",
                # The fake exchange has no request limit: mainnet's budget would stretch the demo to 40 s.
                HL_WEIGHT_PER_MINUTE="100000",
                LOG_LEVEL=producer_log,
            ),
        )
        return fake

    async def start_hosted_producer(self, producer_log: str) -> None:
        """A fake Hydromancer feed (kept in :attr:`feeds`, to push to and stop) and the producer reading it."""
        self.feeds = FakeFeeds()
        self.to_push = blocks_of(demo_scenario(start_ms=int(time.time() * 1000) - FILLS_SCENARIO_AGE_MS))
        await self.feeds.start()
        url = self.feeds.hydromancer_url().partition("?")[0]
        print(f"demo: fake Hydromancer feed at {url}")
        await self.spawn(
            "producer",
            "producer",
            self.env(
                HL_SOURCE="hosted",
                HL_HOSTED_DIALECT="hydromancer",
                HL_HOSTED_URL=url,
                HL_HOSTED_KEY=self.feeds.token,
                HL_HOSTED_QUIET="0.2",
                LOG_LEVEL=producer_log,
            ),
        )

    async def push_to_feed(self, feeds: FakeFeeds, within: float = 30.0) -> int:
        """Once the producer has subscribed, push :attr:`to_push` block by block; returns the blocks pushed."""
        deadline = time.monotonic() + within
        while not subscribed(feeds):
            self.check_processes()
            if time.monotonic() > deadline:
                raise DemoError(f"the producer did not subscribe to the fake feed within {within:g}s")
            await asyncio.sleep(0.1)
        await feeds.burst(self.to_push)
        return len(self.to_push)

    async def wait_for_stream(self, client: RedisClient, quiet_seconds: float = 2.0) -> int:
        """Until the stream stops growing for a few seconds: the producer has caught up."""
        last, since = -1, time.monotonic()
        while True:
            self.check_processes()
            length = int(await client.xlen(self.config.stream))
            if length != last:
                last, since = length, time.monotonic()
            elif length and time.monotonic() - since >= quiet_seconds:
                return length
            await asyncio.sleep(0.25)

    async def stop(self) -> None:
        for _, proc in self.procs:
            if proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
        for _, proc in self.procs:
            try:
                await asyncio.wait_for(proc.wait(), 15)
            except TimeoutError:
                proc.kill()
                await proc.wait()
        for pipe in self.pipes:
            with contextlib.suppress(asyncio.CancelledError):
                await pipe


def subscribed(feeds: FakeFeeds) -> bool:
    """The producer has subscribed: to Hydromancer's liquidations, or to a user's fills on the public feed."""
    hosted = any(conn.session is not None and conn.session.subscribed for conn in feeds.live("hydromancer"))
    return hosted or any(conn.users for conn in feeds.live("public"))


def _retime(block: dict[str, Any], block_ms: int) -> int:
    """Give every fill of the block its new block time; returns the block's liquidation and ADL fills."""
    count = 0
    for _, fill in block["events"]:
        fill["time"] = block_ms
        count += "liquidation" in fill
    return count


async def _main(config: DemoConfig) -> int:
    with tempfile.TemporaryDirectory(prefix="hl-demo-") as tmp:
        demo = Demo(config, Path(tmp))
        task = asyncio.create_task(demo.run())
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, _cancel_once(task))
        try:
            return await task
        except asyncio.CancelledError:
            return 0


def _cancel_once(task: asyncio.Task[int]) -> Callable[[], None]:
    """A second Ctrl-C while the demo stops its processes and removes its keys must not cut the clean-up short."""

    def cancel() -> None:
        if not task.cancelling():
            task.cancel()

    return cancel


def main(argv: Sequence[str] | None = None) -> int:
    try:
        config = load_demo_config(argv)
    except ConfigError as exc:
        sys.stderr.write(f"configuration error: {exc}\n")
        return EXIT_CONFIG
    try:
        return asyncio.run(_main(config))
    except DemoError as exc:
        sys.stderr.write(f"demo: {exc}\n")
    except RedisError as exc:
        sys.stderr.write(f"demo: {redis_problem(exc, config.redis_url)}\n")
    return EXIT_FAILED


if __name__ == "__main__":
    raise SystemExit(main())
