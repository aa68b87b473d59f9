"""The runner's per-entry decision, without Redis: every outcome, and the order the rules apply in."""

from __future__ import annotations

import pytest

from consumers.decision import DeadLetter, Decision, Handle, Skipped, Trimmed, UnknownType, decide
from consumers.entries import EntryId, Fields
from schemas import SCHEMA_VERSION, encode_entry
from tests.helpers import make_event

LIMIT = 5


def good() -> Fields:
    return dict(encode_entry(make_event()))


def run(fields: Fields, *, delivered: int | None = None, skip_through: EntryId | None = None) -> Decision:
    return decide(b"100-1", fields, delivered=delivered, max_deliveries=LIMIT, skip_through=skip_through)


def test_a_good_entry_goes_to_the_handler_with_its_event() -> None:
    event = make_event()
    assert run(dict(encode_entry(event))) == Handle(event)


def test_a_redelivered_entry_is_handled_and_counts_as_a_retry() -> None:
    event = make_event()
    fields = dict(encode_entry(event))
    assert run(fields, delivered=2) == Handle(event, redelivered=True)
    assert run(fields, delivered=1) == Handle(event), "the first delivery, counted by XPENDING, is no retry"


def test_an_entry_trimmed_while_pending_is_acknowledged_as_deleted_whatever_else_holds() -> None:
    assert run({}) == Trimmed()
    assert run({}, delivered=LIMIT + 10, skip_through="200-0") == Trimmed()


@pytest.mark.parametrize("entry_id", ["99-0", "100-1", b"100-1", "100"])
def test_entries_at_or_before_skip_through_are_skipped(entry_id: EntryId) -> None:
    assert decide(entry_id, good(), delivered=None, max_deliveries=LIMIT, skip_through="100-1") == Skipped()


def test_entries_after_skip_through_are_handled_and_ids_compare_as_numbers_not_text() -> None:
    assert isinstance(run(good(), skip_through="100-0"), Handle)
    assert isinstance(decide("1000-0", good(), delivered=None, max_deliveries=LIMIT, skip_through="999-9"), Handle)


def test_a_skipped_entry_is_not_dead_lettered_even_when_delivered_too_often() -> None:
    assert run(good(), delivered=LIMIT + 1, skip_through="100-1") == Skipped()


def test_an_entry_delivered_more_than_max_deliveries_is_dead_lettered_with_the_count_and_limit() -> None:
    assert run(good(), delivered=LIMIT + 1) == DeadLetter(
        f"max_deliveries: delivered {LIMIT + 1} times, more than the limit of {LIMIT}"
    )
    assert isinstance(run(good(), delivered=LIMIT), Handle), "the limit itself is still handed over"


def test_too_many_deliveries_wins_over_what_the_entry_holds() -> None:
    """The count is checked before decoding: a poison entry that kept failing is reported as such."""
    decision = run({b"type": b"liquidation", b"v": b"1", b"data": b"{"}, delivered=LIMIT + 1)
    assert isinstance(decision, DeadLetter) and decision.reason.startswith("max_deliveries:")


def test_a_first_delivery_is_never_over_the_limit() -> None:
    assert isinstance(decide(b"1-0", good(), delivered=None, max_deliveries=0), Handle)


def test_an_unknown_event_type_is_acknowledged_not_dead_lettered() -> None:
    fields = {**good(), "type": b"funding"}
    assert run(fields) == UnknownType("funding")
    assert run(fields, delivered=3) == UnknownType("funding", redelivered=True)


def test_a_newer_schema_version_is_dead_lettered_as_unsupported() -> None:
    fields = {**good(), "v": str(SCHEMA_VERSION + 1).encode()}
    decision = run(fields, delivered=2)
    assert decision == DeadLetter(
        f"unsupported_version: schema version {SCHEMA_VERSION + 1} is newer than the supported {SCHEMA_VERSION}",
        redelivered=True,
    )


@pytest.mark.parametrize(
    ("fields", "says"),
    [
        ({b"type": b"liquidation", b"v": b"one", b"data": b"{}"}, "schema version b'one' is not an integer"),
        ({b"type": b"liquidation", b"v": b"1", b"data": b"not json"}, "data does not decode as a liquidation"),
    ],
)
def test_a_malformed_entry_is_dead_lettered_with_what_is_wrong(fields: Fields, says: str) -> None:
    decision = run(fields)
    assert isinstance(decision, DeadLetter) and not decision.redelivered
    assert decision.reason.startswith("malformed: ") and says in decision.reason
