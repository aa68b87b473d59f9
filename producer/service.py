"""The producer process: poll a source, detect, publish through the outbox, sleep, repeat.

A poll never waits on Redis and Redis never waits on a poll: events go into the outbox and the outbox is flushed
after every poll. If Redis is away, the loop says so once, keeps polling until the outbox is full, and publishes
everything, in order, when Redis answers again.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import redis.exceptions

from plumbing.observability import Progress
from plumbing.recent_keys import RecentKeys
from plumbing.redis_connect import RedisClient, connect_redis, drop_connections
from plumbing.redis_errors import CREDENTIALS_REFUSED, REDIS_ERRORS, redis_unavailable
from plumbing.text import printable
from producer.adaptive import build_adaptive
from producer.client import HyperliquidClient, RetryPolicy
from producer.completion import COMPLETABLE_SOURCES, Completer
from producer.config import ProducerConfig
from producer.coverage_watch import build_coverage
from producer.errors import EvictionRisk, ProducerError
from producer.metrics import ProducerMetrics
from producer.outbox import Outbox
from producer.publisher import NotReplicated, eviction_risk
from producer.ratelimit import WeightBudget
from producer.sharded_publisher import ShardedPublisher
from producer.sources import build_source
from schemas import Event, LiquidationEvent, event_type

log = logging.getLogger("producer")

_NO_PERMISSION = "can't run this command"
"""How Redis words an ACL denial of a command a script calls (it arrives as a plain script error)."""


REPLICA_CHECK_S = 5.0
"""How often ``--wait-replicas auto`` asks whether the stream's master has a replica, until it has one."""


class RedisAccessDenied(ProducerError):
    """Redis answered but refused our credentials or commands: waiting will not fix it."""


@dataclass
class PollSummary:
    items: int = 0
    found: int = 0
    published: int = 0
    duplicates: int = 0
    errors: int = 0
    skipped: int = 0
    unreachable: bool = False
    pending: int = 0
    seconds: float = 0.0
    more: bool = False
    finished: bool = False


_ITEMS = {"fills": "fills", "trades": "trades", "node": "blocks", "hosted": "fills", "ws": "fills"}


def format_event(event: Event) -> str:
    """One log line per published liquidation, readable by a person at a glance."""
    # Coins, users and hashes are the exchange's text: escaped, so none of it can start a forged log record.
    coin, tx = printable(event.coin), printable(event.tx_hash)
    if isinstance(event, LiquidationEvent):
        return (
            f"liquidation {coin} {event.liquidation_side} {event.size} @ {event.price} "
            f"= ${event.value_usd:,.2f} user {printable(event.liquidated_user)} tx {tx} "
            f"({event.method}, {event.fills} fills)"
        )
    return (
        f"adl {coin} {event.position_side} {event.size} @ {event.price} = ${event.value_usd:,.2f} "
        f"user {printable(event.deleveraged_user)} (for {printable(event.liquidated_user)}) tx {tx}"
    )


def count_types(events: Iterable[Event]) -> Counter[str]:
    """Events per type: a metric's labelled child is looked up once per type, not once per event of a burst."""
    return Counter(event_type(event) for event in events)


def once_failure(summary: PollSummary, *, redis_reachable: bool) -> str | None:
    """Why a ``--once`` run failed though nothing is left unpublished, or None when it did its job."""
    if summary.unreachable:
        return (
            f"the exchange could not be read: all {summary.errors} reads of the poll failed (see the warnings "
            "above); exiting 1, since an outage is not a quiet hour"
        )
    if not redis_reachable:
        return "Redis was unreachable: the poll's positions were not recorded; exiting 1"
    return None


