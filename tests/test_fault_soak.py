"""A bounded soak: a few minutes of steady liquidations through every process.

What only time shows: each process's memory stays flat (no per-event growth beyond the bounded caches), the
stream stays within MAXLEN (approximate trimming: at most one macro node, 100 entries, over), dedup keys expire
after LIQ_DEDUP_TTL so their number levels off at about rate x TTL, and every event still reaches every group
exactly once although the stream no longer holds them all at the end (the test reads it as it goes).

``FAULT_SOAK_S`` sets the duration (default 150 s).
"""

from __future__ import annotations

import asyncio
import os
import re
import time
from collections.abc import Iterable, Mapping
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from schemas import decode_entry
from tests.faults.feed import Expected, Feed
from tests.faults.invariants import (
    Figures,
    dead_letters,
    groups_caught_up,
    mismatch,
    raw_entries,
    unsent_alerts,
    wait_for,
    wait_stats,
)
from tests.faults.procs import Proc
from tests.faults.rig import Rig

SOAK_S = float(os.environ.get("FAULT_SOAK_S", "150"))
RATE = 12
"""Liquidations per second, on average."""
MAXLEN = 500
DEDUP_TTL = 20
WARM_UP_S = 30.0
RSS_GROWTH_KIB = 10 * 1024
"""What a process may grow after the warm-up: its bounded caches (recent keys) fill by a few hundred KiB here."""
GROUPS = ("stats", "alerter")


@pytest.mark.slow
@pytest.mark.timeout(int(SOAK_S) + 180)
async def test_soak_memory_stays_flat_the_stream_bounded_and_dedup_keys_expire(tmp_path: Path) -> None:
    start_ms = int(time.time() * 1000) + 2_000
    feed = Feed(seed=808, events=int(SOAK_S * RATE), busy=False, start_ms=start_ms, span_s=SOAK_S)
    async with Rig(tmp_path) as rig:
        db, stream = rig.db, rig.stream
        procs: list[Proc] = [
            await rig.start_stats("stats-1"),
            await rig.start_alerter("alerter-1", ALERT_SENT_TTL_S="3600"),
            await rig.start_producer(
                "producer-1",
                feed.watchlist,
                LIQ_STREAM_MAXLEN=str(MAXLEN),
                LIQ_DEDUP_TTL=str(DEDUP_TTL),
                HL_POLL_INTERVAL="0.5",
            ),
        ]
        tail = StreamTail(db, stream, feed.expected)
        rss: dict[str, list[tuple[float, int]]] = {p.name: [] for p in procs}
        max_len = max_dedup = 0
        redis_memory: list[int] = []
        started = time.monotonic()
        next_sample = started
        while not feed.done:
            feed.release_until(rig.exchange, int(time.time() * 1000))
            await tail.read()  # as it goes: by the end, MAXLEN has trimmed most of the stream
            if time.monotonic() >= next_sample:
                next_sample += 5
                now = time.monotonic() - started
                for proc in procs:
                    assert proc.alive, proc.tail()
                    rss[proc.name].append((now, proc.rss_kib()))
                max_len = max(max_len, int(await db.xlen(stream)))
                max_dedup = max(max_dedup, await _count(db, "{" + stream + "}:dedup:*"))
                redis_memory.append(int((await db.info("memory"))["used_memory"]))
            await asyncio.sleep(0.25)

        await wait_for(lambda: tail.has_all(feed.expected), within=60, what="every event read from the stream")
        await wait_for(lambda: groups_caught_up(db, stream, GROUPS), within=60, what="groups caught up")
        await wait_stats(db, rig.stats_key("stats-1"), feed.expected, within=60)
        liquidations = [k for k, e in feed.expected.items() if e.kind == "liquidation"]
        assert not await unsent_alerts(db, stream, liquidations, "stdout")
        assert await dead_letters(db, stream) == 0
        first_keys = sorted(feed.expected, key=lambda k: feed.expected[k].timestamp)[:20]
        expired = 20 - int(await db.exists(*("{" + stream + "}:dedup:" + k for k in first_keys)))
        await rig.stop_all()
        assert not rig.crashes()
        trimmed_unread = sum(int(n) for n in re.findall(r"'deleted': (\d+)", rig.logs("")))

    seen = tail.seen
    duplicates = sum(n - 1 for n in seen.values() if n > 1)
    lost = set(feed.expected) - set(seen)
    invented = set(seen) - set(feed.expected)
    growth = {name: _growth(samples) for name, samples in rss.items()}
    for name, samples in rss.items():
        print(f"RSS of {name} (s: MiB):", " ".join(f"{t:.0f}:{kib / 1024:.1f}" for t, kib in samples[::3]))
    Figures(
        f"soak {SOAK_S:g} s",
        len(feed.expected),
        len(seen),
        duplicates,
        len(lost),
        len(invented),
        None,
        {
            "rate_per_s": round(len(feed.expected) / SOAK_S, 1),
            "max_xlen": max_len,
            "maxlen": MAXLEN,
            "max_dedup_keys": max_dedup,
            "dedup_ttl_s": DEDUP_TTL,
            "first_dedup_keys_expired": f"{expired}/20",
            **{f"rss_kib_{name}": f"{_after_warm_up(rss[name])}->{rss[name][-1][1]}" for name in rss},
            **{f"rss_growth_kib_{name}": kib for name, kib in growth.items()},
            "redis_used_memory_kib": f"{redis_memory[len(redis_memory) // 4] // 1024}->{redis_memory[-1] // 1024}",
            "trimmed_before_read": trimmed_unread,
        },
        len(tail.mismatched),
    ).emit()
    assert not duplicates and not lost and not invented and not tail.mismatched
    assert trimmed_unread == 0, "a group lost entries to MAXLEN before reading them"
    assert max_len <= MAXLEN + 100, "the stream outgrew MAXLEN (plus one macro node of approximate trimming)"
    assert max_dedup <= RATE * 3 * (DEDUP_TTL + 10), "dedup keys pile up: they do not expire"
    assert expired == 20, "the first events' dedup keys outlived LIQ_DEDUP_TTL"
    for name, kib in growth.items():
        assert kib <= RSS_GROWTH_KIB, f"{name} grew by {kib} KiB after the warm-up"


