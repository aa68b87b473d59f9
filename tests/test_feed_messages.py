"""Every inbound message of the three feed dialects decodes into its Struct; garbage raises FeedMessageError only."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from producer.exchange_types import Fill
from producer.feed_messages import (
    DIALECTS,
    ChannelError,
    Dialect,
    FeedMessageError,
    GoldRushLiquidationFills,
    HydromancerError,
    HydromancerLiquidationFills,
    Pong,
    ServerPing,
    SessionStarted,
    SubscriptionResponse,
    Trades,
    Unrecognised,
    UserFills,
    decode,
    encode_ping,
    encode_pong,
    encode_subscribe,
    liquidation_fills,
    trades,
    user_fills,
)

# Shapes as mainnet published them (a maker's fill of a market liquidation, a public trade).
MAKER = "0x80bcb7855595980d4a20f0c8454039762a6d6a28"
LIQUIDATION_FILL: dict[str, Any] = {
    "coin": "xyz:CRWV",
    "px": "116.86",
    "sz": "2.47",
    "side": "A",
    "time": 1786628572099,
    "startPosition": "-143.54",
    "dir": "Open Short",
    "closedPnl": "0.0",
    "hash": "0xe6838c8a3dba3578e7fd044214d3e2020481006fd8bd544a8a4c37dcfcbe0f63",
    "oid": 515445455983,
    "crossed": False,
    "fee": "0.008659",
    "tid": 711626751774561,
    "liquidation": {
        "liquidatedUser": "0xbb8b801eeddaa7061ae171041ec77516313f2921",
        "markPx": "116.84",
        "method": "market",
    },
    "feeToken": "USDC",
    "twapId": None,
}
TRADE: dict[str, Any] = {
    "coin": "BTC",
    "side": "A",
    "px": "64159.0",
    "sz": "0.13722",
    "time": 1787047504010,
    "hash": "0x292f4dcc51901beb2aa904426dff020202cf00b1ec933abdccf7f91f1093f5d5",
    "tid": 1016897150094344,
    "users": ["0x07fd7e702ba749ffa49c3a6c17fcd9e6c7b7082a", "0x4a8a68b2ec7c67cbb79060d98157b68c47eba0e6"],
}


def frame(payload: Any) -> bytes:
    return json.dumps(payload).encode()


def test_a_user_fills_snapshot_keeps_exact_amounts_and_the_snapshot_flag() -> None:
    message = decode(
        "public",
        frame({"channel": "userFills", "data": {"user": MAKER, "fills": [LIQUIDATION_FILL], "isSnapshot": True}}),
    )
    assert isinstance(message, UserFills) and message.data.is_snapshot and message.data.user == MAKER
    (fill,) = message.data.fills
    assert (fill.px, fill.sz, fill.tid) == ("116.86", "2.47", 711626751774561)
    assert fill.liquidation is not None and fill.liquidation.markPx == Decimal("116.84")


def test_a_live_user_fills_push_is_not_a_snapshot() -> None:
    message = decode("public", frame({"channel": "userFills", "data": {"user": MAKER, "fills": [LIQUIDATION_FILL]}}))
    assert isinstance(message, UserFills) and not message.data.is_snapshot


def test_the_public_control_messages_decode() -> None:
    ack = decode(
        "public",
        frame(
            {
                "channel": "subscriptionResponse",
                "data": {"method": "subscribe", "subscription": {"type": "userFills", "user": MAKER}},
            }
        ),
    )
    assert isinstance(ack, SubscriptionResponse) and ack.data.subscription == user_fills(MAKER)
    assert decode("public", b'{"channel":"pong"}') == Pong()
    error = decode("public", frame({"channel": "error", "data": "Cannot track more than 10 total users."}))
    assert isinstance(error, ChannelError) and "10 total users" in error.data
    pushed = decode("public", frame({"channel": "trades", "data": [TRADE]}))
    assert isinstance(pushed, Trades) and pushed.data[0].users[1] == TRADE["users"][1]


@pytest.mark.parametrize(
    "payload",
    [
        {"channel": "liquidationFills", "data": {"fills": [[MAKER, LIQUIDATION_FILL]]}},
        {"channel": "liquidationFills", "fills": [[MAKER, LIQUIDATION_FILL]]},
        {"channel": "liquidationFills", "data": [[MAKER, LIQUIDATION_FILL]]},
    ],
    ids=["in-data", "beside-channel", "data-is-the-list"],
)
def test_goldrush_liquidation_fills_decode_wherever_the_pairs_sit(payload: dict[str, Any]) -> None:
    message = decode("goldrush", frame(payload))
    assert isinstance(message, GoldRushLiquidationFills)
    ((address, fill),) = message.pairs
    assert address == MAKER and isinstance(fill, Fill) and fill.liquidation is not None


def test_goldrush_speaks_the_public_control_messages() -> None:
    assert decode("goldrush", b'{"channel":"pong"}') == Pong()


def test_hydromancer_messages_decode_with_session_seq_and_cursor() -> None:
    assert decode("hydromancer", b'{"type":"connected","sessionId":"s-1"}') == SessionStarted(session_id="s-1")
    assert decode("hydromancer", b'{"type":"ping"}') == ServerPing()
    assert decode("hydromancer", b'{"type":"error","message":"bad subscription"}') == HydromancerError(
        "bad subscription"
    )
    block = decode(
        "hydromancer",
        frame(
            {
                "type": "liquidationFills",
                "channel": "liquidationFills",
                "seq": 7,
                "cursor": "758800641:1786628572099:3",
                "fills": [[MAKER, LIQUIDATION_FILL]],
            }
        ),
    )
    assert isinstance(block, HydromancerLiquidationFills)
    assert (block.seq, block.cursor, block.fills[0][1].sz) == (7, "758800641:1786628572099:3", "2.47")


@pytest.mark.parametrize(
    ("dialect", "payload"),
    [("public", {"channel": "l2Book", "data": {}}), ("hydromancer", {"type": "subscribed", "subscription": {}})],
)
def test_a_message_kind_we_do_not_know_is_unrecognised_not_garbage(dialect: Dialect, payload: dict[str, Any]) -> None:
    assert isinstance(decode(dialect, frame(payload)), Unrecognised)


@pytest.mark.parametrize(
    ("dialect", "raw"),
    [
        ("public", b"not json"),
        ("public", b'{"channel":"userFills","data":{"user":"0x1","fills":[{"coin":"BTC"}]}}'),
        ("public", b'{"channel":"pong",'),
        ("public", b'{"type":"ping"}'),  # Hydromancer's ping on the public wire: no channel at all
        ("goldrush", b'{"channel":"liquidationFills","fills":[["0x1"]]}'),
        ("hydromancer", b'{"type":"liquidationFills","seq":"one","fills":[]}'),
        ("hydromancer", b"[]"),
        ("hydromancer", "\ud800".encode("utf-8", "surrogatepass")),
    ],
)
def test_garbage_raises_the_feed_error_with_one_bounded_line(dialect: Dialect, raw: bytes) -> None:
    with pytest.raises(FeedMessageError) as caught:
        decode(dialect, raw)
    text = str(caught.value)
    assert "\n" not in text and len(text) < 300 and dialect in text


def test_a_hostile_frame_cannot_put_a_newline_or_megabytes_into_the_error() -> None:
    with pytest.raises(FeedMessageError) as caught:
        decode("public", '{"channel":"userFills","data":"\n2026-01-01 ERROR forged' + "x" * 1_000_000 + '"}')
    assert "\n" not in str(caught.value) and len(str(caught.value)) < 300


def test_a_str_frame_with_a_lone_surrogate_is_garbage_too() -> None:
    with pytest.raises(FeedMessageError):
        decode("public", "\ud800")


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=20,
)
KEYS = ["channel", "type", "data", "fills", "seq", "cursor", "sessionId", "user", "isSnapshot", "px", "liquidation"]
KINDS = ["userFills", "trades", "pong", "error", "subscriptionResponse", "liquidationFills", "connected", "ping"]


def check_only_feed_error(dialect: Dialect, raw: bytes | str) -> None:
    try:
        decode(dialect, raw)
    except FeedMessageError:
        pass


@given(st.sampled_from(DIALECTS), st.binary(max_size=300))
def test_random_bytes_raise_nothing_but_the_feed_error(dialect: Dialect, raw: bytes) -> None:
    check_only_feed_error(dialect, raw)


@given(st.sampled_from(DIALECTS), st.text(max_size=200))
def test_random_text_raises_nothing_but_the_feed_error(dialect: Dialect, raw: str) -> None:
    check_only_feed_error(dialect, raw)


@given(
    st.sampled_from(DIALECTS),
    st.sampled_from(["channel", "type"]),
    st.sampled_from(KINDS),
    st.dictionaries(st.sampled_from(KEYS), json_values, max_size=5),
)
def test_plausible_json_of_the_right_kind_raises_nothing_but_the_feed_error(
    dialect: Dialect, key: str, kind: str, rest: dict[str, Any]
) -> None:
    check_only_feed_error(dialect, json.dumps({**rest, key: kind}))


@given(st.sampled_from(sorted(LIQUIDATION_FILL)), json_values)
def test_a_fill_with_any_field_broken_raises_nothing_but_the_feed_error(field: str, value: Any) -> None:
    broken = {**LIQUIDATION_FILL, field: value}
    check_only_feed_error("hydromancer", frame({"type": "liquidationFills", "seq": 1, "fills": [[MAKER, broken]]}))
    check_only_feed_error("public", frame({"channel": "userFills", "data": {"user": MAKER, "fills": [broken]}}))


def test_subscribe_requests_use_each_dialects_envelope() -> None:
    assert encode_subscribe("public", user_fills("0xABC")) == (
        b'{"method":"subscribe","subscription":{"type":"userFills","user":"0xabc"}}'
    )
    assert (
        encode_subscribe("public", trades("BTC"))
        == b'{"method":"subscribe","subscription":{"type":"trades","coin":"BTC"}}'
    )
    assert encode_subscribe("goldrush", liquidation_fills()) == (
        b'{"method":"subscribe","subscription":{"type":"liquidationFills"}}'
    )
    assert encode_subscribe("hydromancer", liquidation_fills()) == (
        b'{"type":"subscribe","subscription":{"type":"liquidationFills"}}'
    )


def test_heartbeats_use_each_dialects_envelope() -> None:
    assert encode_ping("public") == b'{"method":"ping"}' == encode_ping("goldrush")
    assert encode_pong("hydromancer") == b'{"type":"pong"}'