class Producer:
    def __init__(
        self,
        config: ProducerConfig,
        *,
        redis_client: RedisClient | None = None,
        client: HyperliquidClient | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.clock = clock
        self.budget = WeightBudget(config.weight_per_minute)
        self.client = client or HyperliquidClient(
            config.api_url,
            timeout=config.http_timeout,
            retry=RetryPolicy(attempts=config.http_attempts),
            budget=self.budget,
        )
        self.redis = redis_client or connect_redis(
            config, socket_timeout=5, socket_connect_timeout=5, health_check_interval=30
        )
        self.publisher = ShardedPublisher(
            self.redis,
            config.stream,
            shards=config.shards,
            maxlen=config.maxlen,
            dedup_ttl=config.dedup_ttl,
            wait_replicas=config.wait_replicas or 0,
            wait_timeout_ms=config.wait_timeout_ms,
        )
        self.source = build_source(config, self.client)
        self.outbox = Outbox(config.max_pending)
        self.recent = RecentKeys()
        self.restored = False
        self.redis_down_since: float | None = None
        self._replicas_checked_at: float | None = None
        self._redis_answered_this_poll = False
        """Whether this poll already learnt if Redis is up (a restore, a publish, or a failure of either)."""
        self.polls = 0
        self.metrics = ProducerMetrics(self.client.stats)
        self.coverage = build_coverage(config, self.client, self.metrics)
        """The live coverage measure, for the sources that watch addresses (None when off or not applicable)."""
        self.adaptive = build_adaptive(config, self.source, self.coverage, self.metrics)
        """The watchlist that follows the makers (None unless turned on)."""
        self.completer = Completer(self.client) if config.complete and config.source in COMPLETABLE_SOURCES else None
        self._left_partial_counted = 0
        """Complete figures for the partial liquidations of a watchlist (None when off or not applicable)."""
        self.progress = Progress(config.health_stale_after)
        self._stop = asyncio.Event()

    def stop(self) -> None:
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    async def close(self) -> None:
        self.source.close()
        if self.coverage is not None:
            self.coverage.close()
        if self.adaptive is not None:
            self.adaptive.close()
        await self.client.close()
        await self.redis.aclose()

    async def poll_once(self) -> PollSummary:
        """One poll of the source and one flush of the outbox."""
        started = time.monotonic()
        summary = PollSummary()
        self._redis_answered_this_poll = False
        await self._restore()
        if self.coverage is not None:
            self.coverage.start()  # here, not at construction: it needs the running loop
        if self.adaptive is not None:
            self.adaptive.start()
        if self.outbox.full:
            log.warning("outbox full (%d events waiting for Redis): not polling until it drains", len(self.outbox))
        else:
            result = await self.source.poll(int(self.clock() * 1000))
            fresh = self.recent.fresh(list(result.events))
            self.outbox.put(fresh, result.checkpoint, catching_up=result.catching_up)
            self.progress.problem = result.problem
            summary.items, summary.found, summary.errors = result.items, len(fresh), len(result.errors)
            summary.skipped, summary.unreachable = result.skipped, result.unreachable
            summary.more, summary.finished = result.more, result.finished
            self.metrics.polls.labels(self.source.name).inc()
            self.metrics.poll_errors.inc(len(result.errors))
            self.metrics.skipped.inc(result.skipped)
            self.metrics.gap_seconds.inc(result.gap_seconds)
            for kind, count in count_types(fresh).items():
                self.metrics.found.labels(kind).inc(count)
            if self.completer is not None:
                self.completer.offer(fresh)
                self._count_left_partial()  # now: a stop during the flush or the reads below would lose the count
        # The poll's events first: they are real time, the completions' REST reads are not.
        published, duplicates = await self.flush()
        if self.completer is not None:
            if not self.outbox.full:
                flushed = self.outbox.peek() is None
                completed = await self.completer.run(int(self.clock() * 1000))
                # Behind the partial ones, whose key they share: the publish script lets a complete one through once.
                events: list[Event] = [*completed]
                self.outbox.put(events, {})
                self.metrics.completed.inc(len(completed))
                if completed and flushed:  # else Redis failed just now: they wait in the outbox for the next poll
                    more, again = await self.flush()
                    published, duplicates = published + more, duplicates + again
            self._count_left_partial()
        if not self._redis_answered_this_poll:
            await self._check_redis()  # a quiet poll published nothing: ask Redis anyway, so redis_up is current
        summary.published, summary.duplicates = published, duplicates
        summary.pending = len(self.outbox)
        self.metrics.pending.set(summary.pending)
        if summary.pending == 0 and not (summary.errors and summary.items == 0):
            self.progress.succeeded()
        summary.seconds = time.monotonic() - started
        self.polls += 1
        log.info(
            "poll %d (%s): %d %s read, %d events found, %d published, %d already published, "
            "%d errors, %d waiting for Redis, %.1fs%s",
            self.polls,
            self.source.name,
            summary.items,
            _ITEMS.get(self.source.name, "items"),
            summary.found,
            summary.published,
            summary.duplicates,
            summary.errors,
            summary.pending,
            summary.seconds,
            f", {summary.skipped} skipped (stamped in the future)" if summary.skipped else "",
        )
        return summary

    async def _restore(self) -> None:
        if self.restored:
            try:
                await self._choose_replicas()
            except REDIS_ERRORS as exc:
                self._redis_failed(exc)
            return
        try:
            await self._check_eviction()
            checkpoint = await self.publisher.load_checkpoint()
            await self._choose_replicas()
        except REDIS_ERRORS as exc:
            self._redis_failed(exc)
            return
        self._redis_up()
        self.source.restore(checkpoint)
        self.restored = True
        if checkpoint:
            log.info("resuming from %d checkpointed positions in %s", len(checkpoint), self.publisher.checkpoint_key)

    async def _choose_replicas(self) -> None:
        """``--wait-replicas auto``: wait for one replica after each publish once the stream's master has been seen
        with one. Asked at start and then every :data:`REPLICA_CHECK_S` until a replica is seen (one that was still
        syncing at start counts as soon as it is there), and never turned off again: a master that lost its replica
        is exactly the one whose writes a failover would lose."""
        if self.config.wait_replicas is not None or self.publisher.wait_replicas:
            return
        now = time.monotonic()
        if self._replicas_checked_at is not None and now - self._replicas_checked_at < REPLICA_CHECK_S:
            return
        self._replicas_checked_at = now
        try:
            replicas = await self.publisher.replica_count()
        except redis.exceptions.ResponseError as exc:  # INFO denied by an ACL
            if isinstance(exc, redis.exceptions.ReadOnlyError):
                raise
            log.warning(
                "could not ask Redis how many replicas the stream's master has (%s): publishing without waiting for "
                "replicas (allow INFO, or set --wait-replicas / REDIS_WAIT_REPLICAS)",
                exc,
            )
            self._replicas_checked_at = math.inf  # asked once: the ACL will not change its mind
            return
        self.publisher.wait_replicas = 1 if replicas else 0
        if replicas:
            log.info(
                "the stream's master has %d replica(s): each publish waits (up to %d ms) until one has it",
                replicas,
                self.config.wait_timeout_ms,
            )

    async def _check_eviction(self) -> None:
        """Refuse (or, if allowed, warn loudly about) a Redis that may evict our keys; see eviction_risk."""
        try:
            policy, maxmemory = await self.publisher.eviction_settings()
        except redis.exceptions.ResponseError as exc:  # CONFIG denied by an ACL, or renamed away
            log.warning(
                "could not check Redis's maxmemory-policy (%s): make sure it is noeviction, or evicted dedup keys "
                "will let an event be published twice",
                exc,
            )
            return
        risk = eviction_risk(policy, maxmemory)
        if risk is None:
            return
        what = (
            f"Redis at {self._redis_where()} has maxmemory-policy {policy} (maxmemory {maxmemory}), which evicts {risk}"
        )
        if not self.config.allow_eviction:
            raise EvictionRisk(
                f"{what}: set maxmemory-policy noeviction in Redis, or --allow-eviction / REDIS_ALLOW_EVICTION=1 "
                "to run anyway"
            )
        log.warning(
            "%s; running anyway (--allow-eviction / REDIS_ALLOW_EVICTION): exactly once is not guaranteed", what
        )

    def _count_left_partial(self) -> None:
        """Add to the metric what the completer left partial since the last count: a cascade's overflow of its
        queue (at the offer) and the reads that did not show the liquidation."""
        if self.completer is not None:
            self.metrics.left_partial.inc(self.completer.left_partial - self._left_partial_counted)
            self._left_partial_counted = self.completer.left_partial

    async def flush(self) -> tuple[int, int]:
        """Publish what the outbox holds, oldest first; stop at the first Redis failure and keep the rest."""
        published = duplicates = 0
        while (batch := self.outbox.peek()) is not None:
            started = time.perf_counter()
            try:
                result = await self.publisher.publish(batch.events, batch.checkpoint)
            except NotReplicated as exc:
                # Held, and published again: the dedup keys skip what the master kept, re-add what a failover lost.
                self.metrics.unreplicated.inc()
                self._redis_down(exc)
                await drop_connections(self.redis)  # the next attempt asks the sentinels (or the cluster) again
                break
            except REDIS_ERRORS as exc:
                self._redis_failed(exc)
                break
            self.metrics.publish_seconds.observe(time.perf_counter() - started)
            self._redis_up()
            self.outbox.pop()
            level = logging.DEBUG if batch.catching_up else logging.INFO
            if log.isEnabledFor(level):  # a burst's lines cost more to format than to publish: not when unseen
                for event, entry_id in result.published:
                    log.log(level, "%s -> %s", format_event(event), entry_id)
            for kind, count in count_types(event for event, _ in result.published).items():
                self.metrics.published.labels(kind).inc(count)
            self.metrics.duplicates.inc(len(result.duplicates))
            published += len(result.published)
            duplicates += len(result.duplicates)
        return published, duplicates

    async def _check_redis(self) -> None:
        try:
            await self.redis.ping()
        except REDIS_ERRORS as exc:
            self._redis_failed(exc)
        else:
            self._redis_up()

    def _redis_failed(self, exc: Exception) -> None:
        """What a failed Redis call means: refused credentials, or an ACL denying a command (inside the publish
        script too), end the process; so does a cluster node given as REDIS_URL (every key of another slot is
        MOVED for good); an outage or a Redis refusing writes is held and retried; anything else is a bug and
        raised as it is."""
        if isinstance(exc, CREDENTIALS_REFUSED) or _NO_PERMISSION in str(exc):
            raise RedisAccessDenied(f"Redis refused us at {self._redis_where()}: {exc}") from exc
        if isinstance(exc, redis.exceptions.AskError) and self.config.redis_kind == "server":
            raise RedisAccessDenied(
                f"Redis at {self._redis_where()} is a Redis Cluster node that does not serve the stream ({exc}): "
                "give the cluster's nodes as --redis-cluster-nodes / REDIS_CLUSTER_NODES instead of --redis-url"
            ) from exc
        if not redis_unavailable(exc):
            raise exc
        self._redis_down(exc)

    def _redis_up(self) -> None:
        self._redis_answered_this_poll = True
        self.metrics.redis_up.set(1)
        if self.redis_down_since is not None:
            log.info("Redis is back after %.0fs", time.monotonic() - self.redis_down_since)
            self.redis_down_since = None

    def _redis_down(self, exc: Exception) -> None:
        self._redis_answered_this_poll = True  # it did not answer, which is an answer to "is it up?"
        self.metrics.redis_up.set(0)
        if self.redis_down_since is None:
            self.redis_down_since = time.monotonic()
            log.error(
                "Redis unreachable or refusing writes at %s (%s); holding events in memory (up to %d) until it is back",
                self._redis_where(),
                exc,
                self.outbox.max_events,
            )

    def _redis_where(self) -> str:
        return self.config.redis_where()

    def _interval(self, weight_used: float) -> float:
        """The configured interval, or longer when the last poll's weight would break the budget."""
        needed = self.budget.seconds_for(weight_used)
        if needed > self.config.poll_interval:
            log.warning(
                "stretching the poll interval from %.1fs to %.1fs: a poll costs %.0f request weight and the budget "
                "is %.0f per minute (--weight-per-minute); watch fewer addresses or coins to poll faster",
                self.config.poll_interval,
                needed,
                weight_used,
                self.config.weight_per_minute,
            )
            return needed
        return self.config.poll_interval

    async def run(self) -> int:
        """Poll until stopped. Returns the process exit code."""
        try:
            summary = PollSummary()
            while not self.stopping:
                spent_before = self._weight_spent()
                task = asyncio.ensure_future(self.poll_once())
                stopper = asyncio.ensure_future(self._stop.wait())
                done, _ = await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
                if task not in done:
                    task.cancel()
                    await asyncio.gather(task, return_exceptions=True)
                    break
                stopper.cancel()
                summary = task.result()
                if summary.finished:
                    log.info("the source has nothing more to read")
                    break
                if summary.more:
                    continue  # a backlog: read on without waiting
                if self.config.once:
                    break
                weight = self._weight_spent() - spent_before
                delay = max(0.0, self._interval(weight) - summary.seconds)
                await self._wait_for_source(delay)
            code = await self._shutdown()
            if code == 0 and self.config.once:
                code = self._once_verdict(summary)
            return code
        finally:
            await self.close()

    async def _wait_for_source(self, delay: float) -> None:
        """Until the source may have more (at most ``delay``), or until stopped, whichever is first."""
        waiting = asyncio.ensure_future(self.source.wait(delay))
        stopper = asyncio.ensure_future(self._stop.wait())
        done, pending = await asyncio.wait({waiting, stopper}, return_when=asyncio.FIRST_COMPLETED)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        if waiting in done:
            waiting.result()  # a source that fails while waiting (a refused key) fails the loop, as a poll would

    def _weight_spent(self) -> float:
        """Request weight spent so far, as the budget counted it; only requests to the exchange spend any."""
        budget = self.client.budget
        return budget.spent if budget is not None else 0.0

    def _once_verdict(self, summary: PollSummary) -> int:
        """The exit code of ``--once`` after a clean shutdown: a cron job must tell an outage from a quiet hour."""
        problem = once_failure(summary, redis_reachable=self.redis_down_since is None)
        if problem is None:
            return 0
        log.error("%s", problem)
        return 1

    async def _shutdown(self) -> int:
        if self.completer is not None and (completed := self.completer.take()):
            # Completed by a poll the stop cut short: published, or the partial events stay partial for good.
            self.outbox.put(list[Event](completed), {})
            self.metrics.completed.inc(len(completed))
        if len(self.outbox):
            await self.flush()
        if len(self.outbox):
            log.error(
                "exiting with %d events not published: Redis is unreachable. The fills source re-reads them on "
                "the next start (its watermarks did not advance); the trades source may not see them again.",
                len(self.outbox),
            )
            return 1
        log.info("stopped after %d polls", self.polls)
        return 0
