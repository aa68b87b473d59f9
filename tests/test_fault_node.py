"""The node source's files going wrong under a running producer: replaced, rotated mid-listing, damaged, stray,
and lines without end. Each scenario runs ``python -m producer --source node`` and a stats consumer against a
redis-server of its own and ends with the suite's invariants.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import lz4.frame
import pytest

from producer.publisher import checkpoint_key
from producer.simulation.sample import Block, blocks_from, hour_path, line
from producer.simulation.scenarios import ADL_DIR, Scenario
from schemas import event_key
from tests.faults.feed import Expected
from tests.faults.invariants import Figures, assert_delivered, wait_for, wait_published
from tests.faults.procs import Proc, count_lines
from tests.faults.rig import Rig
from tests.support.node_writer import block_time_ms, write_hours
from tests.support.truth import cascade

GROUPS = ("stats",)
PER_HOUR = 10
"""Blocks per hour file in the rotation scenario: many rotations in a few seconds."""
LATE_IN_AN_HOUR = 1_760_133_300_000
"""2025-10-10 21:55 UTC: a cascade from here fills a little of hour 21 and most of hour 22."""


def append(path: Path, data: bytes) -> None:
    with path.open("ab") as handle:
        handle.write(data)


def node_expected(scenario: Scenario, blocks: Iterable[Block]) -> dict[str, Expected]:
    """What a node's files holding ``blocks`` must put in the stream: each liquidation (all its legs are the
    liquidated user's own fills) and each ADL fill in those blocks."""
    times = {block_time_ms(b) for b in blocks}
    expected: dict[str, Expected] = {}
    for liq in scenario.liquidations:
        if liq.timestamp in times:
            key = event_key(liq.tx_hash, liq.coin, liq.liquidated_user, liq.timestamp)
            expected[key] = Expected(key, "liquidation", liq.timestamp, liq)
    for address, fills in scenario.fills.items():
        for fill in fills:
            if fill["dir"] == ADL_DIR and isinstance(fill.get("liquidation"), dict) and fill["time"] in times:
                key = "adl|" + event_key(fill["hash"], fill["coin"], address, fill["time"])
                expected[key] = Expected(key, "adl", fill["time"])
    return expected


def by_hour(root: Path, blocks: Iterable[Block]) -> list[list[Block]]:
    groups: dict[Path, list[Block]] = {}
    for block in blocks:
        groups.setdefault(hour_path(root, block_time_ms(block)), []).append(block)
    return [groups[path] for path in sorted(groups, key=lambda p: p.parts)]


async def start_node_producer(rig: Rig, files: Path, **overrides: str) -> Proc:
    env = {"HL_SOURCE": "node", "HL_NODE_PATH": str(files), "HL_NODE_FROM": "0", "HL_POLL_INTERVAL": "0.05"}
    env.update(overrides)
    return await rig.start_producer("producer", (), **env)


async def finish(rig: Rig, expected: dict[str, Expected]) -> Figures:
    audit = await assert_delivered(rig.db, rig.stream, expected, groups=GROUPS, stats_keys=[rig.stats_key("stats-1")])
    await rig.stop_all()
    assert not rig.crashes()
    return Figures.from_audit("", expected, audit)


async def test_an_hour_file_replaced_under_its_name_is_followed_to_its_end(tmp_path: Path) -> None:
    scenario = cascade(60)
    blocks = by_hour(tmp_path / "node", blocks_from(scenario))[0][:23]
    expected = node_expected(scenario, blocks)
    async with Rig(tmp_path) as rig:
        await rig.start_stats("stats-1")
        path = write_hours(tmp_path / "node", blocks[:10])[0]
        producer = await start_node_producer(rig, tmp_path / "node")
        await wait_published(rig.db, rig.stream, node_expected(scenario, blocks[:10]), within=30)
        temporary = path.with_name("." + path.name + ".rsync-tmp")
        temporary.write_bytes(b"".join(line(b) for b in blocks))
        os.replace(temporary, path)  # rsync / aws s3 sync / cp + mv
        replaced = time.monotonic()
        await wait_published(rig.db, rig.stream, expected, within=30)
        recovery = time.monotonic() - replaced
        figures = await finish(rig, expected)
    reopened = count_lines(producer.stderr(), "replaced by a new file under the same name")
    assert reopened == 1
    figures.scenario, figures.recovery_s, figures.notes = "hour file replaced by rename", recovery, {"blocks": 23}
    figures.emit()


