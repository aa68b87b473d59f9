"""Finding a node's hour files in every form a user points at, and reading lines from them safely."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

import lz4.frame
import pytest

from producer.simulation.sample import SAMPLE_PATH
from producer.sources.node_files import (
    DamagedFile,
    HourFile,
    LineReader,
    find_hour_files,
    hour_from_head,
    hour_from_layout,
    split_future,
)

SAMPLE_HOUR = "20251010/21"


def block_line(number: int, *, hour: int = 21, pad: int = 0) -> bytes:
    stamp = f"2025-10-10T{hour:02d}:15:00.118000000"
    return f'{{"local_time":"{stamp}","block_time":"{stamp}","block_number":{number},"events":[]}}'.encode() + (
        b" " * pad + b"\n"
    )


def write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(lz4.frame.compress(data) if path.suffix == ".lz4" else data)
    return path


def test_the_hour_of_a_first_line_and_of_a_path() -> None:
    assert hour_from_head(block_line(1, hour=7)) == datetime(2025, 10, 10, 7, tzinfo=UTC)
    assert hour_from_head(b'{"block_time":"2025-13-40T99"') is None
    assert hour_from_head(b"no block here\n") is None
    assert hour_from_layout(Path("hourly/20251010/21.lz4")) == datetime(2025, 10, 10, 21, tzinfo=UTC)
    assert hour_from_layout(Path("data/cascade.jsonl.lz4")) is None
    assert hour_from_layout(Path("hourly/20251399/1")) is None  # digits, not a date


@pytest.mark.parametrize(
    "point_at",
    [
        "data",  # a node's data directory (~/hl/data)
        "data/node_fills_by_block",
        "data/node_fills_by_block/hourly",
        "data/node_fills_by_block/hourly/20251010",  # one day
        "data/node_fills_by_block/hourly/20251010/21",  # one hour file
    ],
)
def test_every_level_of_a_nodes_layout_finds_its_hours(tmp_path: Path, point_at: str) -> None:
    write(tmp_path / "data/node_fills_by_block/hourly/20251010/21", block_line(1))
    write(tmp_path / "data/node_fills_by_block/hourly/20251009/3", block_line(2, hour=3))
    write(tmp_path / "data/node_fills/hourly/20251010/22", block_line(3, hour=22))  # the unbatched twin, ignored
    found = [f.name for f in find_hour_files([tmp_path / point_at])]
    assert SAMPLE_HOUR in found
    assert "20251010/22" not in found


def test_the_unbatched_directory_is_used_when_it_is_the_only_one(tmp_path: Path) -> None:
    write(tmp_path / "data/node_fills/hourly/20251010/22", block_line(3, hour=22))
    assert [f.name for f in find_hour_files([tmp_path / "data"])] == ["20251010/22"]


def test_the_shipped_sample_is_an_hour_file_as_a_file_and_as_a_directory() -> None:
    for path in (SAMPLE_PATH, SAMPLE_PATH.parent):
        [hour_file] = find_hour_files([path])
        assert hour_file.name == SAMPLE_HOUR and hour_file.path == SAMPLE_PATH and hour_file.compressed


def test_a_directory_of_hour_files_not_laid_out_by_day_is_placed_by_content(tmp_path: Path) -> None:
    write(tmp_path / "copied" / "21.lz4", block_line(1))
    write(tmp_path / "copied" / "22", block_line(2, hour=22))
    write(tmp_path / "copied" / "README", b"not a block\n")
    write(tmp_path / "copied" / "empty", b"")
    found = find_hour_files([tmp_path / "copied"])
    assert [(f.name, f.path.name) for f in found] == [(SAMPLE_HOUR, "21.lz4"), ("20251010/22", "22")]


def test_a_file_with_a_future_hour_is_set_apart() -> None:
    now = datetime(2025, 10, 10, 21, 30, tzinfo=UTC)
    files = [HourFile(now.replace(hour=h, minute=0), Path(str(h))) for h in (20, 21, 22)]
    now_ms = int(now.timestamp() * 1000)
    assert split_future(files, now_ms, 15 * 60_000) == (files[:2], files[2:])
    assert split_future(files, now_ms + 20 * 60_000, 15 * 60_000) == (files, [])  # 22:00 within the allowance


def reader_for(path: Path, **kwargs: int) -> LineReader:
    [hour_file] = find_hour_files([path])
    return LineReader(hour_file, **kwargs)


def read_all(reader: LineReader, chunk: int = 1 << 20) -> list[bytes]:
    lines: list[bytes] = []
    while True:
        got, size = reader.read_lines(chunk)
        lines += got
        if not size:
            return lines


def test_an_over_long_line_is_skipped_and_reported_in_bounded_memory(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A NUL-filled region with no newline (a crash mid-write) is passed in one sweep, never held whole."""
    path = tmp_path / "hourly/20251010/21"
    region = 16 << 20
    with open(write(path, block_line(1)), "ab") as handle:
        handle.write(b"\0" * region)
        handle.write(b"\n" + block_line(2) + block_line(3, pad=3000) + block_line(4))
    with reader_for(tmp_path, max_line=2000) as reader:
        peak = 0
        lines: list[bytes] = []
        while True:
            got, size = reader.read_lines(1 << 20)
            lines += got
            peak = max(peak, len(reader._pending))
            if not size:
                break
        assert lines == [block_line(1)[:-1], block_line(2)[:-1], block_line(4)[:-1]]
        assert reader.lines_skipped == 2 and peak <= 2000
        assert reader.offset == path.stat().st_size
        assert f"skipped a line of {region} bytes at byte {len(block_line(1))}" in caplog.text


