"""The stats aggregator: totals in memory, rebuilt from the stream on start, reported as a table and as JSON.

**Surviving a restart.** Before it resumes its group, the aggregator reads the stream's retained history with
XRANGE up to the group's last-delivered id *B* and counts it. Every entry at or before *B* is then in the totals;
every entry after *B* has never been delivered to the group. The runner is told ``skip_through=B``: whatever the
group still has pending at or before *B* (delivered to a consumer that died before acknowledging it, or handed back
at the last stop) is acknowledged without being counted again; everything the group delivers after that has an id
above *B* and is counted once. This boundary needs no memory of event keys. (``Totals`` also ignores a key it
saw recently, a bounded second line of defence for a redelivery within one run.)

**Replicas.** Several aggregators in one group split the entries, so each one's live totals are partial; the
snapshot says so ("partial view: 1 of 2 consumers", from XINFO CONSUMERS). A replica that outlives the others (the
last one stopped, printing its table on exit) no longer sees them there, so the group's read counter (XINFO
GROUPS ``entries-read``, Redis 7) is compared with what this consumer handled since it started: entries that
neither this consumer handled nor anyone holds pending were handled by other consumers. A separate group gets a
full view.
**Shards.** With ``LIQ_SHARDS`` the group reads every shard (:class:`~consumers.sharded_runner.ShardedRunner`), and
each shard has its own boundary: the rebuild counts each shard's history up to its group's last-delivered id and
skips through that id on that shard. The totals are per event and every event is in one shard, so merging the
shards is reading them all; the view's figures are summed over the shards' groups.
Note that the history rebuild is always full (the stream does not record which consumer handled what): after a
restart, a replica's totals are the full history up to *B* plus its share of what came after.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections import Counter
from collections.abc import Callable
from typing import Any, TextIO

from redis.exceptions import RedisError

from consumers.entries import id_text
from consumers.runner import Runner
from consumers.sharded_runner import ShardedRunner
from consumers.stats.config import StatsConfig
from consumers.stats.table import render_table
from consumers.totals import Totals
from plumbing.redis_connect import RedisClient
from schemas import EntryError, Event, decode_entry, event_type

log = logging.getLogger("consumers.stats")

REBUILD_PAGE = 5_000


def entries_read(group_info: dict[str, Any]) -> int | None:
    """The group's ``entries-read`` (None before Redis 7 or when Redis cannot tell); 0 before its first read."""
    read = group_info.get("entries-read")
    if read is None:
        return 0 if group_info.get("last-delivered-id") in (b"0-0", "0-0") else None
    return int(read)


def describe_view(consumers: int, group_read: int | None, own: int, pending: int) -> dict[str, Any]:
    """Whether the totals are this consumer's share or the group's whole: what the table's first line says.

    ``consumers`` are the group's active consumers now; ``group_read`` the entries the group was delivered since
    this consumer started (None when Redis cannot tell), ``own`` those this consumer finished and ``pending`` those
    still pending in the group. Active consumers alone would call a replica that outlived the others a full view.
    """
    others = 0 if group_read is None else group_read - own - pending
    if consumers > 1:
        note = f"partial view: 1 of {consumers} consumers"
    elif others > 0:
        note = (
            f"partial view: this consumer's share; other consumers of the group handled {others:,} of its "
            f"{group_read:,} entries since this one started"
        )
    else:
        note = "full view"
    return {"partial": note != "full view", "consumers": consumers, "note": note}


