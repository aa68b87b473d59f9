"""The WebSocket feeds' messages, both ways, as msgspec Structs: three dialects, one decoder each.

Three providers push fills over a WebSocket, each in its own dialect:

- ``public``: Hyperliquid's own ``wss://api.hyperliquid.xyz/ws``. Messages are keyed by ``channel``
  (``subscriptionResponse``, ``userFills``, ``trades``, ``pong``, ``error``); the client sends
  ``{"method": ...}``.
- ``hydromancer``: keyed by ``type`` (``connected``, ``liquidationFills``, ``ping``, ``error``); the client sends
  ``{"type": ...}``. Its documentation says a ``sessionId`` is issued on connect but not in which message; we
  take it to be ``{"type": "connected", "sessionId": "..."}``. Its error shape is not documented either; we take
  ``{"type": "error", "message": "..."}``. Both are assumptions to check against the live service.
- ``goldrush``: wire-compatible with ``public`` for the shared types, plus ``liquidationFills`` on the
  ``channel`` key. Its documentation lists ``channel`` and a ``fills`` array of ``[address, fill]`` pairs without
  saying whether ``fills`` sits beside ``channel`` or inside ``data`` (the public wire's envelope); both decode.

Decoding goes straight from bytes to the Structs through one tagged union per dialect, never through dicts. A
frame whose key is a string we do not know becomes :class:`Unrecognised` (providers add message types; that is not
garbage); anything else that does not fit raises :class:`FeedMessageError`, and only that, so the transport has one
thing to count and skip. Fills reuse :class:`~producer.exchange_types.Fill`: amounts stay the exchange's decimal
strings.
"""

from __future__ import annotations

from typing import Literal

import msgspec

from producer.errors import ProducerError
from producer.exchange_types import Fill, Trade

Dialect = Literal["public", "hydromancer", "goldrush"]
DIALECTS: tuple[Dialect, ...] = ("public", "hydromancer", "goldrush")


class FeedMessageError(ProducerError):
    """A frame that is not a message of the feed's dialect (not JSON, wrong shape, wrong types)."""


# ---------------------------------------------------------------------------------------------- outbound


class Subscription(msgspec.Struct, frozen=True, omit_defaults=True):
    """What to subscribe to; the same body in every dialect (only the envelope differs)."""

    type: str
    user: str | None = None
    coin: str | None = None


def user_fills(user: str) -> Subscription:
    """Fills of one address (public dialect; the exchange allows 10 distinct users per IP)."""
    return Subscription(type="userFills", user=user.lower())


def trades(coin: str) -> Subscription:
    """Public trades of one coin (public dialect)."""
    return Subscription(type="trades", coin=coin)


def liquidation_fills() -> Subscription:
    """Every liquidation fill on the venue (Hydromancer and GoldRush; no address filter)."""
    return Subscription(type="liquidationFills")


class _MethodSubscribe(msgspec.Struct, frozen=True, kw_only=True):
    method: str = "subscribe"
    subscription: Subscription


class _TypeSubscribe(msgspec.Struct, frozen=True, kw_only=True):
    type: str = "subscribe"
    subscription: Subscription


class _MethodUnsubscribe(msgspec.Struct, frozen=True, kw_only=True):
    method: str = "unsubscribe"
    subscription: Subscription


class _TypeUnsubscribe(msgspec.Struct, frozen=True, kw_only=True):
    type: str = "unsubscribe"
    subscription: Subscription


_encoder = msgspec.json.Encoder()


def encode_subscribe(dialect: Dialect, subscription: Subscription) -> bytes:
    """The subscribe request: ``{"method": "subscribe", ...}``, except Hydromancer's ``{"type": "subscribe", ...}``."""
    if dialect == "hydromancer":
        return _encoder.encode(_TypeSubscribe(subscription=subscription))
    return _encoder.encode(_MethodSubscribe(subscription=subscription))


def encode_unsubscribe(dialect: Dialect, subscription: Subscription) -> bytes:
    """The request that ends a subscription on an open connection (the subscribe request's envelope, "unsubscribe")."""
    if dialect == "hydromancer":
        return _encoder.encode(_TypeUnsubscribe(subscription=subscription))
    return _encoder.encode(_MethodUnsubscribe(subscription=subscription))


def encode_ping(dialect: Dialect) -> bytes:
    """The application-level ping. The public server answers ``{"channel": "pong"}``; GoldRush speaks the same."""
    return b'{"type":"ping"}' if dialect == "hydromancer" else b'{"method":"ping"}'


def encode_pong(dialect: Dialect) -> bytes:
    """The answer to a server's application-level ping (Hydromancer pings every 60 s and expects this)."""
    return b'{"type":"pong"}' if dialect == "hydromancer" else b'{"method":"pong"}'


# ---------------------------------------------------------------------------------------------- inbound: public


class SubscriptionAck(msgspec.Struct, frozen=True):
    method: str
    subscription: Subscription


class SubscriptionResponse(msgspec.Struct, frozen=True, tag_field="channel", tag="subscriptionResponse"):
    """The server took a subscription; its first data message follows."""

    data: SubscriptionAck


class UserFillsData(msgspec.Struct, frozen=True):
    user: str
    fills: list[Fill]
    is_snapshot: bool = msgspec.field(default=False, name="isSnapshot")
    """True on the first message after subscribing: recent fills, already seen by a reader that was connected."""


class UserFills(msgspec.Struct, frozen=True, tag_field="channel", tag="userFills"):
    data: UserFillsData


