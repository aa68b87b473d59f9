"""WebSocket sources' latency and burst rate: from a fake feed's push to the entry in the stream, through the real loop.

    python bench/latency_feeds.py [--redis-url redis://127.0.0.1:6379/0] [--isolated 10] [--stream-blocks 200]
                                  [--gap-ms 20] [--burst-events 20000] [--per-block 10] [--quiet 1.0]

Each source runs in this process as the producer runs it: :class:`producer.service.Producer`'s loop (poll, detect,
outbox, the publisher's Lua script) with the source put in place of the configured one, its interval an hour, so
only the source's own wake-up can make it quick. The fake feeds (:class:`FakeFeeds`) serve it on 127.0.0.1 and
this process pushes blocks built by :class:`ScenarioBuilder` through :func:`blocks_of`, one liquidation per block
(``--per-block`` in a burst). The stream is the real Redis's, under a key prefix of its own, deleted at the end.

How latency is measured: the push is stamped (``perf_counter``) just before the fake sends the block; a reader on
its own Redis connection waits with XREAD BLOCK and stamps the moment an entry's reply reaches it, and the entry is
matched to its block by the event's transaction hash. So a figure is "the push started" to "a client of the stream
can read it", which is what a consumer sees. The entry id's own millisecond is not used: too coarse for a 5 ms goal.
Fake, producer and reader share this process's event loop and its one core, so the figures include their contention
(a pessimistic bias; the producer would have a core of its own in production).

Figures, per source:

- **isolated**: one block, then nothing until it is in the stream. The hosted source holds a block until a later
  block arrives or ``quiet`` seconds pass (a provider may split a block over messages), so this is about ``quiet``.
- **in a stream of blocks**: a block every ``--gap-ms``; push to entry, and from the *latest push* before the
  entry appeared (for a source that holds a block until the next one, that push is what released it: the cost of
  the path itself). A closer block follows the last one, so every measured block has a successor, as on a chain.
- **burst**: ``--burst-events`` liquidations pushed back to back (a yield between blocks, as ``FakeFeeds.burst``);
  events per second from the first push to the last event's entry.

Anchors, measured in the same run on the same loop, so a noisy machine's figures read as ratios: a WebSocket
round trip to the same fake (``{"method": "ping"}`` -> pong, two one-way trips) and a plain XADD round trip to
the same Redis. Their sum is about the floor of push -> entry (one frame over, one script, one reply read).

Goals printed beside the figures: p99 < 5 ms for a WebSocket source, >= 20k events/s in a burst. Another source
is one more :class:`Subject` in :data:`SUBJECTS`: how to make it for the fake, and how to push a block to it.
Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import random
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import aiohttp
from redis.asyncio import Redis

from bench.figures import Latencies, delete_stream_keys
from plumbing.options import Secret
from producer.client import HyperliquidClient
from producer.config import ProducerConfig
from producer.service import Producer
from producer.simulation.fake_exchange import running_fake
from producer.simulation.fake_feeds import FakeFeeds, Pair, blocks_of
from producer.simulation.scenarios import DEMO_MAKERS, ScenarioBuilder
from producer.sources.base import LiquidationSource
from producer.sources.hosted import HostedDialect, HostedSource, feed_settings
from producer.sources.ws import WsSource
from schemas import decode_entry

GOAL_P99_MS = 5.0
GOAL_BURST_RATE = 20_000.0
DEFAULT_QUIET = ProducerConfig().hosted_quiet
MAKERS: tuple[str, ...] = DEMO_MAKERS
"""Who takes the other side of every liquidation pushed: a source that watches users (the public feed) watches
these."""

Block = list[Pair]
MakeSource = Callable[[FakeFeeds], LiquidationSource]
Push = Callable[[FakeFeeds, Sequence[Pair]], Awaitable[None]]


async def push_block(fake: FakeFeeds, pairs: Sequence[Pair]) -> None:
    """One block to every subscriber of the fake: its owners' ``userFills`` and the providers' liquidation feeds."""
    await fake.push(pairs)


@dataclass(frozen=True)
class Subject:
    """A source under test: its name in the table, how to make it against the fake, and how to push it a block."""

    label: str
    make_source: MakeSource
    push: Push = push_block


def hosted(dialect: HostedDialect, quiet: float) -> MakeSource:
    """The hosted source on ``dialect``'s endpoint of the fake, with the fake's key, as ``build_source`` makes it."""

    def make(fake: FakeFeeds) -> LiquidationSource:
        url = fake.hydromancer_url() if dialect == "hydromancer" else fake.goldrush_url()
        bare, _, _ = url.partition("?")  # feed_settings adds the key parameter itself
        key = Secret(fake.token if dialect == "hydromancer" else fake.key)
        return HostedSource(feed_settings(dialect, bare, key), quiet=quiet)

    return make


def public(fake: FakeFeeds) -> LiquidationSource:
    """The ws source watching the makers, its gap-fills read from the fake exchange the feeds are served beside."""
    client = HyperliquidClient(fake.base_url)
    return WsSource(client, MAKERS, url=fake.public_url, lookback_ms=2 * 86_400_000, quiet=ProducerConfig().ws_quiet)


def subjects(quiet: float) -> list[Subject]:
    return [
        Subject("hosted hydromancer", hosted("hydromancer", quiet)),
        Subject("hosted goldrush", hosted("goldrush", quiet)),
        Subject("ws (public userFills)", public),
    ]


# ---------------------------------------------------------------------------------------------- what is pushed


class Blocks:
    """Blocks of liquidations whose block times only grow (a source orders blocks by them), every liquidation its
    own transaction, so an entry names its block by its hash."""

    def __init__(self) -> None:
        self.next_ms = int(time.time() * 1000) - 86_400_000  # a day ago: never ahead of the producer's clock
        self.seeds = random.Random(1)
        self.coins = ("BTC", "ETH", "SOL")

    def make(self, count: int, per_block: int = 1) -> list[tuple[Block, list[str]]]:
        """``count`` blocks of ``per_block`` liquidations each, a second apart; with each block, its hashes."""
        builder = ScenarioBuilder(seed=self.seeds.getrandbits(64), start_ms=self.next_ms)
        for index in range(count):
            for i in range(per_block):
                builder.market_liquidation(
                    coin=self.coins[i % len(self.coins)],
                    side=("long", "short")[i % 2],
                    makers=[MAKERS[i % len(MAKERS)]],
                    time_ms=self.next_ms + index * 1000,
                )
        self.next_ms += count * 1000
        scenario = builder.build()
        hashes: dict[int, list[str]] = {}
        for liquidation in scenario.liquidations:
            hashes.setdefault(liquidation.timestamp, []).append(liquidation.tx_hash)
        return [(block, hashes[block[0][1]["time"]]) for block in blocks_of(scenario)]


# ---------------------------------------------------------------------------------------------- what arrives


class StreamReader:
    """Reads the stream as a consumer would (XREAD BLOCK on its own connection) and stamps when each hash appeared."""

    def __init__(self, redis: Redis, stream: str) -> None:
        self.redis = redis
        self.stream = stream
        self.seen: dict[str, float] = {}
        self.stopped = False
        self._changed = asyncio.Event()

    async def run(self) -> None:
        """Until :attr:`stopped`: it is not cancelled, since a cancelled XREAD BLOCK can leave redis-py waiting."""
        last: Any = "0-0"
        while not self.stopped:
            answer: Any = await self.redis.xread({self.stream: last}, count=10_000, block=200)
            if not answer:
                continue
            now = time.perf_counter()
            for entry_id, fields in answer[0][1]:
                last = entry_id
                self.seen.setdefault(decode_entry(fields).tx_hash, now)
            self._changed.set()

    async def wait_for(self, hashes: Collection[str], within: float) -> bool:
        """Whether every one of ``hashes`` is in the stream within ``within`` seconds."""
        deadline = time.monotonic() + within
        while not all(h in self.seen for h in hashes):
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), timeout=left)
            except TimeoutError:
                return False
        return True


@dataclass(frozen=True)
class Burst:
    events: int
    elapsed: float
    """Seconds from the first push to the last event's entry."""
    pushing: float
    """Seconds of it spent inside the fake's push calls: the fake's own work, on the producer's loop and core."""

    @property
    def rate(self) -> float:
        return self.events / self.elapsed

    @property
    def rate_without_fake(self) -> float:
        """An estimate of the producer's own rate: the fake's time taken out, as if it ran on a machine of its own."""
        return self.events / max(self.elapsed - self.pushing, 1e-9)


