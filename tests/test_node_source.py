"""The node source on node-format files written by the tests: replay, follow, rotation, damage, lz4."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from pathlib import Path

import lz4.frame
import pytest

from producer.simulation.sample import SAMPLE_PATH, Block, blocks_from, build_sample, hour_path, line
from producer.simulation.scenarios import Scenario, demo_scenario
from producer.sources.node import (
    CHECKPOINT_HOUR,
    CHECKPOINT_OFFSET,
    NodeFileDamaged,
    NodeSource,
    NodeWindow,
    is_catch_up,
    watched_paths,
)
from producer.sources.node_files import HourFile, LineReader, find_hour_files
from schemas import Event, LiquidationEvent
from tests.faults.poison import NOT_DECIMALS, fill_with
from tests.helpers import NOW_MS, REPLAY_ALL, drain
from tests.support.node_writer import block_time_ms, write_hours
from tests.support.truth import adl_truth, assert_node_truth, cascade


def test_hour_files_are_found_in_every_layout(tmp_path: Path) -> None:
    for relative in (
        "hourly/20251010/21",
        "hourly/20251010/22.lz4",
        "hourly/20251010/22",
        "hourly/20251011/0",
        "hourly/20251010/notes.txt",
        "hourly/2025-10-10/3",
        "hourly/20251010/24",
    ):
        (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / relative).write_bytes(b"")
    names = [f.name for f in find_hour_files([tmp_path])]
    assert names == ["20251010/21", "20251010/22", "20251011/0"]
    assert not any(f.compressed for f in find_hour_files([tmp_path]))  # the plain hour wins over its archive
    assert [f.name for f in find_hour_files([tmp_path / "hourly"])] == names
    assert [f.name for f in find_hour_files([tmp_path / "hourly" / "20251011"])] == ["20251011/0"]
    assert [f.name for f in find_hour_files([tmp_path / "hourly/20251010/22.lz4"])] == ["20251010/22"]


def test_a_partial_last_line_waits_for_its_newline(tmp_path: Path) -> None:
    path = tmp_path / "hourly" / "20251010" / "21"
    path.parent.mkdir(parents=True)
    path.write_bytes(b'{"a":1}\n{"b":')
    [hour] = find_hour_files([tmp_path])
    reader = LineReader(hour)
    assert reader.read_lines(1 << 20)[0] == [b'{"a":1}']
    assert reader.offset == 8
    with path.open("ab") as handle:
        handle.write(b'2}\n{"c":3}\n')
    assert reader.read_lines(1 << 20)[0] == [b'{"b":2}', b'{"c":3}']
    assert reader.offset == path.stat().st_size
    assert reader.read_lines(1 << 20) == ([], 0)
    reader.close()


async def test_replay_publishes_every_liquidation_and_adl_once(tmp_path: Path) -> None:
    scenario = demo_scenario(seed=5)
    write_hours(tmp_path, blocks_from(scenario))
    source = NodeSource([tmp_path], REPLAY_ALL, chunk_bytes=4096)
    events, checkpoint = await drain(source)
    source.close()
    assert_node_truth(events, scenario)
    assert source.finished
    last = find_hour_files([tmp_path])[-1]
    assert checkpoint == {CHECKPOINT_HOUR: last.name, CHECKPOINT_OFFSET: str(last.path.stat().st_size)}


async def test_a_cascade_across_an_hour_rotation_in_small_polls(tmp_path: Path) -> None:
    scenario = cascade(1500)
    files = write_hours(tmp_path, blocks_from(scenario))
    assert len(files) >= 2
    source = NodeSource([tmp_path], REPLAY_ALL, max_bytes_per_poll=256 << 10, chunk_bytes=64 << 10)
    events, _ = await drain(source)
    source.close()
    assert_node_truth(events, scenario)


async def test_lz4_archive_gives_the_same_events_as_plain_files(tmp_path: Path) -> None:
    scenario = demo_scenario(seed=6)
    write_hours(tmp_path / "plain", blocks_from(scenario))
    write_hours(tmp_path / "archive", blocks_from(scenario), compressed=True)
    sources = [NodeSource([tmp_path / "plain"], REPLAY_ALL), NodeSource([tmp_path / "archive"], REPLAY_ALL)]
    (plain, _), (archived, _) = [await drain(source) for source in sources]
    for source in sources:
        source.close()
    assert_node_truth(archived, scenario)
    assert [e.key for e in archived] == [e.key for e in plain]


async def test_following_live_sees_appends_and_the_next_hour(tmp_path: Path) -> None:
    scenario = cascade(300)
    blocks = blocks_from(scenario)
    hours = sorted({hour_path(tmp_path, block_time_ms(b)) for b in blocks})
    first_hour = [b for b in blocks if hour_path(tmp_path, block_time_ms(b)) == hours[0]]
    later = blocks[len(first_hour) :]
    write_hours(tmp_path, first_hour[:10])
    source = NodeSource([tmp_path], NodeWindow(start_ms=None, follow=True))  # "now": from the end
    assert (await drain(source))[0] == []
    write_hours(tmp_path, first_hour[10:])  # the node appends
    appended, _ = await drain(source)
    write_hours(tmp_path, later)  # the next hour's file appears
    rotated, checkpoint = await drain(source)
    source.close()
    assert not source.finished
    expected = blocks_from(scenario)[10:]
    assert {e.key for e in appended + rotated} == _keys_of(expected, scenario)
    assert checkpoint[CHECKPOINT_HOUR] == find_hour_files([tmp_path])[-1].name


def _first_and_later_hours(root: Path) -> tuple[list[Block], list[Block]]:
    """Blocks of 2025-10-10 21:15 on, all in hour 21, and blocks of the hour after, 22:00 on."""
    first_hour = blocks_from(cascade(100))
    later = blocks_from(cascade(5, seed=8, start_ms=1_760_133_600_000))
    assert {hour_path(root, block_time_ms(b)) for b in first_hour} == {root / "hourly/20251010/21"}
    assert {hour_path(root, block_time_ms(b)) for b in later} == {root / "hourly/20251010/22"}
    return first_hour, later


async def _following(root: Path, blocks: list[Block]) -> NodeSource:
    write_hours(root, blocks)
    source = NodeSource([root], NodeWindow(start_ms=None, follow=True))
    await drain(source)
    return source


async def test_waiting_ends_as_soon_as_the_followed_file_grows(tmp_path: Path) -> None:
    first_hour, _ = _first_and_later_hours(tmp_path)
    source = await _following(tmp_path, first_hour[:10])
    waiting = asyncio.ensure_future(source.wait(30))
    await asyncio.sleep(0.05)
    assert not waiting.done()  # nothing new: it keeps waiting
    write_hours(tmp_path, first_hour[10:20])
    await asyncio.wait_for(waiting, 2)
    assert (await drain(source))[0]
    source.close()


async def test_waiting_ends_as_soon_as_the_next_hour_file_appears(tmp_path: Path) -> None:
    first_hour, later = _first_and_later_hours(tmp_path)
    source = await _following(tmp_path, first_hour)
    waiting = asyncio.ensure_future(source.wait(30))
    await asyncio.sleep(0.05)
    write_hours(tmp_path, later)
    await asyncio.wait_for(waiting, 2)
    source.close()


async def test_a_block_written_after_the_poll_read_ends_the_next_wait_at_once(tmp_path: Path) -> None:
    first_hour, _ = _first_and_later_hours(tmp_path)
    source = await _following(tmp_path, first_hour[:10])
    write_hours(tmp_path, first_hour[10:20])  # between the end of the poll and the start of the wait
    await asyncio.wait_for(source.wait(30), 2)
    source.close()


async def test_a_quiet_node_waits_the_interval_out(tmp_path: Path) -> None:
    first_hour, _ = _first_and_later_hours(tmp_path)
    source = await _following(tmp_path, first_hour)
    started = time.monotonic()
    await source.wait(0.3)
    assert time.monotonic() - started >= 0.25
    source.close()


def test_the_followed_file_its_directory_and_the_days_are_watched(tmp_path: Path) -> None:
    hour = tmp_path / "hourly" / "20251010" / "21"
    assert watched_paths(hour, [tmp_path]) == [hour, hour.parent, tmp_path / "hourly"]
    assert watched_paths(tmp_path / "copied.jsonl", [tmp_path]) == [tmp_path / "copied.jsonl", tmp_path]
    assert watched_paths(None, [tmp_path, hour]) == [tmp_path, hour]


def _keys_of(blocks: list[Block], scenario: Scenario) -> set[str]:
    """Event keys of the liquidations and ADL fills whose blocks are in ``blocks``."""
    times = {block_time_ms(b) for b in blocks}
    keys = {f"{t.tx_hash}|{t.coin}|{t.liquidated_user}" for t in scenario.liquidations if t.timestamp in times}
    keys |= {f"adl|{h}|{c}|{u}" for h, c, u in adl_truth(scenario) if _time_of(scenario, h) in times}
    return keys


def _time_of(scenario: Scenario, tx_hash: str) -> int:
    return int(next(f["time"] for fills in scenario.fills.values() for f in fills if f["hash"] == tx_hash))


async def test_garbage_and_a_truncated_last_line_are_skipped_and_counted(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    scenario = demo_scenario(seed=7)
    blocks = blocks_from(scenario)
    liquidation_blocks = [i for i, b in enumerate(blocks) if b"liquidation" in line(b)]
    broken_index = liquidation_blocks[-1]  # a liquidation block whose line is cut short
    path = write_hours(tmp_path, blocks[:broken_index])[-1]
    with path.open("ab") as handle:
        handle.write(b"not json at all\n")
        handle.write(b'{"events": [["0xabc", {"liquidation": {"liquidatedUser": 3}}]], "block_number": 1}\n')
        handle.write(line(blocks[broken_index])[:-40])  # the node died mid-line; no newline
    next_hour = hour_path(tmp_path, block_time_ms(blocks[-1]) + 3_600_000)
    next_hour.parent.mkdir(parents=True, exist_ok=True)
    next_hour.write_bytes(b"")  # the node restarted in the next hour
    source = NodeSource([tmp_path], REPLAY_ALL)
    events, _ = await drain(source)
    source.close()
    # The truncated line, and the block's one fill of the wrong shape (the plain garbage has no marker: unread).
    assert (source.garbage_lines, source.bad_fills) == (1, 1)
    assert "ends without a newline" in caplog.text
    broken_time = block_time_ms(blocks[broken_index])
    expected = {t.key for t in scenario.liquidations if t.timestamp < broken_time}
    assert {(e.tx_hash, e.coin, e.liquidated_user) for e in events if isinstance(e, LiquidationEvent)} == expected


async def test_a_time_window_bounds_what_is_published(tmp_path: Path) -> None:
    scenario = cascade(600)
    write_hours(tmp_path, blocks_from(scenario))
    times = sorted(t.timestamp for t in scenario.liquidations)
    start, end = times[100], times[400]
    source = NodeSource([tmp_path], NodeWindow(start_ms=start, end_ms=end, follow=True))
    events, _ = await drain(source)
    source.close()
    got = {(e.tx_hash, e.coin, e.liquidated_user) for e in events if isinstance(e, LiquidationEvent)}
    assert got == {t.key for t in scenario.liquidations if start <= t.timestamp < end}
    assert all(start <= e.timestamp < end for e in events)


async def test_resuming_from_a_checkpoint_reads_nothing_twice(tmp_path: Path) -> None:
    scenario = cascade(400)
    write_hours(tmp_path, blocks_from(scenario))
    first = NodeSource([tmp_path], REPLAY_ALL, max_bytes_per_poll=64 << 10, chunk_bytes=16 << 10)
    part = await first.poll(NOW_MS)
    part2 = await first.poll(NOW_MS)
    first.close()
    second = NodeSource([tmp_path], REPLAY_ALL, chunk_bytes=16 << 10)
    second.restore(part2.checkpoint)
    rest, _ = await drain(second)
    second.close()
    assert_node_truth(part.events + part2.events + rest, scenario)


# --- every form of path, and none -----------------------------------------------------------------------------


async def test_the_shipped_sample_replays_from_its_directory_and_resumes_from_the_file(tmp_path: Path) -> None:
    scenario = build_sample()
    replay = NodeSource([SAMPLE_PATH.parent], REPLAY_ALL)
    whole, _ = await drain(replay)
    replay.close()
    assert_node_truth(whole, scenario)
    first = NodeSource([SAMPLE_PATH.parent], REPLAY_ALL, max_bytes_per_poll=256 << 10, chunk_bytes=64 << 10)
    part = await first.poll(NOW_MS)
    first.close()
    assert part.more and part.checkpoint[CHECKPOINT_HOUR] == "20251010/21"
    second = NodeSource([SAMPLE_PATH], REPLAY_ALL)  # the same hour, named by the file this time
    second.restore(part.checkpoint)
    rest, _ = await drain(second)
    second.close()
    assert_node_truth(part.events + rest, scenario)


async def test_a_path_without_hour_files_says_so_once_and_reads_them_when_they_come(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    source = NodeSource([tmp_path], NodeWindow(start_ms=0, follow=True))
    results = [await source.poll(NOW_MS) for _ in range(3)]
    assert all(r.problem is not None and "no hour files under" in r.problem for r in results)
    assert caplog.text.count("no hour files under") == 1
    scenario = cascade(20)
    write_hours(tmp_path, blocks_from(scenario))
    events, _ = await drain(source)
    source.close()
    assert source.problem is None
    assert_node_truth(events, scenario)


async def test_a_replay_of_a_path_without_hour_files_finishes_with_the_problem_stated(tmp_path: Path) -> None:
    source = NodeSource([tmp_path], REPLAY_ALL)
    result = await source.poll(NOW_MS)
    assert result.finished and result.problem is not None and "--node-path" in result.problem


# --- rotation, replacement, the clock, damage ------------------------------------------------------------------


def hour_blocks(scenario: Scenario, root: Path) -> list[list[dict[str, object]]]:
    """The scenario's blocks, grouped by the hour file they go to."""
    groups: dict[Path, list[dict[str, object]]] = {}
    for block in blocks_from(scenario):
        groups.setdefault(hour_path(root, block_time_ms(block)), []).append(block)
    return [groups[path] for path in sorted(groups, key=lambda p: p.parts)]


