"""The stream contract: what a subscriber in any language can rely on."""

from __future__ import annotations

import inspect
import json
from decimal import Decimal

import msgspec
import pytest

from schemas import (
    SCHEMA_VERSION,
    AdlEvent,
    LiquidationEvent,
    MalformedEntry,
    UnknownEventType,
    UnpublishableEvent,
    UnsupportedVersion,
    decode_entry,
    encode_entry,
    event_problem,
)
from schemas.jsonschema import SCHEMA_PATH, build_schema, normalise_descriptions, render
from tests.faults.poison import HUGE_AMOUNTS, UNUSABLE_AMOUNTS, UNUSABLE_TIMES, with_field
from tests.helpers import make_adl


def make_event(**overrides: object) -> LiquidationEvent:
    fields: dict[str, object] = dict(
        tx_hash="0xe6838c8a3dba3578e7fd044214d3e2020481006fd8bd544a8a4c37dcfcbe0f63",
        coin="xyz:CRWV",
        liquidation_side="short",
        price=Decimal("116.86"),
        size=Decimal("2.47"),
        value_usd=Decimal("288.6442"),
        liquidated_user="0xbb8b801eeddaa7061ae171041ec77516313f2921",
        timestamp=1786628572099,
        method="market",
        mark_price=Decimal("116.84"),
        tids=(711626751774561,),
        fills=1,
        observed_via=("0x654086857e1fad6dcf05cf6695cce51ea3984268",),
        source="fills",
        detected_at=1786628573000,
    )
    fields.update(overrides)
    return LiquidationEvent(**fields)  # type: ignore[arg-type]


def test_entry_round_trips_and_is_plain_json() -> None:
    event = make_event()
    entry = encode_entry(event)
    assert entry["type"] == b"liquidation"
    assert entry["v"] == str(SCHEMA_VERSION).encode()
    assert entry["key"] == event.key.encode()
    data = json.loads(entry["data"])  # any JSON library reads it
    assert data["type"] == "liquidation"
    assert data["price"] == "116.86" and data["size"] == "2.47" and data["value_usd"] == "288.6442"
    assert decode_entry(entry) == event
    assert decode_entry({k: v.decode() for k, v in entry.items()}) == event  # decode_responses=True clients


def test_an_older_reader_ignores_fields_added_later() -> None:
    entry = encode_entry(make_event())
    data = json.loads(entry["data"])
    data["new_field_of_v1_1"] = {"anything": [1, 2]}
    entry["data"] = json.dumps(data).encode()
    assert decode_entry(entry) == make_event()


def test_unknown_type_newer_version_and_garbage_are_told_apart() -> None:
    entry = encode_entry(make_event())
    with pytest.raises(UnknownEventType) as unknown:
        decode_entry({**entry, "type": b"funding"})
    assert unknown.value.kind == "funding"
    with pytest.raises(MalformedEntry, match="entry type 'adl' but its data says 'liquidation'"):
        decode_entry({**entry, "type": b"adl"})
    with pytest.raises(UnsupportedVersion):
        decode_entry({**entry, "v": str(SCHEMA_VERSION + 1).encode()})
    with pytest.raises(MalformedEntry, match="not an integer"):
        decode_entry({**entry, "v": b"one"})
    with pytest.raises(MalformedEntry):
        decode_entry({**entry, "data": b'{"type":"liquidation","coin":'})
    with pytest.raises(MalformedEntry):
        decode_entry({**entry, "data": entry["data"].replace(b'"timestamp":1786628572099', b'"timestamp":"x"')})
    with pytest.raises(MalformedEntry, match="no 'data'"):
        decode_entry({"type": b"liquidation", "v": b"1"})


def test_amounts_are_never_floats() -> None:
    with pytest.raises(msgspec.ValidationError):
        msgspec.json.decode(msgspec.json.encode(make_event()).replace(b'"2.47"', b'{"x":1}'), type=LiquidationEvent)
    assert b"288.6442" in msgspec.json.encode(make_event())


def test_json_schema_file_is_up_to_date() -> None:
    assert SCHEMA_PATH.read_bytes() == render(), "schemas/event.schema.json is stale: run python -m schemas.jsonschema"