def test_an_over_long_unterminated_rest_is_skipped_when_the_file_is_finished(tmp_path: Path) -> None:
    path = write(tmp_path / "hourly/20251010/21", block_line(1) + b"\0" * 5000)
    with reader_for(tmp_path, max_line=1000) as reader:
        assert read_all(reader, 512) == [block_line(1)[:-1]]
        assert reader.take_partial() == b""
        assert reader.offset == path.stat().st_size and reader.lines_skipped == 1


def test_a_line_split_over_many_chunks_is_put_together(tmp_path: Path) -> None:
    write(tmp_path / "hourly/20251010/21", block_line(1, pad=5000) + block_line(2))
    with reader_for(tmp_path) as reader:
        assert read_all(reader, 7) == [block_line(1, pad=5000)[:-1], block_line(2)[:-1]]


def replace_by_rename(path: Path, data: bytes) -> None:
    """How rsync, ``aws s3 sync`` and ``cp`` + ``mv`` update a file: a new inode under the old name."""
    temporary = path.with_name("." + path.name)
    write(temporary, data)
    os.replace(temporary, path)


@pytest.mark.parametrize("name", ["21", "21.lz4"])
def test_a_file_replaced_by_a_longer_copy_is_followed_on_from_the_same_offset(tmp_path: Path, name: str) -> None:
    path = write(tmp_path / "hourly/20251010" / name, block_line(1) + block_line(2))
    with reader_for(tmp_path) as reader:
        assert len(read_all(reader)) == 2
        assert reader.replaced() is None
        replace_by_rename(path, block_line(1) + block_line(2) + block_line(3))
        assert reader.replaced() == "replaced by a new file under the same name"
        reader.reopen()
        assert read_all(reader) == [block_line(3)[:-1]]
        assert reader.replaced() is None


def test_a_replacement_that_differs_is_read_again_from_its_start(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = write(tmp_path / "hourly/20251010/21", block_line(1) + block_line(2))
    with reader_for(tmp_path) as reader:
        read_all(reader)
        replace_by_rename(path, block_line(7) + block_line(8) + block_line(9))
        reader.reopen()
        assert read_all(reader) == [block_line(n)[:-1] for n in (7, 8, 9)]
        assert "reading it again from its start" in caplog.text


def test_a_file_truncated_in_place_is_noticed(tmp_path: Path) -> None:
    path = write(tmp_path / "hourly/20251010/21", block_line(1) + block_line(2))
    with reader_for(tmp_path) as reader:
        read_all(reader)
        path.write_bytes(block_line(5))  # cp over it: same inode, shorter
        assert reader.replaced() == f"truncated to {len(block_line(5))} bytes"
        reader.reopen()
        assert read_all(reader) == [block_line(5)[:-1]]


@pytest.mark.parametrize("damage", ["truncated", "corrupt"])
def test_a_damaged_lz4_raises_one_error_after_the_lines_before_it(tmp_path: Path, damage: str) -> None:
    data = b"".join(block_line(n, pad=200) for n in range(3000))
    packed = bytearray(lz4.frame.compress(data))
    if damage == "truncated":
        packed = packed[: len(packed) // 2]
    else:
        packed[len(packed) // 2 : len(packed) // 2 + 64] = b"\xff" * 64
    path = tmp_path / "hourly/20251010/21.lz4"
    path.parent.mkdir(parents=True)
    path.write_bytes(bytes(packed))
    with reader_for(tmp_path) as reader:
        lines: list[bytes] = []
        with pytest.raises(DamagedFile) as caught:
            while True:
                got, size = reader.read_lines(1 << 16)
                lines += got
                assert size, "a damaged file must not read as a clean end"
        assert 0 < len(lines) < 3000 and lines == [block_line(n, pad=200)[:-1] for n in range(len(lines))]
        assert caught.value.path == path
        assert ("truncated" if damage == "truncated" else "corrupt") in caught.value.reason