@dataclass(frozen=True)
class SourceFigures:
    isolated: Latencies
    stream: Latencies
    released: Latencies
    """In the stream of blocks, from the latest push before the entry appeared."""
    burst: Burst


@dataclass(frozen=True)
class Counts:
    isolated: int
    stream_blocks: int
    gap: float
    burst_events: int
    per_block: int
    quiet: float
    """The hosted source's hold, seconds: how long a lone block may wait before the source releases it."""

    @property
    def wait(self) -> float:
        """Longest wait for an entry, in seconds: well beyond any hold a source may have."""
        return self.quiet + 10.0


def ms(seconds: float) -> float:
    return seconds * 1000


async def measure(subject: Subject, redis_url: str, stream: str, counts: Counts) -> SourceFigures:
    """The three figures of one source, through one producer loop against one fake."""
    blocks = Blocks()
    async with running_fake() as exchange:
        fake = exchange.feeds  # the feeds on the fake exchange's port, beside the info API the ws source reads
        config = ProducerConfig(redis_url=redis_url, stream=stream, poll_interval=3600.0, log_level="WARNING")
        producer = Producer(config)
        producer.source.close()
        producer.source = subject.make_source(fake)
        reader = StreamReader(Redis.from_url(redis_url), stream)
        running, reading = asyncio.ensure_future(producer.run()), asyncio.ensure_future(reader.run())
        try:
            await warm_up(subject, fake, reader, blocks, counts.quiet, running)
            isolated = await measure_isolated(subject, fake, reader, blocks, counts)
            stream_figures, released = await measure_stream(subject, fake, reader, blocks, counts)
            burst = await measure_burst(subject, fake, reader, blocks, counts)
        finally:
            producer.stop()
            reader.stopped = True
            await asyncio.gather(running, reading, return_exceptions=True)
            await reader.redis.aclose()
            if isinstance(producer.source, WsSource):
                await producer.source.client.close()  # its own client, to the fake exchange
    return SourceFigures(isolated, stream_figures, released, burst)


