"""A Hyperliquid node's fill files: finding the hourly files and reading complete lines from them.

``hl-visor run-non-validator --write-fills --batch-by-block`` writes
``<data>/node_fills_by_block/hourly/<YYYYMMDD>/<H>`` (hour not zero-padded), one JSON line per block, appending to
the current hour's file and starting the next one each hour. The public archive holds the same files compressed
with lz4 (``<H>.lz4``). A position in this record is (hour, byte offset in the uncompressed file), which means
the same thing in the live directory and in the archive, so a replay can hand over to live following.

Files that are not laid out by day (a copied hour, the shipped sample ``cascade.jsonl.lz4``) are placed by the
``block_time`` of their first line, so every form a user may point at has an hour and resumes the same way.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO, Literal

import lz4.frame

from producer.errors import ProducerError

log = logging.getLogger(__name__)

_DAY = re.compile(r"^\d{8}$")
_HOUR = re.compile(r"^(\d{1,2})(\.lz4)?$")
_BLOCK_TIME = re.compile(rb'"block_time"\s*:\s*"(\d{4})-(\d{2})-(\d{2})T(\d{2})')
NODE_DIRS = ("node_fills_by_block", "node_fills")
"""What a node's data directory holds the hourly fill files under, the batched layout first."""
SNIFF_BYTES = 4096
"""How much of a file's start is read to find its first block's time (the field comes first in a line)."""
DEFAULT_MAX_LINE = 64 << 20
"""Longest line read as a block: a real block, even in a cascade, is a few MB; past this it is damage (a NUL-filled
tail after a crash) that would otherwise be buffered whole."""
OnDamage = Literal["skip", "stop"]
"""What to do at a damaged hour file: report it and go on to the next hour, or stop the process there."""
_TAIL = 64
_LZ4_STEP = 1 << 16
"""Bytes of the last line kept to recognise the same position in a file replaced under the same name."""


class DamagedFile(ProducerError):
    """An hour file that cannot be read to its end: a truncated or corrupted ``.lz4``, an I/O error."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


@dataclass(frozen=True)
class HourFile:
    hour: datetime
    path: Path

    @property
    def name(self) -> str:
        """The hour's identity in checkpoints: ``YYYYMMDD/H``, whether the file is plain or compressed."""
        return f"{self.hour:%Y%m%d}/{self.hour.hour}"

    @property
    def compressed(self) -> bool:
        return self.path.suffix == ".lz4"

    @property
    def start_ms(self) -> int:
        return int(self.hour.timestamp() * 1000)


def parse_hour_name(name: str) -> datetime:
    """``YYYYMMDD/H`` back to the hour it names (UTC)."""
    day, _, hour = name.partition("/")
    return datetime.strptime(day, "%Y%m%d").replace(hour=int(hour), tzinfo=UTC)


def hour_from_layout(path: Path) -> datetime | None:
    """The hour a ``<YYYYMMDD>/<H>[.lz4]`` path names, or None when the path is not laid out that way."""
    match = _HOUR.match(path.name)
    if match is None or not _DAY.match(path.parent.name) or int(match.group(1)) > 23:
        return None
    try:
        day = datetime.strptime(path.parent.name, "%Y%m%d").replace(tzinfo=UTC)
    except ValueError:
        return None
    return day.replace(hour=int(match.group(1)))


def hour_from_head(head: bytes) -> datetime | None:
    """The hour of the first block in the start of a file, from its ``block_time``; None if there is none."""
    match = _BLOCK_TIME.search(head)
    if match is None:
        return None
    year, month, day, hour = (int(part) for part in match.groups())
    try:
        return datetime(year, month, day, hour, tzinfo=UTC)
    except ValueError:
        return None


def _read_head(path: Path) -> bytes | None:
    """The first bytes of a file, decompressed; None when they cannot be read yet (empty, or an lz4 still arriving)."""
    try:
        if path.suffix == ".lz4":
            with lz4.frame.open(path, "rb") as handle:
                head: bytes = handle.read(SNIFF_BYTES)
        else:
            with open(path, "rb") as handle:
                head = handle.read(SNIFF_BYTES)
    except (OSError, EOFError, RuntimeError):
        return None
    return head if b"\n" in head or len(head) >= SNIFF_BYTES else None


def _files_in(directory: Path) -> list[Path]:
    """Regular files directly in ``directory``, without a stat per file (a listing runs on every rotation check)."""
    with os.scandir(directory) as entries:
        return [Path(e.path) for e in entries if not e.name.startswith(".") and e.is_file()]


def _hour_dirs(root: Path) -> tuple[list[Path], bool]:
    """The directories holding ``root``'s hour files, and whether they are day directories (named YYYYMMDD).

    ``root`` may be a node's data directory, its ``node_fills_by_block`` (or ``node_fills``), their ``hourly``,
    one day's directory, or any directory of hour files.
    """
    base = root
    for name in NODE_DIRS:
        if (base / name).is_dir():
            base = base / name
            break
    if (base / "hourly").is_dir():
        base = base / "hourly"
    if _DAY.match(base.name):
        return [base], True
    with os.scandir(base) as entries:
        days = sorted(Path(e.path) for e in entries if _DAY.match(e.name) and e.is_dir())
    return (days, True) if days else ([base], False)


