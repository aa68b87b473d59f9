"""Faults at the edges of a process: a flood of half-sent requests on the metrics port, a second SIGTERM during
the shutdown, hostile coin names in the stats table."""

from __future__ import annotations

import asyncio
import signal
import time
import unicodedata
from pathlib import Path

import aiohttp
import pytest

from tests.faults.feed import Feed
from tests.faults.invariants import Figures, assert_delivered, wait_for, wait_published, wait_stats
from tests.faults.procs import Proc, count_lines
from tests.faults.rig import Rig
from tests.helpers import free_port, scrape

OPEN_FILES = 128
HALF_SENT = 200


async def half_sent_requests(port: int, count: int) -> list[asyncio.StreamWriter]:
    """``count`` connections that each send the start of a request head and then nothing (a slowloris)."""
    writers = []
    for _ in range(count):
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            continue  # refused at once: fine, that is one way to bound them
        writer.write(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
        writers.append(writer)
    return writers


@pytest.mark.slow
async def test_a_flood_of_half_sent_requests_on_the_metrics_port_does_not_kill_the_producer(tmp_path: Path) -> None:
    """200 connections sending half a request head, against a producer limited to 128 open files: it used to die
    with ``OSError: [Errno 24] Too many open files``. The server must cap its connections, drop the half-sent ones
    after its header timeout, and the producer must go on publishing and serve metrics again."""
    feed = Feed(seed=171, events=20, shared=False, busy=False)
    port = free_port()
    async with Rig(tmp_path) as rig:
        env = rig.producer_env(feed.watchlist, METRICS_PORT=str(port))  # default bind: 127.0.0.1
        producer = Proc("producer-1", "producer", env, rig.logdir, open_files=OPEN_FILES)
        rig.procs.append(producer)
        await producer.start()
        await wait_for(lambda: _scrapes(port), within=30, what="the metrics server")
        feed.release_fraction(rig.exchange, 0.5)
        await wait_published(rig.db, rig.stream, feed.shown(), within=30)
        flooded_at = time.monotonic()
        writers = await half_sent_requests(port, HALF_SENT)
        feed.release(rig.exchange)  # work arriving during the flood
        await wait_published(rig.db, rig.stream, feed.expected, within=30)
        answered_after = await wait_for(lambda: _scrapes(port), within=30, what="metrics served again")
        recovery = time.monotonic() - flooded_at
        for writer in writers:
            writer.close()
        audit = await assert_delivered(rig.db, rig.stream, feed.expected, groups=())
        alive = producer.alive
        await rig.stop_all()
        assert not rig.crashes()
    assert alive, "the producer died under the flood"
    assert count_lines(producer.stderr(), "Too many open files") == 0
    Figures.from_audit(
        "metrics port flooded with 200 half-sent requests, producer limited to 128 files",
        feed.expected,
        audit,
        recovery,
        connections_opened=len(writers),
        metrics_answered_after_s=round(answered_after, 1),
    ).emit()


async def _scrapes(port: int) -> bool:
    try:
        return bool(await asyncio.wait_for(scrape(port), 2))
    except (OSError, TimeoutError, aiohttp.ClientError):
        return False


SECOND_SIGNAL_MS = (5, 10, 15, 20)


async def test_a_second_sigterm_during_the_shutdown_does_not_kill_the_stats_aggregator(tmp_path: Path) -> None:
    """ "A second signal does the same as the first": a SIGTERM 5-20 ms after the first used to land after the
    handlers were removed, before the final report, and kill the process (exit -15)."""
    feed = Feed(seed=181, events=8, shared=False, busy=False)
    codes: dict[int, int] = {}
    async with Rig(tmp_path) as rig:
        await rig.start_producer("producer-1", feed.watchlist)
        feed.release(rig.exchange)
        await wait_published(rig.db, rig.stream, feed.expected, within=30)
        for delay_ms in SECOND_SIGNAL_MS:
            await rig.db.delete(rig.stats_key("stats-1"))  # the last life's snapshot must not pass for this one's
            stats = await rig.start_stats("stats-1")
            await wait_stats(rig.db, rig.stats_key("stats-1"), feed.expected, within=30)
            reports = stats.stdout().count("\n\n")
            stats.signal(signal.SIGTERM)
            await asyncio.sleep(delay_ms / 1000)
            stats.signal(signal.SIGTERM)
            codes[delay_ms] = await stats.wait()
            assert stats.stdout().count("\n\n") > reports, f"no final report (exit {codes[delay_ms]})"
        audit = await assert_delivered(
            rig.db, rig.stream, feed.expected, groups=("stats",), stats_keys=[rig.stats_key("stats-1")]
        )
        await rig.stop_all()
        assert not rig.crashes()
    assert codes == dict.fromkeys(SECOND_SIGNAL_MS, 0), f"exit codes by delay of the second SIGTERM: {codes}"
    Figures.from_audit(
        "stats aggregator sent a second SIGTERM 5-20 ms after the first",
        feed.expected,
        audit,
        None,
        exit_codes="/".join(str(codes[d]) for d in SECOND_SIGNAL_MS),
    ).emit()


async def test_hostile_coin_names_cannot_drive_the_terminal_through_the_stats_table(tmp_path: Path) -> None:
    """The stats table printed coin names as the exchange sent them: an ANSI escape, a NUL, a newline forging a
    line and a right-to-left override reached stdout. They must be escaped as in logs and alerts."""
    feed = Feed(seed=707, events=12, shared=False, hostile=True, busy=False)
    async with Rig(tmp_path) as rig:
        stats = await rig.start_stats("stats-1")
        await rig.start_producer("producer-1", feed.watchlist)
        feed.release(rig.exchange)
        audit = await assert_delivered(
            rig.db, rig.stream, feed.expected, groups=("stats",), stats_keys=[rig.stats_key("stats-1")]
        )
        await rig.stop_all()
        assert not rig.crashes()
    table = stats.stdout()
    control = sorted({f"U+{ord(c):04X}" for c in table if c != "\n" and unicodedata.category(c)[0] == "C"})
    assert not control, f"control characters in the stats table: {control}"
    assert not [line for line in table.splitlines() if "forged log line" in line and line.startswith("2026")]
    Figures.from_audit(
        "hostile coin names in the stats table",
        feed.expected,
        audit,
        None,
        control_characters=len(control),
    ).emit()
