"""Poison values: amounts and times that parse but cannot be used, from the exchange, a node file or the stream.

One such value used to stop a process for good. A fill priced ``"abc"`` (or ``"sNaN"``, ``"1,000"``) raised in
the detector: the poll published nothing, the watermark or the node offset never moved, and every restart crashed
at the same fill. An entry worth ``NaN`` killed the stats report task at its first report, with ``/healthz``
still 200, and every restart's rebuild from history exited 1: a crash loop until the entry was trimmed.

Now the producer skips and counts such fills and publishes the rest, consumers dead-letter such entries (once per
group), count them and go on, the rebuild skips them, and a background task that dies anyway takes ``/healthz``
down with it at once.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp

from producer.simulation.sample import blocks_from
from producer.sources.node import NodeSource
from schemas import Event, encode_entry
from tests.faults.feed import Feed
from tests.faults.invariants import (
    Figures,
    as_expected,
    assert_delivered,
    audit_stream,
    dead_letters,
    describe_groups,
    groups_caught_up,
    unsent_alerts,
    wait_for,
    wait_stats,
)
from tests.faults.poison import HUGE_AMOUNTS, NOT_DECIMALS, UNUSABLE_AMOUNTS, UNUSABLE_TIMES, fill_with, with_field
from tests.faults.procs import ROOT, count_lines
from tests.faults.rig import Rig
from tests.helpers import REPLAY_ALL, api_errors, drain, free_port, make_event, scrape
from tests.support.node_writer import write_hours
from tests.support.truth import cascade

GROUPS = ("stats", "alerter")


def poison_fills(template: dict[str, Any]) -> list[dict[str, Any]]:
    """Liquidation fills like ``template`` whose price, size, mark price or time cannot be used.

    Each has a transaction of its own, so none of them belongs to a liquidation of the truth: published, any of
    them would be an invention.
    """
    liquidation = template["liquidation"]
    variants: list[dict[str, Any]] = [{"px": value} for value in NOT_DECIMALS]
    variants += [{"sz": value} for value in ("abc", "NaN", "1e30")]
    variants += [{"time": value} for value in UNUSABLE_TIMES]
    variants += [{"liquidation": {**liquidation, "markPx": value}} for value in ("NaN", "Infinity", "1e500000")]
    return [
        fill_with(template, hash=f"0x{0xBAD0 + n:064x}", tid=9 * 10**15 + n, **variant)
        for n, variant in enumerate(variants)
    ]


async def health(port: int) -> tuple[int, dict[str, Any]]:
    async with aiohttp.ClientSession() as session, session.get(f"http://127.0.0.1:{port}/healthz") as resp:
        return resp.status, await resp.json()


async def test_fills_with_unusable_amounts_or_times_are_skipped_and_the_producer_goes_on(tmp_path: Path) -> None:
    feed = Feed(seed=31, events=20, shared=True, busy=False)
    maker = feed.makers[0]
    template = next(f for f in feed.scenario.fills[maker] if isinstance(f.get("liquidation"), dict))
    poison = poison_fills(template)
    metrics_port = free_port()
    async with Rig(tmp_path) as rig:
        db, stream, exchange = rig.db, rig.stream, rig.exchange
        exchange.show_at_poll_start(feed.watchlist[0])
        await rig.start_stats("stats-1")
        await rig.start_alerter("alerter-1")
        observability = {"METRICS_PORT": str(metrics_port), "METRICS_HOST": "127.0.0.1"}
        first = await rig.start_producer("producer-1", feed.watchlist, **observability)
        feed.release_fraction(exchange, 0.5)
        exchange.add_fills(maker, poison)  # among the liquidations shown so far

        async def skipped_all() -> bool:
            return api_errors(await scrape(metrics_port), "skipped_items") >= len(poison)

        await wait_for(skipped_all, within=30, what="every unusable fill skipped and counted")
        # A restart reads the same poison again: it used to crash at the same fill every time.
        first.signal(signal.SIGTERM)
        assert await first.wait(30) == 0
        second = await rig.start_producer("producer-2", feed.watchlist, **observability)
        feed.release(exchange)
        audit = await assert_delivered(
            db, stream, feed.expected, groups=GROUPS, stats_keys=[rig.stats_key("stats-1")], alert_sink="stdout"
        )
        skipped = api_errors(await scrape(metrics_port), "skipped_items")
        lines = count_lines(first.stderr() + second.stderr(), "malformed item")
        polls = count_lines(first.stderr() + second.stderr(), "producer: poll ")
        await rig.stop_all()
    assert not rig.crashes(), rig.crashes()
    # However much poison an answer holds: at most 3 lines and a summary per answer, two answers per poll (plus
    # the poll each life was in when it was last looked at, not logged yet).
    assert lines <= 8 * (polls + 2), f"{lines} log lines in {polls} polls"
    Figures.from_audit(
        "unusable amounts and times in the exchange's fills (fills source)",
        feed.expected,
        audit,
        poison_fills=len(poison),
        skipped_after_restart=skipped,
        log_lines=lines,
        polls=polls,
    ).emit()


def poison_blocks(blocks: list[dict[str, Any]]) -> int:
    """Put unusable fills into the liquidated users' own legs (what the node source counts) of a few blocks,
    and one block of nothing else; returns how many fills were added."""
    added = 0
    legs = [
        (block, user, fill)
        for block in blocks
        for user, fill in block["events"]
        if isinstance(fill.get("liquidation"), dict) and fill["liquidation"]["liquidatedUser"] == user
    ]
    for block, user, fill in legs[:: max(1, len(legs) // 5)]:
        for bad in poison_fills(fill):
            block["events"].append([user, bad])
            added += 1
    only_poison = {**blocks[-1], "block_number": blocks[-1]["block_number"] + 1}
    user, fill = legs[-1][1], legs[-1][2]
    only_poison["events"] = [[user, bad] for bad in poison_fills(fill)]
    blocks.append(only_poison)
    return added + len(only_poison["events"])


async def test_a_node_file_with_unusable_fills_is_read_past_and_every_liquidation_published(tmp_path: Path) -> None:
    scenario = cascade(60)
    blocks = blocks_from(scenario)
    # The truth: what the same blocks give without the poison.
    write_hours(tmp_path / "clean", blocks)
    reference = NodeSource([tmp_path / "clean"], REPLAY_ALL)
    events, _ = await drain(reference)
    reference.close()
    expected = as_expected(events)
    added = poison_blocks(blocks)
    write_hours(tmp_path / "node", blocks)
    node_env = {"HL_SOURCE": "node", "HL_NODE_PATH": str(tmp_path / "node"), "HL_NODE_FROM": "0"}
    async with Rig(tmp_path) as rig:
        await rig.start_stats("stats-1")
        await rig.start_alerter("alerter-1")
        first = await rig.start_producer("producer-1", (), **node_env)
        audit = await assert_delivered(
            rig.db, rig.stream, expected, groups=GROUPS, stats_keys=[rig.stats_key("stats-1")], alert_sink="stdout"
        )
        first.signal(signal.SIGTERM)
        assert await first.wait(30) == 0
        # A restart resumes after the poison, from the checkpoint: nothing new, no crash.
        second = await rig.start_producer("producer-2", (), **node_env)
        await wait_for(lambda: count_lines(second.stderr(), " poll ") >= 3, within=30, what="polls after a restart")
        assert (await audit_stream(rig.db, rig.stream, expected)).clean
        await rig.stop_all()
    assert not rig.crashes(), rig.crashes()
    logged = count_lines(first.stderr(), "skipped an unusable fill")
    assert 0 < logged <= 8, f"{logged} log lines for {added} unusable fills"
    Figures.from_audit(
        "unusable amounts and times in a node file (node source)",
        expected,
        audit,
        poison_fills=added,
        log_lines=logged,
    ).emit()


def poison_entries(template: Event) -> list[dict[bytes | str, bytes | str]]:
    entries = [with_field(template, name, value) for name in ("value_usd", "price") for value in UNUSABLE_AMOUNTS]
    return entries + [with_field(template, "timestamp", value) for value in UNUSABLE_TIMES]


async def test_unusable_entries_are_dead_lettered_once_per_group_and_a_restart_rebuilds_past_them(
    tmp_path: Path,
) -> None:
    """What a foreign or older producer could write: every consumer must survive it anyway."""
    good: list[Event] = [make_event(value_usd=Decimal(1000 + i), coin=("BTC", "ETH")[i % 2]) for i in range(10)]
    good += [make_event(value_usd=Decimal(value), price=Decimal(value)) for value in HUGE_AMOUNTS]
    poison = poison_entries(good[0])
    stats_port = free_port()
    async with Rig(tmp_path) as rig:
        db, stream = rig.db, rig.stream
        async with db.pipeline(transaction=False) as pipe:
            for fields in [encode_entry(good[0]), *poison, *(encode_entry(e) for e in good[1:])]:
                pipe.xadd(stream, fields)  # type: ignore[arg-type]
            await pipe.execute()
        stats_env = {"METRICS_PORT": str(stats_port), "METRICS_HOST": "127.0.0.1", "HEALTH_STALE_AFTER": "5"}
        stats = await rig.start_stats("stats-1", **stats_env)
        alerter = await rig.start_alerter("alerter-1")
        in_stream = as_expected(good)
        key = rig.stats_key("stats-1")
        await wait_for(
            lambda: groups_caught_up(db, stream, GROUPS),
            within=60,
            what="both groups to process every entry",
            detail=lambda: describe_groups(db, stream),
        )
        await wait_stats(db, key, in_stream, within=60)
        assert (await health(stats_port))[0] == 200
        assert await unsent_alerts(db, stream, [e.key for e in good], "stdout") == []
        assert await dead_letters(db, stream) == 2 * len(poison), "each group dead-letters each one once"
        # The restart rebuilds its totals from the whole history, poison included: that used to exit 1.
        stats.signal(signal.SIGTERM)
        assert await stats.wait(30) == 0
        await db.delete(key)
        restarted = await rig.start_stats("stats-1", **stats_env)
        await wait_stats(db, key, in_stream, within=60)
        status, body = await health(stats_port)
        tail = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "consumers.tail",
            "--from",
            "0",
            "--count",
            str(len(good)),
            cwd=ROOT,
            env={**os.environ, "REDIS_URL": rig.redis_url, "LIQ_STREAM": stream},
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(tail.communicate(), 30)
        audit = await audit_stream(db, stream, in_stream)
        await rig.stop_all()
    assert not rig.crashes(), rig.crashes()
    assert status == 200, body
    assert tail.returncode == 0 and b"Traceback" not in err, err.decode()[-2000:]
    rows = out.decode().splitlines()[1:]  # under the header
    assert len(rows) == len(good) and any("$1.0e+30" in row for row in rows)
    assert count_lines(err.decode(), "skipping entry") == len(poison)
    assert audit.undecodable == len(poison) and not (audit.lost or audit.invented or audit.duplicates)
    rebuilt = count_lines(restarted.stderr(), f"{len(poison)} entries skipped")
    assert rebuilt == 1, "the rebuild says how many history entries it skipped"
    assert count_lines(alerter.stdout(), "$1.0e+30") >= 1, "the huge one is alerted, readably"
    Figures(
        "unusable amounts and times on the stream (consumers, the stats rebuild, the tail)",
        expected=len(good),
        published=len(good),
        duplicates=0,
        lost=0,
        notes={"poison_entries": len(poison), "dead_letters": 2 * len(poison), "rebuild_skipped": len(poison)},
    ).emit()


async def test_a_background_task_that_dies_takes_healthz_down_at_once(tmp_path: Path) -> None:
    """The stats report task dying (here: its stdout is a full disk) used to leave ``/healthz`` at 200, with the
    traceback printed only at SIGTERM."""
    port = free_port()
    async with Rig(tmp_path) as rig:
        await rig.db.xadd(rig.stream, encode_entry(make_event()))  # type: ignore[arg-type]
        (rig.logdir / "stats-1.out").symlink_to("/dev/full")
        stats = await rig.start_stats("stats-1", METRICS_PORT=str(port), METRICS_HOST="127.0.0.1")

        async def down() -> bool:
            try:
                return (await health(port))[0] == 503
            except aiohttp.ClientError:
                return False

        took = await wait_for(down, within=30, what="/healthz to turn 503 after the report task died")
        status, body = await health(port)
        logged = count_lines(stats.stderr(), "background task stats reports: OSError")
        stats.kill()
    assert body["dead_tasks"] and "No space left on device" in body["dead_tasks"][0], body
    assert logged == 1, stats.stderr()[-2000:]
    Figures(
        "the stats report task dies (stdout on a full disk)",
        expected=1,
        published=1,
        duplicates=0,
        lost=0,
        notes={"healthz": status, "seconds_to_503": round(took, 1), "error_lines": logged},
    ).emit()
