"""The ``node`` source: every liquidation on the venue, from a Hyperliquid node's fill files (or the archive).

It follows the node's output like ``tail -F``: the current hour's file as it grows, the next hour's file when it
appears, a partial last line left for the next read. Its position (hour and byte offset) is checkpointed in Redis
by the same script that publishes the events read up to it, so a restart resumes exactly there. The same source
replays archived hours (plain or ``.lz4``) from a start time to an end time, then, if asked, follows live.

Hot path: in a cascade a node writes hundreds of thousands of fills a minute. A block line without the word
``"liquidation"`` cannot hold a liquidation or ADL fill, so it is skipped with one substring search and never
decoded; the others are decoded by msgspec straight into Structs.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import msgspec

from producer.detector import detect_from_fills
from producer.errors import ProducerError
from producer.exchange_types import Fill
from producer.sources.base import LiquidationSource, PollResult
from producer.sources.node_files import (
    DEFAULT_MAX_LINE,
    DamagedFile,
    HourFile,
    HourFinder,
    LineReader,
    OnDamage,
    hour_from_layout,
    parse_hour_name,
    split_future,
)

log = logging.getLogger(__name__)

CHECKPOINT_HOUR = "node:hour"
CHECKPOINT_OFFSET = "node:offset"
_MARKER = b'"liquidation"'
FUTURE_ALLOWANCE_MS = 15 * 60_000
"""Clock skew tolerated between the node and us before an hour file counts as dated in the future."""
LIVE_LAG_MS = 60_000
"""Events older than this when read are a catch-up (a replay, a backlog after a restart), not live news."""
WATCH_TICK = 0.005
"""Seconds between two looks at the followed file while waiting: a block is read within about this long of its
write, for three stat calls per look (about 1% of a core while the node is quiet; ``bench/latency_node.py``)."""

Stamp = tuple[int, int, int, int] | None
"""What a path looks like to ``os.stat``: device, inode, size and mtime; None while it cannot be stat'ed."""


class NodeFileDamaged(ProducerError):
    """An hour file is damaged and the configuration says to stop there rather than skip the rest of it."""


class Block(msgspec.Struct):
    """One line of the node's file: a block and its fills, each under the user whose fill it is."""

    block_number: int
    events: list[tuple[str, Fill]]


class _RawBlock(msgspec.Struct):
    """A block whose fills are decoded one by one, when one of them does not decode (see ``_salvage``)."""

    block_number: int
    events: list[tuple[str, msgspec.Raw]]


_BAD_FILLS_LOGGED = 3
"""Unusable fills logged one by one; after that, only at each power of ten, with the running count."""


@dataclass(frozen=True)
class NodeWindow:
    """What to read: where to start without a checkpoint, where to stop, and whether to follow live after."""

    start_ms: int | None = None
    """None: start at the end of the newest file (live only); else the first hour at or after this time."""
    end_ms: int | None = None
    """Events at or after this time are not published; reading stops at the first hour past it."""
    follow: bool = True
    """Keep waiting for new data at the end of the newest file; False: stop there (a finished replay)."""


def is_catch_up(more: bool, newest_ms: int | None, now_ms: int) -> bool:
    """Whether a poll read old blocks: it stopped with more to read, or its newest fill is older than a minute.

    A catch-up logs a summary instead of a line per event: a replayed cascade hour holds hundreds of thousands.
    """
    return more or (newest_ms is not None and newest_ms < now_ms - LIVE_LAG_MS)


def no_files_problem(paths: Sequence[Path], future: int) -> str:
    """The one line that says why nothing is read, and what to do about it."""
    where = ", ".join(str(p) for p in paths) or "(no path)"
    if future:
        return (
            f"node: every hour file under {where} ({future}) is dated after now; fix the file names or this "
            "machine's clock"
        )
    return (
        f"node: no hour files under {where}: a node writes hourly/<YYYYMMDD>/<H> under its data directory "
        "(~/hl/data/node_fills_by_block); point --node-path (HL_NODE_PATH) at it, an archive directory or an hour file"
    )


