"""The alerter's handler: which events become alerts, and the timer that sends cooldown summaries.

For each event: liquidations only (other event types are counted and passed over), at or above the coin's
threshold; skip the sinks that already sent it (a redelivery); apply the coin's cooldown (first delivery only:
a retry of an admitted alert is not held back); send to each remaining sink once (see
:mod:`consumers.alerter.delivery`, which waits out a sink that is down). If a sink rejects the alert, or stays down
for longer than the outage limit, the handler raises, so the entry stays pending and is delivered again later: the
sinks that succeeded are not repeated. A held-back event is recorded in Redis (:mod:`consumers.alerter.held`)
before the handler returns, so its summary survives a crash.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

from redis.exceptions import RedisError

from consumers.alerter.config import AlerterConfig, Thresholds
from consumers.alerter.cooldown import Cooldown, HeldBack
from consumers.alerter.delivery import Delivery
from consumers.alerter.format import EXPLORER_TX_URL, format_alert, format_summary
from consumers.alerter.held import HeldStore
from consumers.alerter.sinks import Sink
from consumers.errors import AlertInFlight, AlertNotDelivered
from consumers.sharded_runner import AnyRunner
from plumbing.recent_keys import RecentKeys
from plumbing.redis_connect import RedisClient
from plumbing.stream_keys import stream_key
from plumbing.text import printable
from schemas import Event, LiquidationEvent

log = logging.getLogger("consumers.alerter")

_ADMITTED_MEMORY = 10_000


@dataclass
class AlerterCounters:
    alerted: int = 0
    """Events whose alert went out to every sink."""
    below_threshold: int = 0
    held_back: int = 0
    """Events the cooldown kept back; they appear in a summary."""
    already_sent: int = 0
    """Redeliveries of events every sink had already sent."""
    summaries: int = 0
    other_types: int = 0
    """Events that are not liquidations (ADL, ...): not alerted on."""

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


class Alerter:
    def __init__(
        self,
        *,
        sinks: Sequence[Sink],
        delivery: Delivery,
        thresholds: Thresholds,
        cooldown: Cooldown,
        held: HeldStore | None = None,
        explorer_url: str = EXPLORER_TX_URL,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """``held`` keeps the cooldown's held-back alerts in Redis (None: in memory only, lost with the process).
        ``clock`` is wall time, so that held-back times read back after a restart mean the same."""
        if not sinks:
            raise ValueError("the alerter needs at least one sink")
        self.sinks = list(sinks)
        self.delivery = delivery
        self.thresholds = thresholds
        self.cooldown = cooldown
        self.held = held
        self.explorer_url = explorer_url
        self.counters = AlerterCounters()
        self.sent_by_sink: Counter[str] = Counter()
        """Alerts (not summaries) each sink took, for metrics; a sink that already had one is not counted again."""
        self._clock = clock
        self._admitted = RecentKeys(_ADMITTED_MEMORY)

    @classmethod
    def from_config(cls, config: AlerterConfig, redis: RedisClient, sinks: Sequence[Sink]) -> Alerter:
        c = config.consumer
        delivery = Delivery(
            redis,
            prefix=stream_key(c.stream, "alerted"),
            owner=c.consumer,
            attempts=config.sink_attempts,
            backoff_s=config.sink_backoff_ms / 1000,
            backoff_max_s=config.backoff_max_s,
            outage_max_s=config.sink_outage_s,
            sent_ttl_s=config.sent_ttl_s,
            claim_ttl_s=config.claim_ttl_s,
        )
        return cls(
            sinks=sinks,
            delivery=delivery,
            thresholds=config.thresholds,
            cooldown=Cooldown(config.cooldown_s, config.burst),
            held=HeldStore(redis, stream_key(c.stream, f"held:{c.group}:{c.consumer}")),
            explorer_url=config.explorer_url,
        )

    def stop(self) -> None:
        """At shutdown: stop waiting for sinks that are down (what is unsent stays pending or held in Redis)."""
        self.delivery.stop()

    async def restore_held(self) -> int:
        """Hold again what a previous run of this consumer name held back and had not summarised yet."""
        if self.held is None:
            return 0
        alerts = await self.held.load()
        for key, alert in alerts:
            self.cooldown.hold(alert.coin, alert.value_usd, alert.at, key)
        if alerts:
            log.info("restored %d held-back alerts of a previous run; their summary follows", len(alerts))
        return len(alerts)

    async def handle(self, event: Event) -> None:
        """The runner's handler: raises :class:`AlertNotDelivered` / :class:`AlertInFlight` to leave it pending."""
        if not isinstance(event, LiquidationEvent):
            self.counters.other_types += 1
            return
        if event.value_usd < self.thresholds.for_coin(event.coin):
            self.counters.below_threshold += 1
            return
        key = event.key
        if self.cooldown.holds(key):  # a redelivery: record it again, in case the first write was lost
            await self._record_held(event)
            return
        unsent = await self.delivery.unsent(key, self.sinks)
        if not unsent:
            self.counters.already_sent += 1
            log.info("alert for %s was sent already; not repeating it", printable(key, limit=200))
            return
        await self.send_due_summaries()
        if key not in self._admitted and len(unsent) == len(self.sinks):
            if not self.cooldown.admit(event.coin, event.value_usd, self._clock(), key):
                self.counters.held_back += 1
                await self._record_held(event)
                return
            self._remember(key)
        message = format_alert(event, self.explorer_url)
        results = await asyncio.gather(
            *(self.delivery.send_once(key, sink, message) for sink in unsent), return_exceptions=True
        )
        for sink, result in zip(unsent, results, strict=True):
            if result is True:
                self.sent_by_sink[sink.name] += 1
        failures = [r for r in results if isinstance(r, BaseException)]
        for failure in failures:
            if not isinstance(failure, AlertNotDelivered | AlertInFlight):
                raise failure
        if failures:
            raise AlertNotDelivered(
                f"alert for {key} not delivered: "
                + "; ".join(str(f) for f in failures)
                + "; the entry stays pending, sinks that succeeded will not repeat it"
            )
        self.counters.alerted += 1
        log.info(
            "alerted %s %s %s to %s",
            printable(event.coin),
            event.liquidation_side,
            printable(key, limit=200),
            ", ".join(s.name for s in unsent),
        )

    async def send_due_summaries(self, *, final: bool = False) -> None:
        """Send one summary per coin whose held-back alerts waited a whole window (all of them if ``final``)."""
        now = self._clock()
        for held in self.cooldown.drain() if final else self.cooldown.due(now):
            await self._send_summary(held, now)

    async def _record_held(self, event: LiquidationEvent) -> None:
        """Before the entry is acknowledged: the held-back alert is on record in Redis (see :mod:`.held`)."""
        if self.held is not None:
            await self.held.add(event.key, event.coin, event.value_usd, self._clock())

    async def _send_summary(self, held: HeldBack, now: float) -> None:
        """Send, then forget what it summarised; if a sink failed, hold it all again for the next try."""
        message = format_summary(held.coin, held.count, held.value_usd, held.largest_usd, held.seconds(now))
        results = await asyncio.gather(
            *(self.delivery.send(sink, message) for sink in self.sinks), return_exceptions=True
        )
        failed = [r for r in results if isinstance(r, AlertNotDelivered)]
        for result in results:
            if isinstance(result, BaseException) and not isinstance(result, AlertNotDelivered):
                self.cooldown.restore(held)
                raise result
        if failed:
            self.cooldown.restore(held)
            log.error(
                "summary of %d held-back %s liquidations not delivered (%s); kept for the next try%s",
                held.count,
                printable(held.coin),
                "; ".join(str(f) for f in failed),
                " (in Redis, for the next start)" if self.held is not None else "",
            )
            return
        self.counters.summaries += 1
        if self.held is not None:
            try:
                await self.held.forget(held)
            except RedisError as exc:
                log.warning("summary sent, but its held-back alerts could not be forgotten (%s): it may repeat", exc)

    async def run_summaries(self, runner: AnyRunner, interval_s: float = 1.0) -> None:
        """Send due summaries every ``interval_s`` until the runner stops; then whatever is still held back."""
        while not await runner.wait_stopped(interval_s):
            try:
                await self.send_due_summaries()
            except Exception:
                log.exception("sending cooldown summaries failed; trying again in %.0f s", interval_s)
        try:
            await self.send_due_summaries(final=True)
        except RedisError as exc:
            log.error("the last summaries could not be sent (%s); what is held back stays in Redis", exc)

    def _remember(self, key: str) -> None:
        self._admitted.add(key)