def test_json_schema_is_the_same_whether_msgspec_dedents_docstrings_or_not() -> None:
    """msgspec 0.19-0.22 copy docstrings verbatim, 0.23 dedents them: both must give the committed bytes."""
    raw = {
        "$defs": {name: {"description": str(cls.__doc__)} for name, cls in (("A", AdlEvent), ("L", LiquidationEvent))}
    }
    dedented = {"$defs": {n: {"description": inspect.cleandoc(d["description"])} for n, d in raw["$defs"].items()}}
    assert "\n    " in str(AdlEvent.__doc__)  # the raw form really is indented
    assert normalise_descriptions(raw) == normalise_descriptions(dedented) == dedented
    committed = json.loads(SCHEMA_PATH.read_text())
    assert committed["$defs"]["AdlEvent"]["description"] == inspect.cleandoc(str(AdlEvent.__doc__))
    assert normalise_descriptions(build_schema()) == build_schema()


def test_json_schema_describes_every_field_with_decimal_strings() -> None:
    schema = json.loads(SCHEMA_PATH.read_text())
    for struct in (LiquidationEvent, AdlEvent):
        props = schema["$defs"][struct.__name__]["properties"]
        assert set(props) == set(struct.__struct_fields__) | {"type"}
        for name in ("price", "size", "value_usd"):
            assert props[name] == {**props[name], "type": "string", "format": "decimal"}
        assert all("description" in p for n, p in props.items() if n != "type")
    assert schema["discriminator"]["propertyName"] == "type"
    assert schema["x-schema-version"] == SCHEMA_VERSION


def legacy_v1_reader(fields: dict[bytes, bytes]) -> LiquidationEvent | None:
    """What a subscriber written against the first release does: the contract says skip unknown types."""
    if fields[b"type"] != b"liquidation":
        return None
    return msgspec.json.decode(fields[b"data"], type=LiquidationEvent)


def test_adl_events_do_not_break_readers_of_the_first_schema() -> None:
    liquidation, adl = make_event(), make_adl()
    # As a Redis client returns them: bytes field names.
    entries = [{k.encode(): v for k, v in encode_entry(e).items()} for e in (liquidation, adl, liquidation)]
    assert [legacy_v1_reader(e) for e in entries] == [liquidation, None, liquidation]
    assert [decode_entry(e) for e in entries] == [liquidation, adl, liquidation]
    assert entries[1][b"type"] == b"adl" and entries[1][b"v"] == b"1"


def test_adl_and_liquidation_keys_never_collide() -> None:
    same_parties = make_adl(
        deleveraged_user=make_event().liquidated_user,
        tx_hash=make_event().tx_hash,
        coin=make_event().coin,
        timestamp=make_event().timestamp,
    )
    assert same_parties.key != make_event().key
    assert same_parties.key.startswith("adl|")


@pytest.mark.parametrize("name", ["price", "size", "value_usd", "mark_price"])
@pytest.mark.parametrize("value", UNUSABLE_AMOUNTS)
def test_an_entry_with_an_unusable_amount_is_malformed(name: str, value: str) -> None:
    """Readers dead-letter such an entry instead of raising on it later (a report, a sum, a format)."""
    with pytest.raises(MalformedEntry, match=f"unusable: {name}"):
        decode_entry(with_field(make_event(), name, value))


@pytest.mark.parametrize("name", ["timestamp", "detected_at"])
@pytest.mark.parametrize("value", [t for t in UNUSABLE_TIMES if t])
def test_an_entry_with_an_impossible_time_is_malformed(name: str, value: int) -> None:
    with pytest.raises(MalformedEntry):
        decode_entry(with_field(make_event(), name, value))


def test_huge_but_finite_amounts_and_exact_zeros_decode() -> None:
    for value in HUGE_AMOUNTS:
        assert decode_entry(with_field(make_event(), "value_usd", value)).value_usd == Decimal(value)
    assert decode_entry(with_field(make_event(), "mark_price", None)).mark_price is None
    assert decode_entry(with_field(make_event(), "size", "0.000")).size == 0


@pytest.mark.parametrize(
    "overrides",
    [
        {"value_usd": Decimal("NaN")},
        {"price": Decimal("Infinity")},
        {"size": Decimal("-1")},
        {"mark_price": Decimal("1e500000")},
        {"timestamp": 2**63 - 1},
    ],
)
def test_the_producer_side_refuses_to_encode_what_no_reader_could_use(overrides: dict[str, object]) -> None:
    event = make_event(**overrides)
    assert event_problem(event) is not None
    with pytest.raises(UnpublishableEvent, match="refusing to publish"):
        encode_entry(event)
