"""Read the liquidation stream through a Redis consumer group: at least once, never stuck, never silently lossy.

A :class:`Runner` owns the consumer-group bookkeeping so that a service only writes the handler::

    runner = Runner(redis, stream="hyperliquid:liquidations", group="my-service", consumer="host-1", handler=handle)
    install_signal_handlers(runner.stop)
    await runner.run()

What it guarantees, and how:

* **At least once.** An entry is acknowledged (XACK, one per batch) only after its handler returned. A handler
  that raises leaves the entry pending; it is handed over again after ``retry_delay_ms`` (doubling while failures
  continue), and meanwhile new entries keep flowing. Handlers must therefore tolerate a repeat.
* **Within one process, no repeat after success.** Acknowledgements that could not be sent (Redis blip) are kept
  and sent before anything else is read, so this process never re-reads an entry it already handled.
* **Dead consumers do not strand work.** Any live consumer takes over entries idle for ``claim_idle_ms``
  (XAUTOCLAIM, cursor followed to the end), every ``claim_interval_ms``. On start, a consumer first re-reads its
  own pending entries (from a previous life under the same name).
* **Poison never blocks the group.** An entry that does not decode (bad JSON, wrong types, newer schema version)
  or that was delivered more than ``max_deliveries`` times is copied to the dead-letter stream with ``reason``,
  ``original_id``, ``group`` and ``consumer``, then acknowledged. An event *type* this reader does not know
  (a newer producer's) is acknowledged and counted as ``unknown_type``: it is not broken, just not for us.
  Entries trimmed from the stream while pending are acknowledged and counted as ``deleted``. Which of these an
  entry is, :func:`consumers.decision.decide` says, without Redis.
* **Trimming past the group is said, counted and accounted for.** Entries ``MAXLEN`` trimmed before the group
  read them cannot be delivered; at start and every claim cycle the runner compares the group with the stream
  (:meth:`consumers.groups.ConsumerGroup.check_trimmed`), logs the loss with its id range, counts it as
  ``lost_to_trimming`` and sets the group's ``entries-read`` so that Redis's lag (and ours) counts only entries
  that can still come.
* **Clean stop.** :meth:`Runner.stop` (wired to SIGTERM/SIGINT by :mod:`plumbing.process`) interrupts a
  blocked read at once, lets the handler call in progress finish, hands the rest of the batch back (it stays
  pending for a live consumer to claim, or for this name's next start), flushes acknowledgements and returns.
  A consumer that leaves with nothing pending removes itself from the group, so the group lists live consumers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any, TypeVar, assert_never

from redis.exceptions import RedisError, ResponseError

from consumers.config import ConsumerConfig, RunnerSettings
from consumers.connection import check_socket_timeout
from consumers.decision import DeadLetter, Handle, Skipped, Trimmed, UnknownType, decide
from consumers.entries import Entry, EntryId, as_text, dead_letter_fields, id_text, read_reply_entries
from consumers.groups import ConsumerGroup
from plumbing.backoff import exponential
from plumbing.errors import ConfigError
from plumbing.redis_connect import RedisClient
from plumbing.redis_errors import REDIS_ERRORS, redis_unavailable
from schemas import Event

log = logging.getLogger("consumers.runner")

T = TypeVar("T")

Handler = Callable[[Event], Awaitable[None]]
"""Handles one event; raising leaves its entry pending for a retry."""

BatchHandler = Callable[[list[Event]], Awaitable[None]]
"""Handles the decodable events of one read at once; raising leaves all of them pending."""

_UNKNOWN_KINDS_LOGGED = 64


@dataclass
class RunnerCounters:
    """What the runner did since it started; read them for metrics (they only grow)."""

    processed: int = 0
    """Entries whose handler returned."""
    failed: int = 0
    """Handler calls that raised (per entry; a batch counts each of its entries)."""
    retried: int = 0
    """Entries handed to the handler again (delivered more than once)."""
    claimed: int = 0
    """Entries taken over from idle consumers (XAUTOCLAIM)."""
    dead_lettered: int = 0
    """Entries copied to the dead-letter stream and acknowledged."""
    unknown_type: int = 0
    """Entries of an event type this reader does not know; acknowledged."""
    deleted: int = 0
    """Pending entries found trimmed from the stream; acknowledged."""
    skipped: int = 0
    """Entries at or before ``skip_through`` (already accounted for by the service); acknowledged unhandled."""
    lost_to_trimming: int = 0
    """Entries trimmed from the stream (MAXLEN) before the group read them: never delivered to this group."""

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


class Runner:
    """One consumer of one group of one stream, feeding decoded events to one handler.

    Give exactly one of ``handler`` (called per event) or ``batch_handler`` (called with the list of events of one
    read). ``redis`` must not time out a read blocked for ``settings.block_ms`` (see :func:`consumers.connect`);
    :meth:`run` checks this and raises :class:`~consumers.errors.SocketTimeoutTooShort`.

    ``skip_through`` (an entry id, inclusive) makes the runner acknowledge without handling every entry at or
    before it: a service that rebuilt its state from the stream's history up to that id sets it so that entries
    still pending from before the restart are not counted twice. Set it before :meth:`run`.

    ``counters`` and ``last_read_ok`` (with :meth:`add_read_listener`) are what metrics and a health check read;
    :func:`consumers.metrics.serve_metrics` serves them.
    """

    # --- settings --------------------------------------------------------------------------------------------

    def __init__(
        self,
        redis: RedisClient,
        *,
        stream: str,
        group: str,
        consumer: str,
        handler: Handler | None = None,
        batch_handler: BatchHandler | None = None,
        settings: RunnerSettings | None = None,
        skip_through: str | None = None,
    ) -> None:
        if (handler is None) == (batch_handler is None):
            raise ConfigError("give the Runner exactly one of handler= (one event per call) or batch_handler= (a list)")
        for name, value in (("stream", stream), ("group", group), ("consumer", consumer)):
            if not value:
                raise ConfigError(f"the Runner needs a non-empty {name}")
        self.redis = redis
        self.stream = stream
        self.group = group
        self.consumer = consumer
        self.settings = settings or RunnerSettings()
        self.dead_letter_stream = self.settings.dead_letter_for(stream)
        self.skip_through = skip_through
        self.counters = RunnerCounters()
        self.consumer_group = ConsumerGroup(
            redis, stream=stream, name=group, settings=self.settings, on_lost=self._count_lost
        )
        """Group introspection (lag, consumers, the trimming check) for this runner's group."""
        self._handler = handler
        self._batch_handler = batch_handler
        self._stop = asyncio.Event()
        self._acks: list[EntryId] = []
        self._letters: list[tuple[EntryId, dict[bytes | str, bytes | str]]] = []
        self._drain_at: float | None = 0.0
        self._next_claim = 0.0
        self._retry_failures = 0
        """Re-reads of our pending entries in a row that still failed: the exponent of the next wait."""
        self._backlog = False
        self._group_missing = True  # created (if need be) by the first step, which waits out a Redis outage
        self._unknown_kinds: set[str] = set()
        self._outage_started = 0.0
        self.last_read_ok: float | None = None
        """``time.monotonic()`` of the last read of the stream that Redis answered (an empty answer counts)."""
        self._read_listeners: list[Callable[[], None]] = []

    @classmethod
    def from_config(
        cls,
        redis: RedisClient,
        config: ConsumerConfig,
        *,
        handler: Handler | None = None,
        batch_handler: BatchHandler | None = None,
        skip_through: str | None = None,
    ) -> Runner:
        return cls(
            redis,
            stream=config.stream,
            group=config.group,
            consumer=config.consumer,
            handler=handler,
            batch_handler=batch_handler,
            settings=config.settings,
            skip_through=skip_through,
        )

    # --- control ---------------------------------------------------------------------------------------------

    def stop(self) -> None:
        """Ask :meth:`run` to return: safe from a signal handler, idempotent."""
        if not self._stop.is_set():
            log.info("stop requested: finishing the entry in hand, flushing acknowledgements")
            self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def add_read_listener(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` after every read of the stream that Redis answered, even with nothing new.

        A health check uses it: a consumer whose reads keep succeeding is alive even when the stream is idle, and
        one whose reads fail (Redis away) or stop happening (a wedged handler) is not. The callback runs inside
        the loop, so it must be quick and must not raise.
        """
        self._read_listeners.append(callback)

    def _read_ok(self) -> None:
        self.last_read_ok = time.monotonic()
        for callback in self._read_listeners:
            callback()

    async def wait_stopped(self, seconds: float) -> bool:
        """Wait until :meth:`stop` was called or ``seconds`` passed; True if stopped. For periodic tasks."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop.wait(), seconds)
        return self._stop.is_set()

    async def lag(self) -> int | None:
        """Entries of the stream not yet delivered to the group (see :meth:`ConsumerGroup.lag`)."""
        return await self.consumer_group.lag()

    async def metrics(self) -> dict[str, int | None]:
        """The counters plus the group's lag, for a metrics endpoint."""
        values: dict[str, int | None] = dict(self.counters.as_dict())
        values["lag"] = await self.lag()
        return values

    def _count_lost(self, lost: int) -> None:
        self.counters.lost_to_trimming += lost

    # --- the loop --------------------------------------------------------------------------------------------

    async def when_redis_answers(self, step: Callable[[], Awaitable[T]]) -> T | None:
        """Run a start-up ``step`` (a rebuild, a group check), waiting out a Redis outage with the read loop's
        backoff; None if stopped first. Refused credentials are raised at once."""
        outages = 0
        while not self._stop.is_set():
            try:
                result = await step()
            except REDIS_ERRORS as exc:
                if not redis_unavailable(exc):
                    raise  # refused credentials, a bug: waiting will not fix it
                outages += 1
                await self.wait_stopped(self._outage_delay(outages, exc))
                continue
            self._outage_over(outages)
            return result
        return None

    def _outage_delay(self, outages: int, exc: BaseException) -> float:
        """Backoff for the ``outages``-th failed attempt in a row; the log says it once per outage."""
        delay = exponential(outages, base=0.1, cap=self.settings.retry_delay_max_ms / 1000)
        if outages == 1:
            self._outage_started = time.monotonic()
            log.warning(
                "Redis unavailable (%s); trying again with backoff (up to %.0f s) until it is back",
                exc,
                self.settings.retry_delay_max_ms / 1000,
            )
        else:
            log.debug("Redis still unavailable (%s); trying again in %.1f s", exc, delay)
        return delay

    def _outage_over(self, outages: int) -> None:
        if outages:
            log.info("Redis is back after %.1f s", time.monotonic() - self._outage_started)

    async def run(self) -> None:
        """Consume until :meth:`stop`; returns after acknowledgements are flushed. Redis outages are waited out."""
        check_socket_timeout(self.redis, self.settings.block_ms)
        log.info(
            "consuming %r as %r in group %r (block %d ms, count %d, claim after %d ms idle, dead letters to %r)",
            self.stream,
            self.consumer,
            self.group,
            self.settings.block_ms,
            self.settings.count,
            self.settings.claim_idle_ms,
            self.dead_letter_stream,
        )
        stop_waiter = asyncio.ensure_future(self._stop.wait())
        outages = 0
        try:
            while not self._stop.is_set():
                try:
                    await self._step(stop_waiter)
                    self._outage_over(outages)
                    outages = 0
                except REDIS_ERRORS as exc:
                    if redis_unavailable(exc):
                        outages += 1
                        self._drain_at = 0.0  # a read whose answer was lost left entries pending with us
                        await self.wait_stopped(self._outage_delay(outages, exc))
                    # NOGROUP: the key or group is gone; UNBLOCKED: it went while our read was blocked on it.
                    elif isinstance(exc, ResponseError) and str(exc).startswith(("NOGROUP", "UNBLOCKED")):
                        log.warning(
                            "group %r on %r disappeared (stream deleted?); recreating it", self.group, self.stream
                        )
                        self._group_missing = True
                    else:
                        raise  # refused credentials or ACL, a bug: waiting will not fix it; fail loudly
        finally:
            stop_waiter.cancel()
            await self._shutdown()

    async def _step(self, stop_waiter: asyncio.Future[Any]) -> None:
        await self._flush()
        if self._group_missing:
            await self.consumer_group.ensure()
            self._group_missing = False
            await self._check_trimmed_in_loop()  # before the first read: reading on past a gap hides where it was
        now = time.monotonic()
        if self._drain_at is not None and now >= self._drain_at:
            await self._drain_pending()
            return
        if now >= self._next_claim:
            await self._claim()
            await self._check_trimmed_in_loop()
            self._next_claim = time.monotonic() + self.settings.claim_every_ms / 1000
            return
        entries = await self._read_new(now, stop_waiter)
        if entries and not await self._process(entries, None):
            self._schedule_retry()

    async def _check_trimmed_in_loop(self) -> None:
        """The check, where a reply it does not expect must not stop consuming: it turns itself off instead."""
        if not self.consumer_group.trim_checks:
            return
        try:
            await self.consumer_group.check_trimmed()
        except ResponseError as exc:
            if redis_unavailable(exc):
                raise
            self.consumer_group.stop_trim_checks(exc)

    # --- reading ---------------------------------------------------------------------------------------------

    async def _read_new(self, now: float, stop_waiter: asyncio.Future[Any]) -> list[Entry]:
        count = self.settings.count
        if self._backlog:
            # The last read was full: more is waiting, so this read returns at once and needs no race with stop.
            reply = await self.redis.xreadgroup(self.group, self.consumer, {self.stream: ">"}, count=count)
            self._read_ok()
            entries = read_reply_entries(reply, self.stream)
            self._backlog = len(entries) >= count
            return entries
        wake = self._next_claim if self._drain_at is None else min(self._next_claim, self._drain_at)
        block = max(1, min(self.settings.block_ms, math.ceil((wake - now) * 1000)))
        read = asyncio.ensure_future(
            self.redis.xreadgroup(self.group, self.consumer, {self.stream: ">"}, count=count, block=block)
        )
        try:
            await asyncio.wait((read, stop_waiter), return_when=asyncio.FIRST_COMPLETED)
        finally:
            if not read.done():
                # Entries Redis delivers to a cancelled read stay pending with us: handed back, not lost.
                read.add_done_callback(_retrieve)
                read.cancel()
        if not read.done() or read.cancelled():
            return []
        reply = read.result()
        self._read_ok()
        entries = read_reply_entries(reply, self.stream)
        self._backlog = len(entries) >= count
        return entries

    async def _drain_pending(self) -> None:
        """Hand this consumer's pending entries to the handler again (failed ones, or a previous life's)."""
        cursor: EntryId = "0"
        ok = True
        seen = 0
        while not self._stop.is_set():
            reply = await self.redis.xreadgroup(
                self.group, self.consumer, {self.stream: cursor}, count=self.settings.count
            )
            self._read_ok()
            entries = read_reply_entries(reply, self.stream)
            if not entries:
                break
            cursor = entries[-1][0]
            seen += len(entries)
            ok = await self._process(entries, await self._delivery_counts(entries)) and ok
        if seen:
            log.info("re-read %d entries pending with %r", seen, self.consumer)
        self._drain_at = None
        if ok:
            self._retry_failures = 0
        else:  # still failing: next time, wait twice as long
            self._schedule_retry()
            self._retry_failures += 1

    def _schedule_retry(self) -> None:
        if self._drain_at is None:
            delay = exponential(
                self._retry_failures,
                base=self.settings.retry_delay_ms / 1000,
                cap=self.settings.retry_delay_max_ms / 1000,
            )
            self._drain_at = time.monotonic() + delay
            log.info("failed entries stay pending; handing them over again in %.1f s", delay)

    # --- claiming --------------------------------------------------------------------------------------------

    async def _claim(self) -> None:
        """Take over entries idle past ``claim_idle_ms`` from any consumer of the group, ours included."""
        cursor: EntryId = "0-0"
        while not self._stop.is_set():
            reply = await self.redis.xautoclaim(
                self.stream,
                self.group,
                self.consumer,
                min_idle_time=self.settings.claim_idle_ms,
                start_id=cursor,
                count=self.settings.count,
            )
            self._read_ok()
            next_cursor, raw = reply[0], reply[1]
            deleted: list[EntryId] = list(reply[2]) if len(reply) > 2 else []
            if deleted:
                self._acks.extend(deleted)
                self.counters.deleted += len(deleted)
                log.warning(
                    "%d pending entries were trimmed from the stream before they were acknowledged; "
                    "acknowledged them (first %s)",
                    len(deleted),
                    id_text(deleted[0]),
                )
            entries: list[Entry] = [(entry_id, fields or {}) for entry_id, fields in raw if entry_id is not None]
            if entries:
                self.counters.claimed += len(entries)
                log.info(
                    "claimed %d entries idle for over %d ms (first %s)",
                    len(entries),
                    self.settings.claim_idle_ms,
                    id_text(entries[0][0]),
                )
                if not await self._process(entries, await self._delivery_counts(entries)):
                    self._schedule_retry()
            else:
                await self._flush()
            if id_text(next_cursor) == "0-0":
                break
            cursor = next_cursor

    async def _delivery_counts(self, entries: Sequence[Entry]) -> dict[str, int]:
        """How often each entry was delivered, this delivery included (XPENDING, one pipelined round trip)."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for entry_id, _ in entries:
                pipe.xpending_range(
                    self.stream, self.group, min=entry_id, max=entry_id, count=1, consumername=self.consumer
                )
            replies = await pipe.execute()
        counts: dict[str, int] = {}
        for rows in replies:
            for row in rows:
                counts[id_text(row["message_id"])] = int(row["times_delivered"])
        return counts

    # --- deciding, handling, acknowledging and dead-lettering ------------------------------------------------

    async def _process(self, entries: Sequence[Entry], deliveries: dict[str, int] | None) -> bool:
        """Do what :func:`decide` says for each entry, handle the events, flush; False if a handler call failed.

        ``deliveries`` is None for first deliveries (read with ``>``), which need no delivery-count check.
        """
        events: list[Event] = []
        ids: list[EntryId] = []
        for entry_id, fields in entries:
            delivered = None if deliveries is None else deliveries.get(id_text(entry_id), 1)
            decision = decide(
                entry_id,
                fields,
                delivered=delivered,
                max_deliveries=self.settings.max_deliveries,
                skip_through=self.skip_through,
            )
            if isinstance(decision, Handle | DeadLetter | UnknownType) and decision.redelivered:
                self.counters.retried += 1
            match decision:
                case Handle(event=event):
                    events.append(event)
                    ids.append(entry_id)
                case DeadLetter(reason=reason):
                    self._dead_letter(entry_id, fields, reason)
                case UnknownType(kind=kind):
                    self._acks.append(entry_id)
                    self.counters.unknown_type += 1
                    self._log_unknown(kind, entry_id)
                case Skipped():
                    self._acks.append(entry_id)
                    self.counters.skipped += 1
                case Trimmed():
                    self._acks.append(entry_id)
                    self.counters.deleted += 1
                    log.warning("entry %s was trimmed from the stream while pending; acknowledged", id_text(entry_id))
                case _:
                    assert_never(decision)
        ok = await self._handle(events, ids) if events else True
        await self._flush()
        return ok

    async def _handle(self, events: list[Event], ids: list[EntryId]) -> bool:
        if self._batch_handler is not None:
            try:
                await self._batch_handler(events)
            except Exception:
                self.counters.failed += len(events)
                log.exception(
                    "batch handler failed on %d entries (%s to %s); they stay pending",
                    len(events),
                    id_text(ids[0]),
                    id_text(ids[-1]),
                )
                return False
            self._acks.extend(ids)
            self.counters.processed += len(events)
            return True
        handler = self._handler
        assert handler is not None
        ok = True
        for done, (event, entry_id) in enumerate(zip(events, ids, strict=True)):
            if self._stop.is_set():
                log.info("stopping: handing back %d unhandled entries; they stay pending", len(events) - done)
                break
            try:
                await handler(event)
            except Exception as exc:
                ok = False
                self.counters.failed += 1
                if redis_unavailable(exc):  # an outage (a failover, a restart) met inside the handler: no bug
                    log.warning(
                        "handler could not reach Redis on entry %s (key %s): %s; it stays pending",
                        id_text(entry_id),
                        event.key,
                        exc,
                    )
                else:
                    log.exception("handler failed on entry %s (key %s); it stays pending", id_text(entry_id), event.key)
                continue
            self._acks.append(entry_id)
            self.counters.processed += 1
        return ok

    def _dead_letter(self, entry_id: EntryId, fields: Any, reason: str) -> None:
        letter = dead_letter_fields(
            fields, reason=reason, original_id=entry_id, group=self.group, consumer=self.consumer
        )
        self._letters.append((entry_id, letter))
        self.counters.dead_lettered += 1
        log.warning("dead-lettering entry %s to %r: %s", id_text(entry_id), self.dead_letter_stream, reason)

    def _log_unknown(self, kind: str, entry_id: EntryId) -> None:
        if kind in self._unknown_kinds or len(self._unknown_kinds) >= _UNKNOWN_KINDS_LOGGED:
            log.debug("acknowledged entry %s of unknown event type %r", id_text(entry_id), kind)
            return
        self._unknown_kinds.add(kind)
        log.warning(
            "entry %s has event type %r, which this reader does not know (a newer producer?); acknowledging and "
            "counting such entries as unknown_type",
            id_text(entry_id),
            kind,
        )

    async def _flush(self) -> None:
        """Send the acknowledgements (and dead letters, atomically with theirs); kept for the next try on failure."""
        if not self._acks and not self._letters:
            return
        acks, letters = self._acks, self._letters
        self._acks, self._letters = [], []
        try:
            if letters:
                async with self.redis.pipeline(transaction=True) as pipe:
                    for _, letter in letters:
                        pipe.xadd(self.dead_letter_stream, letter)  # type: ignore[arg-type]
                    pipe.xack(self.stream, self.group, *acks, *(entry_id for entry_id, _ in letters))
                    await pipe.execute()
            else:
                await self.redis.xack(self.stream, self.group, *acks)
        except BaseException:
            self._acks = acks + self._acks
            self._letters = letters + self._letters
            raise

    # --- stopping --------------------------------------------------------------------------------------------

    async def _shutdown(self) -> None:
        for attempt in range(3):
            try:
                await self._flush()
                break
            except RedisError as exc:
                log.warning("could not flush acknowledgements (%s); attempt %d of 3", exc, attempt + 1)
                await asyncio.sleep(0.2 * (attempt + 1))
        else:
            log.error(
                "%d handled entries could not be acknowledged; they stay pending and will be handled again",
                len(self._acks) + len(self._letters),
            )
        try:
            pending = await self._own_pending()
            if pending == 0:
                await self.redis.xgroup_delconsumer(self.stream, self.group, self.consumer)
            else:
                log.info(
                    "%d entries stay pending with %r: a live consumer claims them after %d ms idle, or this name "
                    "re-reads them on its next start",
                    pending,
                    self.consumer,
                    self.settings.claim_idle_ms,
                )
        except RedisError as exc:
            log.warning("could not check what stays pending with %r: %s", self.consumer, exc)
        log.info("stopped %r: %s", self.consumer, self.counters.as_dict())

    async def _own_pending(self) -> int:
        summary = await self.redis.xpending(self.stream, self.group)
        for row in summary.get("consumers") or ():
            if as_text(row["name"]) == self.consumer:
                return int(row["pending"])
        return 0


def _retrieve(task: asyncio.Future[Any]) -> None:
    """Collect a cancelled read's outcome so asyncio does not report it as never retrieved."""
    if not task.cancelled():
        with contextlib.suppress(Exception):
            task.result()