@pytest.mark.slow
async def test_no_block_is_lost_at_rotations_while_a_listing_is_slow(tmp_path: Path) -> None:
    """A writer at 50 blocks/s starting a new hour file every 10 blocks, beside 90 days of older hour files; the
    last blocks of an hour and the first of the next come in a burst, as when a node catches up."""
    files = tmp_path / "node"
    first_live = datetime(2025, 10, 10, tzinfo=UTC)
    for day in range(1, 91):
        directory = files / "hourly" / f"{first_live - timedelta(days=day):%Y%m%d}"
        directory.mkdir(parents=True)
        for hour in range(24):
            (directory / str(hour)).write_bytes(b"")
    scenario = cascade(500)
    blocks = blocks_from(scenario)[: 24 * PER_HOUR]  # hours 0 to 23 of one day
    expected = node_expected(scenario, blocks)
    async with Rig(tmp_path) as rig:
        await rig.start_stats("stats-1")
        day_dir = files / "hourly" / f"{first_live:%Y%m%d}"
        day_dir.mkdir(parents=True)
        (day_dir / "0").write_bytes(b"")
        await start_node_producer(rig, files, HL_NODE_FROM=first_live.isoformat(), HL_POLL_INTERVAL="0.02")
        started = time.monotonic()
        for i, block in enumerate(blocks):
            append(day_dir / str(i // PER_HOUR), line(block))
            if i % PER_HOUR not in (PER_HOUR - 2, PER_HOUR - 1):  # an hour ends and the next starts in a burst
                await asyncio.sleep(max(0.0, started + (i + 1) / 50 - time.monotonic()))
        written = time.monotonic()
        await wait_published(rig.db, rig.stream, expected, within=30)
        recovery = time.monotonic() - written
        figures = await finish(rig, expected)
    figures.scenario, figures.recovery_s = "rotation during a slow listing", recovery
    figures.notes = {"blocks": len(blocks), "rotations": len(blocks) // PER_HOUR - 1, "older_files": 90 * 24}
    figures.emit()


def readable_lines(path: Path) -> int:
    """Complete lines an lz4 reader can decode from a damaged file before the damage."""
    data = b""
    with lz4.frame.open(path, "rb") as handle:
        with contextlib.suppress(EOFError, RuntimeError):
            while chunk := handle.read(1 << 16):
                data += chunk
    return data.count(b"\n")


async def test_a_truncated_and_a_corrupted_archive_hour_are_reported_and_the_replay_finishes(tmp_path: Path) -> None:
    scenario = cascade(1500)
    hours = by_hour(tmp_path / "archive", blocks_from(scenario))
    first, second = write_hours(tmp_path / "archive", blocks_from(scenario), compressed=True)
    packed = first.read_bytes()
    first.write_bytes(packed[: len(packed) // 2])  # an interrupted download
    corrupt = bytearray(second.read_bytes())
    corrupt[len(corrupt) // 2 : len(corrupt) // 2 + 64] = b"\xff" * 64
    second.write_bytes(bytes(corrupt))
    kept = hours[0][: readable_lines(first)] + hours[1][: readable_lines(second)]
    expected = node_expected(scenario, kept)
    async with Rig(tmp_path) as rig:
        await rig.start_stats("stats-1")
        producer = await start_node_producer(rig, tmp_path / "archive", HL_NODE_FOLLOW="false")
        assert await producer.wait(60) == 0, producer.tail()
        figures = await finish(rig, expected)
    log = producer.stderr()
    assert count_lines(log, f"node: {first} is damaged: its lz4 data ends before the end of the frame") == 1
    assert count_lines(log, f"node: {second} is damaged: its lz4 data is corrupt") == 1
    assert "Traceback" not in log
    figures.scenario = "truncated + corrupted .lz4 in a replay"
    figures.notes = {"blocks_total": sum(map(len, hours)), "blocks_readable": len(kept)}
    figures.emit()


async def test_a_stray_future_hour_neither_moves_the_checkpoint_nor_hides_later_hours(tmp_path: Path) -> None:
    scenario = cascade(1500, start_ms=LATE_IN_AN_HOUR)
    files = tmp_path / "node"
    first_hour, second_hour = by_hour(files, blocks_from(scenario))
    expected = node_expected(scenario, first_hour + second_hour)
    async with Rig(tmp_path) as rig:
        await rig.start_stats("stats-1")
        write_hours(files, first_hour)
        stray = files / "hourly" / "20300101" / "0"
        stray.parent.mkdir(parents=True)
        stray.write_bytes(line(first_hour[0]))
        producer = await start_node_producer(rig, files)
        await wait_published(rig.db, rig.stream, node_expected(scenario, first_hour), within=30)
        write_hours(files, second_hour)  # the real next hour, after the stray one appeared
        arrived = time.monotonic()
        await wait_published(rig.db, rig.stream, expected, within=30)
        recovery = time.monotonic() - arrived

        async def at_the_second_hour() -> bool:
            return await rig.db.hget(checkpoint_key(rig.stream), "node:hour") == b"20251010/22"

        await wait_for(at_the_second_hour, within=10, what="the checkpoint to reach 20251010/22")
        figures = await finish(rig, expected)
    assert count_lines(producer.stderr(), f"skipping {stray}: it is dated 20300101/0, after now") == 1
    figures.scenario, figures.recovery_s = "stray hour file dated 2030", recovery
    figures.emit()


def peak_rss_kib(proc: Proc) -> int:
    for text in Path(f"/proc/{proc.pid}/status").read_text().splitlines():
        if text.startswith("VmHWM:"):
            return int(text.split()[1])
    return 0


async def test_a_region_without_newlines_is_skipped_in_bounded_time_and_memory(tmp_path: Path) -> None:
    """A node that crashed mid-hour left 128 MiB of NULs and no newline; it restarted in the next hour."""
    scenario = cascade(1500)
    files = tmp_path / "node"
    first_hour, second_hour = by_hour(files, blocks_from(scenario))
    path = write_hours(files, first_hour)[0]
    for _ in range(128):
        append(path, b"\0" * (1 << 20))
    write_hours(files, second_hour)
    expected = node_expected(scenario, first_hour + second_hour)
    async with Rig(tmp_path) as rig:
        await rig.start_stats("stats-1")
        started = time.monotonic()
        producer = await start_node_producer(rig, files, HL_NODE_MAX_LINE=str(8 << 20))
        await wait_published(rig.db, rig.stream, expected, within=60)
        seconds = time.monotonic() - started
        peak = peak_rss_kib(producer)
        figures = await finish(rig, expected)
    assert count_lines(producer.stderr(), f"skipped a line of {128 << 20} bytes at byte") == 1
    assert peak < 120 * 1024, f"the producer peaked at {peak} KiB"
    figures.scenario = "128 MiB without a newline (NUL tail)"
    figures.notes = {"seconds_to_publish_all": round(seconds, 1), "peak_rss_kib": peak}
    figures.emit()
