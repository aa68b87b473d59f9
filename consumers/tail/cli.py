"""``python -m consumers.tail``: XREAD BLOCK from a start id, print each entry, stop cleanly.

It stops after ``--count`` events, on SIGINT/SIGTERM, or when whatever reads its output has gone
(``… --json | head -1``): all of these exit 0 without a traceback. Redis going away while it follows is waited
out (reading resumes after the last entry shown, so nothing is skipped unless the stream was trimmed meanwhile);
a Redis that never answered is a configuration problem and exits 1.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import select
import sys
from collections.abc import Sequence
from typing import Any, TextIO

from consumers.connection import SOCKET_TIMEOUT_MARGIN_S
from consumers.entries import id_text, read_reply_entries
from consumers.tail.config import NEW_ONLY, TailConfig, load_tail_config
from consumers.tail.format import format_entry, table_header
from plumbing.backoff import exponential
from plumbing.process import EXIT_OK, install_signal_handlers, run_process
from plumbing.redis_connect import RedisClient, connect_redis
from plumbing.redis_errors import redis_unavailable
from plumbing.shards import shard_streams
from schemas import MalformedEntry

log = logging.getLogger("consumers.tail")

BLOCK_MS = 1_000
"""How long one read waits for new entries; also how soon a reader that went away is noticed on a quiet stream."""
PAGE = 500
"""Entries per read when catching up from an old id."""
MAX_RETRY_S = 5.0


def connect_tail(config: TailConfig) -> RedisClient:
    """A client whose socket timeout outlasts the blocking read, so a quiet stream never looks like a failure."""
    return connect_redis(
        config,
        socket_timeout=BLOCK_MS / 1000 + SOCKET_TIMEOUT_MARGIN_S,
        socket_connect_timeout=5.0,
        client_name="liq-tail",
    )


async def newest_id(redis: RedisClient, stream: str) -> str:
    """The id of the stream's newest entry (``0-0`` if it has none): reading after it gives only new entries.

    Resolved once, at the start: XREAD with ``$`` again at every read would miss what arrived between two reads.
    """
    newest = await redis.xrevrange(stream, count=1)
    entry_id = newest[0][0] if newest else None
    return "0-0" if entry_id is None else id_text(entry_id)


def reader_gone(out: TextIO) -> bool:
    """True when ``out`` is a pipe whose reading end is closed: there is no one left to print for."""
    try:
        fd = out.fileno()
    except (OSError, ValueError):  # not a real file (io.StringIO in tests, a closed stream)
        return False
    if not hasattr(select, "poll"):
        return False
    poller = select.poll()
    poller.register(fd, 0)  # POLLERR and POLLHUP are reported whatever the mask
    return any(events & (select.POLLERR | select.POLLHUP) for _, events in poller.poll(0))


async def follow(redis: RedisClient, config: TailConfig, out: TextIO, stop: asyncio.Event | None = None) -> int:
    """Print entries from ``config.after`` on until ``config.count`` were printed, ``stop`` is set or the reader of
    ``out`` has gone; returns how many were printed."""
    stop = stop or asyncio.Event()
    stop_waiter = asyncio.ensure_future(stop.wait())
    try:
        return await _follow(redis, config, out, stop, stop_waiter)
    finally:
        stop_waiter.cancel()


async def _follow(
    redis: RedisClient, config: TailConfig, out: TextIO, stop: asyncio.Event, stop_waiter: asyncio.Future[Any]
) -> int:
    # One XREAD per shard, each with its own cursor: a cluster refuses one XREAD over keys of several slots. A
    # shard's entries are printed in its order, as soon as its read answers; shards interleave as they arrive.
    streams = shard_streams(config.stream, config.shards)
    after = dict.fromkeys(streams, config.after)
    connected = False
    if config.after == NEW_ONLY:
        after = {stream: await newest_id(redis, stream) for stream in streams}
        connected = True
    header = not config.as_json  # printed once Redis answered: a wrong REDIS_URL prints only the error
    if header and connected:
        out.write(table_header() + "\n")
        out.flush()
        header = False
    printed = 0
    outages = 0
    reads: dict[str, asyncio.Future[Any]] = {}
    try:
        while not stop.is_set() and (config.count is None or printed < config.count):
            want = PAGE if config.count is None else min(PAGE, config.count - printed)
            for stream in streams:
                if stream not in reads:
                    reads[stream] = asyncio.ensure_future(
                        redis.xread({stream: after[stream]}, count=want, block=BLOCK_MS)
                    )
            await asyncio.wait((*reads.values(), stop_waiter), return_when=asyncio.FIRST_COMPLETED)
            if stop_waiter.done():
                break
            answered = {stream: reads.pop(stream) for stream in list(reads) if reads[stream].done()}
            failed = next((read.exception() for read in answered.values() if read.exception() is not None), None)
            if failed is not None:
                if not connected or not redis_unavailable(failed):
                    raise failed
                outages += 1
                delay = exponential(outages, base=0.1, cap=MAX_RETRY_S)
                log.warning("Redis unavailable (%s); reading on after %s in %.1f s", failed, after, delay)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(stop_waiter), delay)
                continue
            connected, outages = True, 0
            lines: list[str] = [table_header()] if header else []
            header = False
            shown = len(lines)
            for stream, read in answered.items():
                for entry_id, fields in read_reply_entries(read.result(), stream):
                    after[stream] = id_text(entry_id)
                    try:
                        lines.append(format_entry(entry_id, fields, as_json=config.as_json))
                    except MalformedEntry as exc:
                        log.warning("skipping entry %s of %r: %s", after[stream], stream, exc)
            if config.count is not None:  # several shards may answer at once
                lines = lines[: shown + config.count - printed]
            printed += len(lines) - shown
            if lines:
                out.write("\n".join(lines) + "\n")
                out.flush()
            elif reader_gone(out):
                log.info("the reader of our output has gone; stopping")
                break
    finally:
        for read in reads.values():  # abandoned, not awaited: a stop must not wait on a blocked read
            read.add_done_callback(_retrieve)
            read.cancel()
    return printed


def _retrieve(task: asyncio.Future[Any]) -> None:
    """Collect an abandoned read's outcome so asyncio does not report it as never retrieved."""
    if not task.cancelled():
        with contextlib.suppress(Exception):
            task.result()


async def run_tail(config: TailConfig, *, out: TextIO | None = None) -> int:
    """Follow until ``--count``, a signal or a closed pipe; all of them are a normal end (exit 0)."""
    out = out or sys.stdout
    redis = connect_tail(config)
    log.info(
        "following %r at %s from %s%s; Ctrl-C stops",
        config.stream,
        config.redis_where(),
        "new entries" if config.start == NEW_ONLY else config.start,
        "" if config.count is None else f" until {config.count} events are printed",
    )
    stop = asyncio.Event()
    remove_handlers = install_signal_handlers(stop.set)
    try:
        await follow(redis, config, out, stop)
    except BrokenPipeError:
        _discard_output(out)
    finally:
        remove_handlers()
        await redis.aclose()
    return EXIT_OK


def _discard_output(out: TextIO) -> None:
    """Point ``out`` at /dev/null, so the interpreter's last flush of what is still buffered does not fail too."""
    try:
        fd = out.fileno()
    except (OSError, ValueError):
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, fd)
    os.close(devnull)


def main(argv: Sequence[str] | None = None) -> int:
    return run_process(lambda: load_tail_config(argv), lambda c: c.log_level, run_tail, logger="consumers")