async def warm_up(
    subject: Subject, fake: FakeFeeds, reader: StreamReader, blocks: Blocks, quiet: float, running: asyncio.Future[int]
) -> None:
    """Push a block until one reaches the stream: a push before the source has subscribed is lost, as live."""
    for _ in range(30):
        if running.done():
            raise SystemExit(f"{subject.label}: the producer stopped: {running.exception() or running.result()}")
        [(block, hashes)] = blocks.make(1)
        await subject.push(fake, block)
        if await reader.wait_for(hashes, within=quiet + 0.5):
            return
    raise SystemExit(f"{subject.label}: no warm-up block reached the stream in 30 tries (is Redis up? subscribed?)")


async def measure_isolated(
    subject: Subject, fake: FakeFeeds, reader: StreamReader, blocks: Blocks, counts: Counts
) -> Latencies:
    latencies: list[float] = []
    for block, hashes in blocks.make(counts.isolated):
        await asyncio.sleep(random.uniform(0.0, 0.05))  # out of step with any timer the source has
        pushed = time.perf_counter()
        await subject.push(fake, block)
        if not await reader.wait_for(hashes, within=counts.wait):
            raise SystemExit(f"{subject.label}: an isolated block did not reach the stream within {counts.wait:g} s")
        latencies.append(ms(reader.seen[hashes[0]] - pushed))
    return Latencies.of(latencies)