class HourFinder:
    """Every hour file under the configured paths, oldest first; a plain file wins over an ``.lz4`` of its hour.

    Files laid out as ``<YYYYMMDD>/<H>`` are placed by their path; any other file (given directly or in a directory
    that is not a day's) by its first block, read once per file (kept by inode, so a replaced file is read again).
    """

    def __init__(self, paths: Iterable[Path]) -> None:
        self.paths = list(paths)
        self._heads: dict[tuple[Path, int], datetime | None] = {}

    def find(self) -> list[HourFile]:
        found: dict[datetime, HourFile] = {}
        for hour_file in self._candidates():
            known = found.get(hour_file.hour)
            if known is None or (known.compressed and not hour_file.compressed):
                found[hour_file.hour] = hour_file
        return [found[hour] for hour in sorted(found)]

    def _candidates(self) -> Iterator[HourFile]:
        for root in self.paths:
            try:
                if root.is_file():
                    hour = hour_from_layout(root) or self._hour_from_content(root)
                    if hour is not None:
                        yield HourFile(hour, root)
                    continue
                if not root.is_dir():
                    continue  # gone since start-up; the source reports a path without hour files
                directories, by_day = _hour_dirs(root)
                for directory in directories:
                    for path in _files_in(directory):
                        hour = hour_from_layout(path) if by_day else self._hour_from_content(path)
                        if hour is not None:
                            yield HourFile(hour, path)
            except OSError as exc:
                log.warning("node: cannot list %s: %s", root, exc)

    def _hour_from_content(self, path: Path) -> datetime | None:
        try:
            key = (path, path.stat().st_ino)
        except OSError:
            return None
        if key in self._heads:
            return self._heads[key]
        head = _read_head(path)
        if head is None:
            return None  # not readable yet: try again at the next listing
        hour = self._heads[key] = hour_from_head(head)
        return hour


def find_hour_files(paths: Iterable[Path]) -> list[HourFile]:
    """Every hour file under ``paths``, oldest first (see :class:`HourFinder`)."""
    return HourFinder(paths).find()


def split_future(files: list[HourFile], now_ms: int, allowance_ms: int) -> tuple[list[HourFile], list[HourFile]]:
    """The files whose hour has begun (give or take ``allowance_ms`` of clock skew), and the ones dated later.

    A node only writes the hour it is in, so a file dated later is misnamed or stray; reading it would move the
    checkpoint into the future, and every real hour after the stray one would then look old and be passed over.
    """
    horizon = now_ms + allowance_ms
    return [f for f in files if f.start_ms <= horizon], [f for f in files if f.start_ms > horizon]


def _describe_damage(exc: Exception) -> str:
    if isinstance(exc, EOFError):
        return "its lz4 data ends before the end of the frame: a truncated file or an interrupted download"
    if isinstance(exc, RuntimeError):
        return f"its lz4 data is corrupt ({exc})"
    return f"it cannot be read ({exc})"


