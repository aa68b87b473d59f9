"""A Hyperliquid node's fill files: finding the hourly files and reading complete lines from them.

``hl-visor run-non-validator --write-fills --batch-by-block`` writes
``<data>/node_fills_by_block/hourly/<YYYYMMDD>/<H>`` (hour not zero-padded), one JSON line per block, appending to
the current hour's file and starting the next one each hour. The public archive holds the same files compressed
with lz4 (``<H>.lz4``). A position in this record is (hour, byte offset in the uncompressed file), which means
the same thing in the live directory and in the archive, so a replay can hand over to live following.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

import lz4.frame

log = logging.getLogger(__name__)

_DAY = re.compile(r"^\d{8}$")
_HOUR = re.compile(r"^(\d{1,2})(\.lz4)?$")


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


def _hour_file(path: Path) -> HourFile | None:
    match = _HOUR.match(path.name)
    if match is None or not _DAY.match(path.parent.name) or int(match.group(1)) > 23:
        return None
    day = datetime.strptime(path.parent.name, "%Y%m%d").replace(tzinfo=UTC)
    return HourFile(day.replace(hour=int(match.group(1))), path)


def find_hour_files(paths: Iterable[Path]) -> list[HourFile]:
    """Every hour file under ``paths``, oldest first; a plain file wins over an ``.lz4`` of the same hour.

    A path may be the node's ``node_fills_by_block`` directory, its ``hourly`` directory, one day's directory,
    or a single hour file (named ``<YYYYMMDD>/<H>`` or ``<YYYYMMDD>/<H>.lz4`` like the node and the archive).
    """
    found: dict[datetime, HourFile] = {}
    for root in paths:
        if root.is_file():
            candidates: Iterable[Path] = [root]
        else:
            base = root / "hourly" if (root / "hourly").is_dir() else root
            days = [base] if _DAY.match(base.name) else [d for d in base.iterdir() if d.is_dir() and _DAY.match(d.name)]
            candidates = (f for day in days for f in day.iterdir() if f.is_file())
        for path in candidates:
            hour_file = _hour_file(path)
            if hour_file is None:
                continue
            known = found.get(hour_file.hour)
            if known is None or (known.compressed and not hour_file.compressed):
                found[hour_file.hour] = hour_file
    return [found[hour] for hour in sorted(found)]


class LineReader:
    """Complete lines of one hour file from a byte offset, a bounded chunk at a time.

    A partial last line (the node is still writing it) stays in the reader until its newline arrives; ``offset``
    is always the position just after the last complete line handed out, which is what a checkpoint records.
    """

    def __init__(self, hour_file: HourFile, offset: int = 0) -> None:
        self.file = hour_file
        self.offset = offset
        self._pending = b""
        self._handle: BinaryIO = (
            lz4.frame.open(hour_file.path, "rb") if hour_file.compressed else open(hour_file.path, "rb")
        )
        if offset:
            self._handle.seek(offset)

    def close(self) -> None:
        self._handle.close()

    def read_lines(self, max_bytes: int) -> tuple[list[bytes], int]:
        """Up to about ``max_bytes`` of complete lines, and how many bytes were read from the file (0: at its end)."""
        chunk = self._handle.read(max_bytes)
        if not chunk:
            return [], 0
        data = self._pending + chunk if self._pending else chunk
        cut = data.rfind(b"\n")
        if cut == -1:
            self._pending = data
            return [], len(chunk)
        self._pending = data[cut + 1 :]
        self.offset += cut + 1
        return data[:cut].split(b"\n"), len(chunk)

    def take_partial(self) -> bytes:
        """The unterminated rest, once the file is known to be finished; the offset moves past it."""
        rest, self._pending = self._pending, b""
        self.offset += len(rest)
        return rest
