"""The outbox on its own: bounded, oldest first, each batch with its checkpoint, nothing dropped."""

from __future__ import annotations

from producer.outbox import Outbox
from schemas import Event
from tests.helpers import make_event


def test_batches_come_out_oldest_first_each_with_its_checkpoint() -> None:
    outbox = Outbox(max_events=10)
    first: list[Event] = [make_event(), make_event()]
    second: list[Event] = [make_event()]
    outbox.put(first, {"fills:a": "1"})
    outbox.put(second, {"fills:a": "2"})

    batch = outbox.peek()
    assert batch is not None and batch.events == first and batch.checkpoint == {"fills:a": "1"}
    assert outbox.peek() is batch  # peeking takes nothing: a failed publish retries the same batch
    outbox.pop()
    batch = outbox.peek()
    assert batch is not None and batch.events == second and batch.checkpoint == {"fills:a": "2"}
    outbox.pop()
    assert outbox.peek() is None and len(outbox) == 0


def test_its_length_counts_events_and_it_is_full_at_max_events() -> None:
    outbox = Outbox(max_events=4)
    outbox.put([make_event(), make_event()], {})
    assert len(outbox) == 2 and not outbox.full
    outbox.put([make_event(), make_event()], {})
    assert len(outbox) == 4 and outbox.full
    outbox.put([make_event()], {})  # nothing is dropped at the cap: being full stops the polling instead
    assert len(outbox) == 5 and outbox.full
    outbox.pop()
    assert len(outbox) == 3 and not outbox.full


def test_consecutive_checkpoint_only_batches_merge_into_the_newest_positions() -> None:
    outbox = Outbox(max_events=10)
    outbox.put([], {"fills:a": "1", "fills:b": "1"})
    outbox.put([], {"fills:a": "2"})

    batch = outbox.peek()
    assert batch is not None and batch.events == [] and batch.checkpoint == {"fills:a": "2", "fills:b": "1"}
    outbox.pop()
    assert outbox.peek() is None


def test_a_checkpoint_after_events_waits_behind_them() -> None:
    outbox = Outbox(max_events=10)
    events: list[Event] = [make_event()]
    outbox.put(events, {"fills:a": "1"})
    outbox.put([], {"fills:a": "2"})

    batch = outbox.peek()
    assert batch is not None and batch.checkpoint == {"fills:a": "1"}  # not moved ahead of unpublished events
    outbox.pop()
    batch = outbox.peek()
    assert batch is not None and batch.events == [] and batch.checkpoint == {"fills:a": "2"}


def test_an_empty_poll_queues_nothing() -> None:
    outbox = Outbox(max_events=10)
    outbox.put([], {})
    assert outbox.peek() is None and len(outbox) == 0


def test_a_batch_keeps_whether_it_is_catching_up() -> None:
    outbox = Outbox(max_events=10)
    outbox.put([make_event()], {"node:offset": "10"}, catching_up=True)
    outbox.put([make_event()], {"node:offset": "20"})

    replayed = outbox.peek()
    assert replayed is not None and replayed.catching_up
    outbox.pop()
    live = outbox.peek()
    assert live is not None and not live.catching_up