class Trades(msgspec.Struct, frozen=True, tag_field="channel", tag="trades"):
    data: list[Trade]


class Pong(msgspec.Struct, frozen=True, tag_field="channel", tag="pong"):
    """The answer to our ping: the connection is alive."""


class ChannelError(msgspec.Struct, frozen=True, tag_field="channel", tag="error"):
    """The server refused a request (a bad subscription, too many users); the connection stays open."""

    data: str


# ---------------------------------------------------------------------------------------------- inbound: GoldRush

LiquidationFill = tuple[str, Fill]
"""``[address, fill]``: the address whose order filled, and its fill (with a non-null ``liquidation``)."""


class _FillsData(msgspec.Struct, frozen=True):
    fills: list[LiquidationFill]


class GoldRushLiquidationFills(msgspec.Struct, frozen=True, tag_field="channel", tag="liquidationFills"):
    """One push of liquidation fills; live only (no snapshot, no replay, no sequence number)."""

    fills: list[LiquidationFill] | None = None
    data: _FillsData | list[LiquidationFill] | None = None

    @property
    def pairs(self) -> list[LiquidationFill]:
        """The fills wherever the provider put them (see the module docstring)."""
        if self.fills is not None:
            return self.fills
        if isinstance(self.data, _FillsData):
            return self.data.fills
        return self.data or []


# ---------------------------------------------------------------------------------------------- inbound: Hydromancer


class SessionStarted(msgspec.Struct, frozen=True, tag_field="type", tag="connected"):
    """Sent on connect: the session to name when reconnecting, so subscriptions and the last 30 s come back."""

    session_id: str = msgspec.field(name="sessionId")


class HydromancerLiquidationFills(msgspec.Struct, frozen=True, tag_field="type", tag="liquidationFills"):
    """One block's liquidation fills.

    ``seq`` restarts at 1 on every connection and counts this subscription's messages: a jump is a lost message.
    ``cursor`` is ``block:time:txIndex``, the position in the chain; replayed and live messages may overlap.
    """

    fills: list[LiquidationFill]
    seq: int | None = None
    cursor: str | None = None


class ServerPing(msgspec.Struct, frozen=True, tag_field="type", tag="ping"):
    """The server checks we are alive; answer with :func:`encode_pong` or be dropped."""


class HydromancerError(msgspec.Struct, frozen=True, tag_field="type", tag="error"):
    """Hydromancer's refusal of a request (shape assumed, see the module docstring)."""

    message: str = ""


# ---------------------------------------------------------------------------------------------- decoding


class Unrecognised(msgspec.Struct, frozen=True):
    """A well-formed frame of a kind this code does not know: skipped, not counted as garbage."""

    kind: str


PublicMessage = SubscriptionResponse | UserFills | Trades | Pong | ChannelError
GoldRushMessage = PublicMessage | GoldRushLiquidationFills
HydromancerMessage = SessionStarted | HydromancerLiquidationFills | ServerPing | HydromancerError
FeedMessage = PublicMessage | GoldRushMessage | HydromancerMessage | Unrecognised


class _ChannelKey(msgspec.Struct):
    channel: str


class _TypeKey(msgspec.Struct):
    type: str


_DECODERS: dict[Dialect, msgspec.json.Decoder[PublicMessage | GoldRushMessage | HydromancerMessage]] = {
    "public": msgspec.json.Decoder(PublicMessage),
    "goldrush": msgspec.json.Decoder(GoldRushMessage),
    "hydromancer": msgspec.json.Decoder(HydromancerMessage),
}
_KEYS: dict[Dialect, tuple[msgspec.json.Decoder[_ChannelKey] | msgspec.json.Decoder[_TypeKey], frozenset[str]]] = {
    "public": (
        msgspec.json.Decoder(_ChannelKey),
        frozenset(("subscriptionResponse", "userFills", "trades", "pong", "error")),
    ),
    "goldrush": (
        msgspec.json.Decoder(_ChannelKey),
        frozenset(("subscriptionResponse", "userFills", "trades", "pong", "error", "liquidationFills")),
    ),
    "hydromancer": (msgspec.json.Decoder(_TypeKey), frozenset(("connected", "liquidationFills", "ping", "error"))),
}
_UNDECODABLE = (msgspec.MsgspecError, RecursionError, UnicodeError)
"""What msgspec raises on a bad frame: its own errors, plus a str frame with lone surrogates (not encodable)."""
_SHOWN = 80
"""Characters of a bad frame quoted in the error: enough to recognise it, never a whole hostile payload."""


def _kind(dialect: Dialect, frame: bytes | str) -> str | None:
    """The frame's key if it has a string one (``channel`` or ``type``), else None."""
    decoder, _ = _KEYS[dialect]
    try:
        key = decoder.decode(frame)
    except _UNDECODABLE:
        return None
    return key.channel if isinstance(key, _ChannelKey) else key.type


def decode(dialect: Dialect, frame: bytes | str) -> FeedMessage:
    """One frame of ``dialect`` as its Struct, :class:`Unrecognised`, or :class:`FeedMessageError`, nothing else."""
    try:
        return _DECODERS[dialect].decode(frame)
    except _UNDECODABLE as exc:
        reason = str(exc)[:_SHOWN]
    kind = _kind(dialect, frame)
    if kind is not None and kind not in _KEYS[dialect][1]:
        return Unrecognised(kind[:_SHOWN])
    text = frame if isinstance(frame, str) else frame.decode("utf-8", "replace")
    raise FeedMessageError(f"malformed {dialect} feed message ({reason}): {text[:_SHOWN]!r}")