class StatsService:
    def __init__(
        self,
        config: StatsConfig,
        redis: RedisClient,
        *,
        out: TextIO | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.redis = redis
        self.totals = Totals()
        self.runner = ShardedRunner.from_config(redis, config.consumer, batch_handler=self.handle)
        self.rebuilt = 0
        """Events counted from the stream's history on start."""
        self.rebuild_skipped = 0
        """History entries that did not decode or were of unknown types (the group dead-letters or counts them)."""
        self.counted: Counter[str] = Counter()
        """Events the group delivered that entered the totals, by type (the history rebuild is ``rebuilt``)."""
        self._out = out
        self._clock = clock
        self._group_read_at_start: int | None = None
        """The group's ``entries-read`` when this consumer started, the base of the view's share."""

    async def handle(self, events: list[Event]) -> None:
        for event in events:
            if self.totals.add(event):
                self.counted[event_type(event)] += 1

    async def begin(self) -> None:
        """Create the group if missing and note how many entries it was delivered so far; before the first read."""
        for group in self.runner.groups:
            await group.ensure()
        self._group_read_at_start = await self._group_read()

    async def _group_read(self) -> int | None:
        """The group's ``entries-read`` over every shard; None if any shard's is unknown."""
        reads = [entries_read(await group.info() or {}) for group in self.runner.groups]
        return None if any(read is None for read in reads) else sum(read for read in reads if read is not None)

    async def rebuild(self) -> int:
        """Count the retained history up to the group's last-delivered id, shard by shard; make each shard's runner
        skip what it counted."""
        await self.begin()
        for runner in self.runner.runners:
            await self._rebuild_shard(runner.stream, runner)
        log.info(
            "rebuilt totals from %d events of the stream's history (%d entries skipped: unknown type or "
            "undecodable); entries at or before the group's last-delivered id are not counted again",
            self.rebuilt,
            self.rebuild_skipped,
        )
        return self.rebuilt

    async def _rebuild_shard(self, stream: str, runner: Runner) -> None:
        boundary = await runner.consumer_group.last_delivered_id()
        runner.skip_through = boundary
        if boundary == "0-0":
            log.info("group %r has delivered nothing of %r yet: no history to rebuild from", runner.group, stream)
            return
        start = "-"
        while True:
            page = await self.redis.xrange(stream, min=start, max=boundary, count=REBUILD_PAGE) or []
            for _, fields in page:
                try:
                    event = decode_entry(fields or {})
                except EntryError:  # unknown type or undecodable: the group counted or dead-lettered it
                    self.rebuild_skipped += 1
                    continue
                if self.totals.add(event):
                    self.rebuilt += 1
            if len(page) < REBUILD_PAGE:
                break
            last = page[-1][0]
            assert last is not None
            start = "(" + id_text(last)
        log.info("counted the history of %r up to %s", stream, boundary)

    async def snapshot(self) -> dict[str, Any]:
        """What the table shows and other services read: totals, the view (full or partial), the runner's state."""
        now_ms = int(self._clock() * 1000)
        consumers = max([1] + [len(await group.active_consumers()) for group in self.runner.groups])
        pending = sum([int((await group.info() or {}).get("pending") or 0) for group in self.runner.groups])
        now_read, start_read = await self._group_read(), self._group_read_at_start
        counters = self.runner.counters
        view = describe_view(
            consumers,
            None if now_read is None or start_read is None else now_read - start_read,
            own=counters.processed + counters.unknown_type + counters.dead_lettered + counters.deleted,
            pending=pending,
        )
        c = self.config.consumer
        return {
            "stream": c.stream,
            "group": c.group,
            "consumer": c.consumer,
            "generated_at": now_ms,
            "view": view,
            "rebuilt_from_history": self.rebuilt,
            "runner": await self.runner.metrics(),
            "totals": self.totals.statistics(now_ms),
        }

    async def report(self) -> dict[str, Any]:
        """Print the table and publish the snapshot to ``config.key`` (with a TTL, so a dead replica's expires)."""
        snapshot = await self.snapshot()
        out = self._out or sys.stdout
        out.write(render_table(snapshot, top=self.config.top) + "\n\n")
        out.flush()
        await self.redis.set(self.config.key, json.dumps(snapshot), ex=self.config.ttl_s)
        return snapshot

    async def run_reports(self) -> None:
        """Report every ``interval_s`` until the runner stops; a failed report is logged and the next one tried."""
        while not await self.runner.wait_stopped(self.config.interval_s):
            try:
                await self.report()
            except RedisError as exc:
                log.warning("could not report (%s); trying again in %g s", exc, self.config.interval_s)

    async def final_report(self) -> None:
        try:
            await self.report()
        except RedisError as exc:
            log.error(
                "the final snapshot could not be published (%s); totals were: %s",
                exc,
                json.dumps(self.totals.statistics(int(self._clock() * 1000))),
            )