class LineReader:
    """Complete lines of one hour file from a byte offset, a bounded chunk at a time.

    A partial last line (the node is still writing it) stays in the reader until its newline arrives; ``offset``
    is always the position just after the last complete line handed out, which is what a checkpoint records.
    A line longer than ``max_line`` is skipped and reported, never buffered whole: memory stays bounded and
    each byte is searched for a newline once, so even a region without any newline is read in linear time.
    """

    def __init__(self, hour_file: HourFile, offset: int = 0, *, max_line: int = DEFAULT_MAX_LINE) -> None:
        self.file = hour_file
        self.offset = offset
        self.max_line = max_line
        self.lines_read = 0
        self.lines_skipped = 0
        self.exhausted = False
        """Nothing more will be read from this file (it is damaged); only a replacement is read again."""
        self._pending = bytearray()
        self._skipping = 0
        """Bytes of an over-long line dropped so far; the line starts at ``offset``."""
        self._tail = b""
        """The end of the last complete line, newline included (empty when resumed from a checkpoint)."""
        self._raw: BinaryIO = open(hour_file.path, "rb")
        self._handle: BinaryIO = self._decoder(self._raw)
        self._seek_to: int | None = offset or None
        """Where to start, applied at the first read, so that damage found by seeking is reported like any other."""
        self._expect = b""
        self._replaced = False
        self._damage: DamagedFile | None = None

    def _decoder(self, raw: BinaryIO) -> BinaryIO:
        return lz4.frame.open(raw, "rb") if self.file.compressed else raw

    def close(self) -> None:
        self._handle.close()
        self._raw.close()

    def __enter__(self) -> LineReader:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def _read(self, size: int) -> bytes:
        """Up to ``size`` bytes; at damage, what decoded before it first, then :class:`DamagedFile`.

        A compressed file is decoded in small steps: a failing step loses only its own output, not a whole chunk
        of good blocks before the damage.
        """
        if self._damage is not None:
            raise self._damage
        step = _LZ4_STEP if self.file.compressed else size
        parts: list[bytes] = []
        got = 0
        try:
            if self._seek_to is not None:
                self._start()
            while got < size:
                piece = self._handle.read(min(step, size - got))
                if not piece:
                    break
                parts.append(piece)
                got += len(piece)
        except (EOFError, RuntimeError, OSError) as exc:
            self._damage = DamagedFile(self.file.path, _describe_damage(exc))
            if not parts:
                raise self._damage from None
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def _start(self) -> None:
        """Seek to the starting offset; in a replacement, only if its bytes before the offset are the ones read."""
        target, expect, replaced = self._seek_to or 0, self._expect or b"\n", self._replaced
        self._seek_to, self._expect = None, b""
        if not replaced or target == 0:
            self._handle.seek(target)
            return
        if target >= len(expect):
            self._handle.seek(target - len(expect))
            if self._handle.read(len(expect)) == expect:
                return
        log.warning(
            "node: %s was replaced by a file that differs before byte %d: reading it again from its start "
            "(what was already published is skipped as a duplicate)",
            self.file.path,
            target,
        )
        self._handle.seek(0)
        self.offset = 0

    def read_lines(self, max_bytes: int) -> tuple[list[bytes], int]:
        """Up to about ``max_bytes`` of complete lines, and how many bytes were read from the file (0: at its end).

        Raises :class:`DamagedFile` when the file cannot be read on; what was handed out before stays valid.
        """
        chunk = self._read(max_bytes)
        if not chunk:
            return [], 0
        first = chunk.find(b"\n")
        if first == -1:
            self._hold(chunk)
            return [], len(chunk)
        lines: list[bytes] = []
        head = chunk[:first]
        if self._skipping:
            self._skip(self._skipping + len(head))
        elif self._pending:
            self._pending += head
            self._emit(bytes(self._pending), lines)
            self._pending = bytearray()
        else:
            self._emit(head, lines)
        last = chunk.rfind(b"\n")
        if last > first:
            for line in chunk[first + 1 : last].split(b"\n"):
                self._emit(line, lines)
        self._hold(chunk[last + 1 :])
        return lines, len(chunk)

    def _emit(self, line: bytes, lines: list[bytes]) -> None:
        if len(line) > self.max_line:
            self._skip(len(line))
            return
        lines.append(line)
        self.lines_read += 1
        self.offset += len(line) + 1
        self._tail = line[-(_TAIL - 1) :] + b"\n"

    def _hold(self, data: bytes) -> None:
        if not data:
            return
        if self._skipping:
            self._skipping += len(data)
        elif len(self._pending) + len(data) > self.max_line:
            self._skipping = len(self._pending) + len(data)
            self._pending = bytearray()
        else:
            self._pending += data

    def _skip(self, length: int, *, newline: bool = True) -> None:
        log.warning(
            "node: %s: skipped a line of %d bytes at byte %d, longer than the %d-byte limit "
            "(--node-max-line / HL_NODE_MAX_LINE)",
            self.file.path,
            length,
            self.offset,
            self.max_line,
        )
        self.lines_skipped += 1
        self.offset += length + (1 if newline else 0)
        self._skipping, self._tail = 0, b""

    def take_partial(self) -> bytes:
        """The unterminated rest, once the file is known to be finished; the offset moves past it."""
        if self._skipping:
            self._skip(self._skipping, newline=False)
            return b""
        rest, self._pending = bytes(self._pending), bytearray()
        self.offset += len(rest)
        return rest

    def discard_partial(self) -> None:
        """Forget an unterminated rest that will never be completed (the file is damaged past it)."""
        self._pending, self._skipping = bytearray(), 0

    def replaced(self) -> str | None:
        """How the file now at the path differs from the one being read, or None while it is the same file.

        Tools that update a file by writing a temporary one and renaming it over the old (rsync, ``aws s3 sync``,
        ``cp`` then ``mv``) leave this reader on the deleted inode: only the name says there is more.
        """
        try:
            now = os.stat(self.file.path)
        except OSError:
            return None  # gone for a moment (mid-rename) or for good: keep what is open
        own = os.fstat(self._raw.fileno())
        if (now.st_dev, now.st_ino) != (own.st_dev, own.st_ino):
            return "replaced by a new file under the same name"
        if not self.file.compressed and now.st_size < self._raw.tell():
            return f"truncated to {now.st_size} bytes"
        return None

    def reopen(self) -> None:
        """Follow the name to the file now there: on at the same offset if its bytes before it are the ones read,
        else from its start (the publisher's dedup keys absorb what is read twice)."""
        self.close()
        self._raw = open(self.file.path, "rb")
        self._handle = self._decoder(self._raw)
        self._pending, self._skipping, self.exhausted, self._damage = bytearray(), 0, False, None
        self._seek_to, self._expect, self._replaced = self.offset, self._tail, True