async def measure_stream(
    subject: Subject, fake: FakeFeeds, reader: StreamReader, blocks: Blocks, counts: Counts
) -> tuple[Latencies, Latencies]:
    made = blocks.make(counts.stream_blocks + 1)  # the last one only closes the stream
    pushes: list[float] = []
    started = time.perf_counter()
    for index, (block, _) in enumerate(made):
        await asyncio.sleep(max(0.0, started + index * counts.gap - time.perf_counter()))
        pushes.append(time.perf_counter())
        await subject.push(fake, block)
    measured = made[:-1]
    hashes = [h for _, block_hashes in measured for h in block_hashes]
    if not await reader.wait_for(hashes, within=counts.wait):
        raise SystemExit(f"{subject.label}: a block of the stream did not reach the stream within {counts.wait:g} s")
    since_push: list[float] = []
    since_latest: list[float] = []
    for pushed, (_, block_hashes) in zip(pushes, measured, strict=False):
        seen = reader.seen[block_hashes[0]]
        latest = pushes[bisect.bisect_right(pushes, seen) - 1]  # at least ``pushed``: it was seen after it
        since_push.append(ms(seen - pushed))
        since_latest.append(ms(seen - latest))
    return Latencies.of(since_push), Latencies.of(since_latest)


async def measure_burst(
    subject: Subject, fake: FakeFeeds, reader: StreamReader, blocks: Blocks, counts: Counts
) -> Burst:
    """The burst through the whole path, and the time the fake spent pushing it (it shares the loop)."""
    made = blocks.make(max(1, counts.burst_events // counts.per_block), counts.per_block)
    closer = blocks.make(1)
    hashes = [h for _, block_hashes in made for h in block_hashes]
    pushing = 0.0
    started = time.perf_counter()
    for block, _ in [*made, *closer]:
        before = time.perf_counter()
        await subject.push(fake, block)
        pushing += time.perf_counter() - before
        await asyncio.sleep(0)
    if not await reader.wait_for(hashes, within=counts.wait + len(hashes) / 1000):
        raise SystemExit(f"{subject.label}: the burst did not reach the stream")
    return Burst(len(hashes), max(reader.seen[h] for h in hashes) - started, pushing)


# ---------------------------------------------------------------------------------------------- anchors


async def websocket_round_trips(rounds: int) -> Latencies:
    """Ping -> pong over the fake's public endpoint: the loopback WebSocket's own cost, on this loop."""
    async with FakeFeeds() as fake, aiohttp.ClientSession() as session, session.ws_connect(fake.public_url) as ws:
        latencies: list[float] = []
        for _ in range(rounds + 5):
            started = time.perf_counter()
            await ws.send_str('{"method":"ping"}')
            await ws.receive()
            latencies.append(ms(time.perf_counter() - started))
        return Latencies.of(latencies[5:])


async def xadd_round_trips(redis: Redis, stream: str, rounds: int) -> Latencies:
    """A plain XADD to the same Redis, awaited: the floor of any publish."""
    latencies: list[float] = []
    for i in range(rounds + 5):
        started = time.perf_counter()
        await redis.xadd(stream, {"n": i})
        latencies.append(ms(time.perf_counter() - started))
    return Latencies.of(latencies[5:])


# ---------------------------------------------------------------------------------------------- output


def verdict(met: bool) -> str:
    return "meets" if met else "MISSES"


def report(subject: Subject, figures: SourceFigures, floor_ms: float, counts: Counts, quiet: float) -> None:
    print(f"{subject.label}:")
    print(f"  isolated liquidation        {figures.isolated.line()}")
    print(f"  in a stream (every {ms(counts.gap):g} ms)  {figures.stream.line()}")
    print(f"    from the latest push      {figures.released.line()}")
    burst = figures.burst
    print(
        f"  burst of {burst.events} events: {burst.rate:,.0f} events/s push -> stream; "
        f"{burst.rate_without_fake:,.0f}/s without the fake's own time ({burst.pushing / burst.elapsed:.0%} of it)"
    )
    for name, latencies in (
        ("isolated", figures.isolated),
        ("in a stream", figures.stream),
        ("in a stream from the latest push", figures.released),
    ):
        print(
            f"  goal p99 < {GOAL_P99_MS:g} ms, {name}: {verdict(latencies.p99 < GOAL_P99_MS)} it "
            f"(p50 {latencies.p50 / floor_ms:.1f}x the anchors' floor)"
        )
    print(
        f"  goal >= {GOAL_BURST_RATE:,.0f} events/s in a burst: {verdict(burst.rate >= GOAL_BURST_RATE)} it "
        f"({burst.rate / GOAL_BURST_RATE:.2f}x; without the fake's time "
        f"{burst.rate_without_fake / GOAL_BURST_RATE:.2f}x)"
    )
    if figures.isolated.p99 >= GOAL_P99_MS and figures.isolated.p50 >= 0.5 * ms(quiet):
        print(
            f"  note: an isolated liquidation waits out the source's quiet hold ({quiet:g} s) before it is published: "
            "the goal is out of reach for it until the hold is shorter or skipped for a block known complete"
        )
    if figures.stream.p50 >= 0.5 * ms(counts.gap) and figures.released.p99 < figures.stream.p99:
        print(
            "  note: in a stream a block waits for the next one to arrive (the hold), so push -> entry is about the "
            "gap between blocks; 'from the latest push' is the path's own cost"
        )


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--key-prefix", default=None, help="prefix of every key made (default bench:<random hex>)")
    parser.add_argument("--isolated", type=int, default=10, help="isolated blocks per source")
    parser.add_argument("--stream-blocks", type=int, default=200, help="blocks of the steady stream per source")
    parser.add_argument("--gap-ms", type=float, default=20.0, help="between blocks of the steady stream")
    parser.add_argument("--burst-events", type=int, default=20_000)
    parser.add_argument("--per-block", type=int, default=10, help="liquidations per block of the burst")
    parser.add_argument("--anchor-rounds", type=int, default=200)
    parser.add_argument("--quiet", type=float, default=DEFAULT_QUIET, help="the hosted source's hold, seconds")
    args = parser.parse_args(argv)
    if min(args.isolated, args.stream_blocks, args.burst_events, args.per_block, args.anchor_rounds) < 1:
        parser.error("every count must be at least 1")
    if args.gap_ms < 0 or args.quiet <= 0:
        parser.error("--gap-ms must be >= 0 and --quiet > 0")
    return args


async def run(args: argparse.Namespace) -> None:
    prefix = args.key_prefix or f"bench:{uuid.uuid4().hex[:8]}"
    counts = Counts(
        isolated=args.isolated,
        stream_blocks=args.stream_blocks,
        gap=args.gap_ms / 1000,
        burst_events=args.burst_events,
        per_block=args.per_block,
        quiet=args.quiet,
    )
    redis = Redis.from_url(args.redis_url)
    streams: list[str] = []
    print(f"WebSocket sources: fake feed push -> stream entry through the producer's loop, Redis at {args.redis_url}")
    try:
        anchor_stream = f"{prefix}:anchor"
        streams.append(anchor_stream)
        ws_rtt = await websocket_round_trips(args.anchor_rounds)
        xadd = await xadd_round_trips(redis, anchor_stream, args.anchor_rounds)
        floor = ws_rtt.p50 + xadd.p50
        print(f"anchor: WebSocket ping -> pong    {ws_rtt.line()}")
        print(f"anchor: XADD round trip           {xadd.line()}")
        print(f"  floor (the two p50s added): {floor:.2f} ms")
        for index, subject in enumerate(subjects(args.quiet)):
            stream = f"{prefix}:{index}:liq"
            streams.append(stream)
            figures = await measure(subject, args.redis_url, stream, counts)
            report(subject, figures, floor, counts, args.quiet)
    finally:
        for stream in streams:
            await delete_stream_keys(redis, stream)
        await redis.aclose()


def main(argv: list[str] | None = None) -> None:
    asyncio.run(run(parse(argv)))


if __name__ == "__main__":
    main()