def damage_message(damage: DamagedFile, reader: LineReader, on_damage: OnDamage) -> str:
    """The report of a damaged hour file: which, what is wrong, how far it was read, and what happens now."""
    where = f"node: {damage.path} is damaged: {damage.reason}; {reader.lines_read} blocks read from it"
    where += f" (up to byte {reader.offset})"
    if on_damage == "stop":
        return (
            f"{where}. Stopped there: replace the file (download it again) and restart, "
            "or set --node-damaged skip (HL_NODE_DAMAGED=skip) to go on without the rest of it"
        )
    return f"{where}. Skipping the rest of it (--node-damaged skip); replace the file to have it read again"


def watched_paths(following: Path | None, roots: Sequence[Path]) -> list[Path]:
    """The paths whose change means the next poll may find something: the file being followed (it grew, was
    replaced or truncated), its directory (the next hour's file appeared) and, in the node's day layout, the
    directory of days (the next day began). Before a file is followed, the configured paths (the first file).

    A few stats, not a listing: looking every few milliseconds must cost nothing while the node is quiet.
    """
    if following is None:
        return list(roots)
    paths = [following, following.parent]
    if hour_from_layout(following) is not None:
        paths.append(following.parent.parent)
    return paths


def stamp(path: Path) -> Stamp:
    """How ``path`` looks now; any change in it (a write, a rename over it, a new directory entry) is news."""
    try:
        info = os.stat(path)
    except OSError:
        return None
    return info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns


def end_of_last_line(hour_file: HourFile, window: int = 1 << 16) -> int:
    """The offset just after the file's last newline: where live following starts without reading the file."""
    if hour_file.compressed:
        reader = LineReader(hour_file)
        try:
            while reader.read_lines(1 << 20)[1]:
                pass
        except DamagedFile:
            pass  # reported when the poll reads it
        finally:
            reader.close()
        return reader.offset
    with open(hour_file.path, "rb") as handle:
        size = handle.seek(0, 2)
        position = size
        while position > 0:
            start = max(0, position - window)
            handle.seek(start)
            cut = handle.read(position - start).rfind(b"\n")
            if cut != -1:
                return start + cut + 1
            position = start
        return 0