async def test_the_last_blocks_written_while_the_next_hour_is_listed_are_not_lost(tmp_path: Path) -> None:
    """The writer ends the hour and starts the next one during the reader's (slow) directory listing."""
    scenario = cascade(1500)
    first_hour, *later = hour_blocks(scenario, tmp_path)
    write_hours(tmp_path, first_hour[:-3])
    source = NodeSource([tmp_path], NodeWindow(start_ms=0, follow=True))
    events, _ = await drain(source)
    list_files = source._finder.find

    def list_while_the_node_rotates() -> list[HourFile]:
        if not (tmp_path / "hourly" / "20251010" / "22").exists():
            write_hours(tmp_path, first_hour[-3:])
            write_hours(tmp_path, [b for hour in later for b in hour])
        return list_files()

    source._finder.find = list_while_the_node_rotates  # type: ignore[method-assign]
    rest, _ = await drain(source)
    source.close()
    assert_node_truth(events + rest, scenario)


async def test_an_hour_file_replaced_under_its_name_is_followed(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    scenario = cascade(60)
    [blocks] = hour_blocks(scenario, tmp_path)
    path = write_hours(tmp_path, blocks[:10])[0]
    source = NodeSource([tmp_path], NodeWindow(start_ms=0, follow=True))
    events, _ = await drain(source)
    temporary = path.with_name(".21.partial")
    temporary.write_bytes(b"".join(line(b) for b in blocks))
    os.replace(temporary, path)  # rsync, aws s3 sync, cp + mv
    rest, checkpoint = await drain(source)
    source.close()
    assert_node_truth(events + rest, scenario)
    assert checkpoint[CHECKPOINT_OFFSET] == str(path.stat().st_size)
    assert "replaced by a new file under the same name: reopening it at byte" in caplog.text


async def test_a_stray_future_hour_is_skipped_and_later_real_hours_are_read(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    scenario = cascade(1500)
    first_hour, *later = hour_blocks(scenario, tmp_path)
    write_hours(tmp_path, first_hour)
    stray = tmp_path / "hourly" / "20300101" / "0"
    stray.parent.mkdir(parents=True)
    stray.write_bytes(line(first_hour[0]))
    source = NodeSource([tmp_path], NodeWindow(start_ms=0, follow=True))
    events, checkpoint = await drain(source)
    assert checkpoint[CHECKPOINT_HOUR] == "20251010/21"
    write_hours(tmp_path, [b for hour in later for b in hour])  # the next real hour arrives
    rest, checkpoint = await drain(source)
    source.close()
    assert_node_truth(events + rest, scenario)
    assert checkpoint[CHECKPOINT_HOUR] == "20251010/22"
    assert caplog.text.count(f"skipping {stray}: it is dated 20300101/0, after now") == 1


def damage_first_hour(root: Path, scenario: Scenario) -> tuple[Path, int]:
    """Write the scenario as an archive and cut its first hour short; returns it and the blocks still readable."""
    files = write_hours(root, blocks_from(scenario), compressed=True)
    packed = files[0].read_bytes()
    files[0].write_bytes(packed[: len(packed) // 2])
    readable = b""
    with lz4.frame.open(files[0], "rb") as handle:
        with contextlib.suppress(EOFError):
            while chunk := handle.read(1 << 16):
                readable += chunk
    return files[0], readable.count(b"\n")


async def test_a_truncated_archive_hour_is_reported_and_the_replay_goes_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    scenario = cascade(1500)
    damaged, readable = damage_first_hour(tmp_path, scenario)
    source = NodeSource([tmp_path], REPLAY_ALL)
    events, _ = await drain(source)
    source.close()
    assert source.finished
    blocks = hour_blocks(scenario, tmp_path)
    kept = blocks[0][:readable] + [b for hour in blocks[1:] for b in hour]
    assert {e.key for e in events} == _keys_of(kept, scenario)
    [report] = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert f"node: {damaged} is damaged: its lz4 data ends before the end of the frame" in report
    assert f"{readable} blocks read from it" in report and "Skipping the rest of it" in report


async def test_a_damaged_hour_stops_the_source_when_so_configured(tmp_path: Path) -> None:
    scenario = cascade(1500)
    damaged, readable = damage_first_hour(tmp_path, scenario)
    source = NodeSource([tmp_path], REPLAY_ALL, on_damage="stop")
    events: list[Event] = []
    with pytest.raises(NodeFileDamaged) as stopped:
        for _ in range(100):
            result = await source.poll(NOW_MS)
            events += result.events
    source.close()
    assert {e.key for e in events} == _keys_of(hour_blocks(scenario, tmp_path)[0][:readable], scenario)
    assert str(stopped.value).startswith(f"node: {damaged} is damaged")
    assert "--node-damaged skip" in str(stopped.value) and "\n" not in str(stopped.value)


def test_a_poll_is_a_catch_up_when_it_leaves_a_backlog_or_reads_old_blocks() -> None:
    now = 1_760_130_900_000
    assert is_catch_up(True, now, now)
    assert is_catch_up(False, now - 61_000, now)
    assert not is_catch_up(False, now - 5_000, now)
    assert not is_catch_up(False, None, now)


async def test_an_unusable_fill_loses_neither_the_block_nor_the_hour(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A fill priced ``"abc"`` once raised in the detector on every poll: the offset never moved and every restart
    crashed at that line. It is skipped and counted; the other fills of its block (a liquidation's) are kept."""
    scenario = demo_scenario(seed=7)
    blocks = blocks_from(scenario)
    # The liquidated user's own fill: the leg the node source counts.
    owner, own = next(
        (user, f)
        for b in blocks
        for user, f in b["events"]
        if isinstance(f.get("liquidation"), dict) and f["liquidation"]["liquidatedUser"] == user
    )
    target = next(b for b in blocks if [owner, own] in b["events"])
    for n, value in enumerate(NOT_DECIMALS):
        target["events"].append([owner, fill_with(own, px=value, tid=10**15 + n)])
    target["events"].append([owner, fill_with(own, time=10**15, tid=2 * 10**15)])
    write_hours(tmp_path, blocks)
    source = NodeSource([tmp_path], REPLAY_ALL)
    events, _ = await drain(source)
    source.close()
    assert_node_truth(events, scenario)
    assert (source.bad_fills, source.garbage_lines) == (len(NOT_DECIMALS) + 1, 0)
    assert caplog.text.count("skipped an unusable fill") <= 5