def _after_warm_up(samples: list[tuple[float, int]]) -> int:
    return next((kib for t, kib in samples if t >= WARM_UP_S and kib), 0)


def _growth(samples: list[tuple[float, int]]) -> int:
    """KiB between the end of the warm-up and the largest later sample."""
    after = [kib for t, kib in samples if t >= WARM_UP_S and kib]
    return max(after) - after[0] if len(after) > 1 else 0


async def _count(db: aioredis.Redis, pattern: str) -> int:
    n = 0
    async for _ in db.scan_iter(match=pattern, count=1_000):
        n += 1
    return n


class StreamTail:
    """Reads a stream from where it left off, counting each key it sees and comparing each event with the truth."""

    def __init__(self, db: aioredis.Redis, stream: str, expected: Mapping[str, Expected]) -> None:
        self.db = db
        self.stream = stream
        self.expected = expected
        self.cursor = "-"
        self.seen: dict[str, int] = {}
        self.mismatched: list[str] = []

    async def read(self) -> None:
        while page := raw_entries(await self.db.xrange(self.stream, min=self.cursor, max="+", count=5_000)):
            for _, fields in page:
                event = decode_entry(fields)
                self.seen[event.key] = self.seen.get(event.key, 0) + 1
                want = self.expected.get(event.key)
                if want is not None and (problem := mismatch(event, want)) is not None:
                    self.mismatched.append(problem)
            self.cursor = "(" + page[-1][0].decode()
            if len(page) < 5_000:
                return

    async def has_all(self, keys: Iterable[str]) -> bool:
        await self.read()
        return set(keys) <= set(self.seen)