class NodeSource(LiquidationSource):
    name = "node"

    def __init__(
        self,
        paths: Sequence[Path],
        window: NodeWindow = NodeWindow(),
        *,
        max_bytes_per_poll: int = 32 << 20,
        chunk_bytes: int = 1 << 20,
        max_line: int = DEFAULT_MAX_LINE,
        on_damage: OnDamage = "skip",
    ) -> None:
        self.paths = list(paths)
        self.window = window
        self.max_bytes_per_poll = max_bytes_per_poll
        self.chunk_bytes = chunk_bytes
        self.max_line = max_line
        self.on_damage = on_damage
        self.reader: LineReader | None = None
        self.garbage_lines = 0
        self.bad_fills = 0
        self.blocks_read = 0
        self.finished = False
        self.problem: str | None = None
        """Why the source cannot do its job right now (no hour files at all); the health check reports it."""
        self._resume: tuple[str, int] | None = None
        self._decoder = msgspec.json.Decoder(Block)
        self._finder = HourFinder(self.paths)
        self._future_reported: set[Path] = set()
        self._fatal: NodeFileDamaged | None = None
        self._hour_fills = 0
        self._raw_decoder = msgspec.json.Decoder(_RawBlock)
        self._fill_decoder = msgspec.json.Decoder(Fill)
        self._seen: tuple[list[Path], list[Stamp]] = ([], [])
        """The watched paths and their stamps when the last poll began: what it saw, or will have seen, of them."""

    def _look(self) -> None:
        """Note how the watched paths look before this poll reads them: a later change is news to the next wait."""
        watched = self._watched()
        self._seen = (watched, [stamp(path) for path in watched])

    def _watched(self) -> list[Path]:
        return watched_paths(None if self.reader is None else self.reader.file.path, self.paths)

    async def wait(self, seconds: float) -> None:
        """Return as soon as the followed file or its directories change since the last poll began, or after
        ``seconds``: a block the node writes is read within :data:`WATCH_TICK` of its write.

        A short stat poll rather than inotify: no dependency, and it also sees writes on network and container
        mounts, where inotify does not fire. The baseline is taken when the poll begins, not when the wait does,
        so a block written while the poll was reading is never left waiting for the interval.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        paths, before = self._seen
        if self.finished or self._fatal is not None:
            await asyncio.sleep(seconds)
            return
        if paths != self._watched():
            return  # the poll moved to another file: look at it at once
        while (remaining := deadline - loop.time()) > 0:
            await asyncio.sleep(min(WATCH_TICK, remaining))
            if [stamp(path) for path in paths] != before:
                return

    def restore(self, checkpoint: Mapping[str, str]) -> None:
        hour, offset = checkpoint.get(CHECKPOINT_HOUR), checkpoint.get(CHECKPOINT_OFFSET)
        if hour is not None and offset is not None and self.reader is None:
            self._resume = (hour, int(offset))

    def close(self) -> None:
        if self.reader is not None:
            self.reader.close()
            self.reader = None

    def _files(self, now_ms: int) -> list[HourFile]:
        """The hour files, without those dated in the future (each reported once)."""
        files, future = split_future(self._finder.find(), now_ms, FUTURE_ALLOWANCE_MS)
        for hour_file in future:
            if hour_file.path not in self._future_reported:
                self._future_reported.add(hour_file.path)
                log.warning(
                    "node: skipping %s: it is dated %s, after now; a node only writes the hour it is in "
                    "(a misnamed file, or this machine's clock is behind)",
                    hour_file.path,
                    hour_file.name,
                )
        if not files:
            problem = no_files_problem(self.paths, len(future))
            if problem != self.problem:
                log.warning("%s", problem)
            self.problem = problem
        else:
            self.problem = None
        return files

    def _open(self, hour_file: HourFile, offset: int = 0) -> LineReader:
        self._hour_fills = 0
        return LineReader(hour_file, offset, max_line=self.max_line)

    def _open_first(self, now_ms: int) -> LineReader | None:
        files = self._files(now_ms)
        if not files:
            return None
        if self._resume is not None:
            hour_name, offset = self._resume
            hour = parse_hour_name(hour_name)
            for hour_file in files:
                if hour_file.hour == hour:
                    log.info("node: resuming %s at byte %d", hour_file.path, offset)
                    return self._open(hour_file, offset)
                if hour_file.hour > hour:
                    log.warning("node: checkpointed hour %s is gone; continuing at %s", hour_name, hour_file.name)
                    return self._open(hour_file)
            log.warning("node: checkpointed hour %s is newer than every file; waiting for it", hour_name)
            return None
        if self.window.start_ms is None:
            newest = files[-1]
            offset = end_of_last_line(newest)
            log.info("node: following %s from its end (byte %d)", newest.path, offset)
            return self._open(newest, offset)
        start_hour_ms = self.window.start_ms - self.window.start_ms % 3_600_000
        for hour_file in files:
            if self._past_end(hour_file):
                break
            if hour_file.start_ms >= start_hour_ms:
                log.info("node: reading from %s", hour_file.path)
                return self._open(hour_file)
        return None

    def _next_file(self, current: HourFile, now_ms: int) -> HourFile | None:
        for hour_file in self._files(now_ms):
            if hour_file.hour > current.hour:
                return hour_file
        return None

    def _past_end(self, hour_file: HourFile) -> bool:
        return self.window.end_ms is not None and hour_file.start_ms >= self.window.end_ms

    async def poll(self, now_ms: int) -> PollResult:
        result = PollResult()
        if self._fatal is not None:
            raise self._fatal
        if self.finished:
            return result
        if self.reader is None:
            self.reader = self._open_first(now_ms)
            result.problem = self.problem
        self._look()
        if self.reader is None:
            self.finished = not self.window.follow
            result.finished = self.finished
            return result
        observed: list[tuple[str, Fill]] = []
        read = 0
        blocks_before = self.blocks_read
        reader = self.reader
        following: HourFile | None = None
        while read < self.max_bytes_per_poll:
            reader = self.reader
            size = 0
            if not reader.exhausted:
                try:
                    lines, size = reader.read_lines(self.chunk_bytes)
                except DamagedFile as damage:
                    if self._damaged(reader, damage, result):
                        break
                else:
                    read += size
                    for line in lines:
                        self._scan(line, observed)
            if size:
                continue
            # At the end of this file for now. A file renamed over it under the same name is followed by name.
            change = reader.replaced()
            if change is not None:
                log.warning("node: %s was %s: reopening it at byte %d", reader.file.path, change, reader.offset)
                reader.reopen()
                following = None
                continue
            # A newer hour's file means this one is complete, once it is read to its real end: the writer may
            # have added its last blocks while the directory was being listed.
            if following is None:
                following = self._next_file(reader.file, now_ms)
                if following is None:
                    if not self.window.follow:
                        self.finished = True
                        self._summarize(reader)
                    break
                continue
            self._finish_file(reader, observed)
            reader.close()
            if self._past_end(following):
                self.finished = True
                self.reader = None
                break
            self.reader = self._open(following)
            log.info("node: now reading %s", following.path)
            following = None
        # The position after the last line read (if the replay ended at a rotation, the end of the last hour).
        position = self.reader or reader
        result.checkpoint = {CHECKPOINT_HOUR: position.file.name, CHECKPOINT_OFFSET: str(position.offset)}
        result.more = result.more or (self.reader is not None and read >= self.max_bytes_per_poll)
        result.finished = self.finished
        result.items = self.blocks_read - blocks_before
        result.problem = self.problem
        result.catching_up = is_catch_up(result.more, max((f.time for _, f in observed), default=None), now_ms)
        result.events = detect_from_fills(
            self._in_window(observed), source="node", detected_at=now_ms, own_legs_only=True, via=("node",)
        )
        return result

    def _damaged(self, reader: LineReader, damage: DamagedFile, result: PollResult) -> bool:
        """Report a damaged file; True when the configuration says to stop (after publishing what came before)."""
        message = damage_message(damage, reader, self.on_damage)
        reader.discard_partial()
        reader.exhausted = True
        if self.on_damage == "stop":
            self._fatal = NodeFileDamaged(message)
            result.more = True  # poll again at once: the next poll raises, once this one's events are published
            return True
        log.error("%s", message)
        result.errors.append(message)
        return False

    def _finish_file(self, reader: LineReader, observed: list[tuple[str, Fill]]) -> None:
        rest = reader.take_partial()
        if rest.strip():
            log.warning(
                "node: %s ends without a newline (%d bytes); reading the last line as is", reader.file.path, len(rest)
            )
            self._scan(rest, observed)
        self._summarize(reader)

    def _summarize(self, reader: LineReader) -> None:
        """One line per hour file read: a replay's progress without a line per event."""
        log.info(
            "node: %s done: %d blocks read, %d liquidation and ADL fills, %d over-long lines skipped%s",
            reader.file.name,
            reader.lines_read,
            self._hour_fills,
            reader.lines_skipped,
            " (damaged: the rest was not read)" if reader.exhausted else "",
        )

    def _scan(self, line: bytes, observed: list[tuple[str, Fill]]) -> None:
        self.blocks_read += 1
        if _MARKER not in line:
            return
        try:
            block = self._decoder.decode(line)
        except msgspec.ValidationError:
            self._salvage(line, observed)
            return
        except msgspec.DecodeError as exc:
            self.garbage_lines += 1
            log.error("node: skipped a line that is not a block (%s): %.200r", exc, line)
            return
        before = len(observed)
        observed.extend((user, fill) for user, fill in block.events if fill.liquidation is not None)
        self._hour_fills += len(observed) - before

    def _salvage(self, line: bytes, observed: list[tuple[str, Fill]]) -> None:
        """Keep the good fills of a block some of whose fills do not decode (an unusable amount or time).

        Skipping the whole block would lose every liquidation in it for one bad fill; raising would stop the
        source at that line for good.
        """
        try:
            raw = self._raw_decoder.decode(line)
        except msgspec.DecodeError as exc:
            self.garbage_lines += 1
            log.error("node: skipped a line that is not a block (%s): %.200r", exc, line)
            return
        for user, raw_fill in raw.events:
            try:
                fill = self._fill_decoder.decode(raw_fill)
            except msgspec.DecodeError as exc:
                self.bad_fills += 1
                if self.bad_fills <= _BAD_FILLS_LOGGED or str(self.bad_fills).strip("0") == "1":
                    log.error(
                        "node: skipped an unusable fill of block %d (%s; %d so far): %.200r",
                        raw.block_number,
                        exc,
                        self.bad_fills,
                        bytes(raw_fill),
                    )
                continue
            if fill.liquidation is not None:
                observed.append((user, fill))

    def _in_window(self, observed: list[tuple[str, Fill]]) -> list[tuple[str, Fill]]:
        start, end = self.window.start_ms, self.window.end_ms
        if start is None and end is None:
            return observed
        return [
            (user, fill)
            for user, fill in observed
            if (start is None or fill.time >= start) and (end is None or fill.time < end)
        ]
