"""Complete figures for liquidations seen only through watched makers' legs.

A ``ws`` or ``fills`` producer sees a market liquidation through the makers it watches, so its event sums only
their legs (``complete: false``). The liquidated user's own fills hold every leg: one ``userFillsByTime`` of that
user at the event's millisecond gives the exact liquidation, as a node would count it. The partial event is
published first (it is real time; the read is not), and the complete one follows under the same key: the publish
script lets a complete event after a partial one through, once (see the stream contract in the README).

The reads spend the exchange's request weight, which the source needs first: a read is only sent while the budget
(its bucket and its rolling minute, see :mod:`producer.ratelimit`) has room beyond :data:`RESERVE` without
waiting. Under a cascade the partial events queue; beyond ``max_waiting`` they stay partial, counted, rather than
fall behind.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Iterable

from producer.client import FILLS_ANSWER_WEIGHT, HyperliquidClient
from producer.detector import detect_from_fills
from producer.errors import ExchangeError
from producer.ratelimit import BASE_WEIGHT
from schemas import Event, LiquidationEvent

log = logging.getLogger(__name__)

RESERVE = 3 * BASE_WEIGHT
"""Weight left in the budget for the source's own next reads; a completion waits rather than take it."""
COMPLETABLE_SOURCES = frozenset({"ws", "fills"})


def completed_from(event: LiquidationEvent, own: Iterable[Event]) -> LiquidationEvent | None:
    """The complete version of ``event`` among the events detected from the liquidated user's own fills."""
    for candidate in own:
        if isinstance(candidate, LiquidationEvent) and candidate.key == event.key and candidate.complete:
            return candidate
    return None


class Completer:
    """Partial liquidations waiting for the liquidated user's read, oldest first."""

    def __init__(self, client: HyperliquidClient, *, max_waiting: int = 10_000) -> None:
        self.client = client
        self.max_waiting = max_waiting
        self.waiting: deque[LiquidationEvent] = deque()
        self.ready: list[LiquidationEvent] = []
        """Completed, not yet taken for publishing: they outlive a stop during :meth:`run`."""
        self.completed = 0
        self.left_partial = 0
        """Partial events never completed: the queue was full, or the user's fills did not show the liquidation."""

    def offer(self, events: Iterable[Event]) -> None:
        for event in events:
            if isinstance(event, LiquidationEvent) and not event.complete and event.source in COMPLETABLE_SOURCES:
                if len(self.waiting) >= self.max_waiting:
                    self.left_partial += 1
                else:
                    self.waiting.append(event)

    def _has_room(self) -> bool:
        budget = self.client.budget
        # The bucket and the minute both: a read the minute has no room for would hold the poll until it has.
        return budget is None or budget.room(headroom=FILLS_ANSWER_WEIGHT) >= BASE_WEIGHT + RESERVE

    async def run(self, now_ms: int) -> list[LiquidationEvent]:
        """Complete what the budget allows now; the complete events, to publish after the partial ones. A stop
        (cancellation) mid-read puts the event back and keeps what was completed in :attr:`ready`."""
        while self.waiting and self._has_room():
            event = self.waiting.popleft()
            try:
                page = await self.client.user_fills_by_time(event.liquidated_user, event.timestamp, event.timestamp)
            except ExchangeError as exc:
                log.warning("could not read %s's fills to complete %s: %s", event.liquidated_user, event.key, exc)
                self.waiting.appendleft(event)  # the exchange is out: try again at the next poll
                break
            except asyncio.CancelledError:
                self.waiting.appendleft(event)
                raise
            own = [(event.liquidated_user, f) for f in page.fills if f.hash == event.tx_hash and f.coin == event.coin]
            via = tuple(sorted({*event.observed_via, event.liquidated_user}))
            found = detect_from_fills(own, source=event.source, detected_at=now_ms, own_legs_only=True, via=via)
            complete = completed_from(event, found)
            if complete is None:
                self.left_partial += 1
                continue
            self.completed += 1
            self.ready.append(complete)
        return self.take()

    def take(self) -> list[LiquidationEvent]:
        """The completed events not taken yet, now the caller's to publish."""
        ready, self.ready = self.ready, []
        return ready
