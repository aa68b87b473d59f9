"""What the producer found but Redis has not taken yet.

While Redis is unreachable the poll loop keeps polling and queues events here, in order, each batch with the
checkpoint that must be recorded with it. The outbox is bounded: at the cap the loop stops polling instead of
dropping events, which loses nothing because watermarks do not advance in Redis until their batch is published.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from schemas import Event


@dataclass
class Batch:
    events: list[Event]
    checkpoint: dict[str, str]
    catching_up: bool = False
    """Old news (a replay): its events are logged at DEBUG, the poll's summary says how many."""


class Outbox:
    def __init__(self, max_events: int) -> None:
        self.max_events = max_events
        self._batches: deque[Batch] = deque()
        self._events = 0

    def __len__(self) -> int:
        """Events waiting."""
        return self._events

    @property
    def full(self) -> bool:
        return self._events >= self.max_events

    def put(self, events: list[Event], checkpoint: dict[str, str], *, catching_up: bool = False) -> None:
        if not events and not checkpoint:
            return
        if self._batches and not events and not self._batches[-1].events:
            # Consecutive checkpoint-only batches: the newest positions supersede the older ones.
            self._batches[-1].checkpoint.update(checkpoint)
            return
        self._batches.append(Batch(events, checkpoint, catching_up))
        self._events += len(events)

    def peek(self) -> Batch | None:
        return self._batches[0] if self._batches else None

    def pop(self) -> None:
        batch = self._batches.popleft()
        self._events -= len(batch.events)
