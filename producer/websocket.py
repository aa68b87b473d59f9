"""A WebSocket feed that stays connected: subscribe, keep alive, notice silence, reconnect politely, tell the caller.

A source reads :meth:`WebSocketFeed.events`, an async iterator of the feed's data messages
(:mod:`producer.feed_messages`) interleaved with lifecycle notices: :class:`Connected`, :class:`Disconnected` and
:class:`Gap`. The notices are what lets a source gap-fill: a WebSocket only shows what happens while it is
connected, subscriptions do not survive a disconnect, and connections drop whenever the provider upgrades.

Why each piece:

- **Heartbeats both ways.** Hyperliquid closes a connection on which nothing was sent for 60 s, so after
  ``ping_after`` seconds of silence we send the dialect's ping (and a protocol-level ping, which every server
  answers). Hydromancer pings *us* and drops a client that does not answer, so its pings are answered at once.
- **Silence is a failure.** A connection can die without a close frame (a NAT forgetting it, a stalled server).
  Nothing received for ``silence_limit`` seconds, pings included, and the connection is replaced.
- **Polite reconnects.** Every reconnect waits a jittered delay from :class:`plumbing.backoff.Backoff` (growing
  while attempts keep failing, back to the base once a connection delivered something) and never more than
  ``connects_per_minute`` new connections start in a rolling minute (the exchange allows 30 per IP).
- **A refused key is final.** HTTP 401/403 at the upgrade raises :class:`FeedRejected` at once: retrying a wrong
  key only burns the connection budget. Keys travel in the URL's query, so every URL we log or put in an error is
  masked (:func:`mask_url`) and every error text from below is scrubbed of the query's values (:func:`redact`).
- **Hydromancer sessions.** Its first message carries a ``sessionId``; we reconnect with it (as the ``sessionId``
  query parameter: its documentation says to "provide" the id without saying how, so that is our choice) and the
  server restores the subscription and replays up to 30 s of what we missed. Replay and live may overlap: the
  caller deduplicates (fills carry tids). ``seq`` restarts at 1 per connection; a jump yields a :class:`Gap`.

The decisions (when to ping, when to give up on a silent connection, whether a seq is a gap, whether the feed is
healthy, how to mask a URL) are small pure functions below, tested without a socket; the class only does I/O.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import deque
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterable
from contextlib import aclosing
from dataclasses import dataclass, replace
from typing import Literal
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import aiohttp

from plumbing.backoff import Backoff, SlidingWindow
from plumbing.errors import ConfigError
from producer.errors import ProducerError
from producer.feed_messages import (
    ChannelError,
    Dialect,
    FeedMessage,
    FeedMessageError,
    GoldRushLiquidationFills,
    HydromancerError,
    HydromancerLiquidationFills,
    Pong,
    ServerPing,
    SessionStarted,
    Subscription,
    SubscriptionResponse,
    Trades,
    Unrecognised,
    UserFills,
    decode,
    encode_ping,
    encode_pong,
    encode_subscribe,
    encode_unsubscribe,
)

log = logging.getLogger(__name__)

PUBLIC_URL = "wss://api.hyperliquid.xyz/ws"
PUBLIC_TESTNET_URL = "wss://api.hyperliquid-testnet.xyz/ws"
HYDROMANCER_URL = "wss://api.hydromancer.xyz/ws"
GOLDRUSH_URL = "wss://hypercore.goldrushdata.com/ws"
KEY_PARAMS: dict[Dialect, str] = {"hydromancer": "token", "goldrush": "key"}
"""The query parameter carrying each provider's key; the public feed needs none."""
SESSION_PARAM = "sessionId"
_MALFORMED_LOGGED = 3
"""Malformed frames logged one by one per connection; the rest are only counted (a hostile feed cannot flood)."""
_SHOWN = 200


class FeedRejected(ProducerError):
    """The provider refused our key at the upgrade (HTTP 401/403): reconnecting would not help."""


# ---------------------------------------------------------------------------------------------- settings


@dataclass(frozen=True, kw_only=True)
class FeedSettings:
    """One feed: where, which dialect, what to subscribe to, and the timings (short ones in tests)."""

    dialect: Dialect
    url: str
    subscriptions: tuple[Subscription, ...]
    ping_after: float = 50.0
    """Seconds of silence before we ping: under the 60 s after which Hyperliquid closes a quiet connection."""
    silence_limit: float = 65.0
    """Seconds without any frame (pongs included) after which the connection is taken for dead and replaced."""
    connect_timeout: float = 10.0
    backoff_base: float = 0.5
    backoff_cap: float = 30.0
    connects_per_minute: int = 30
    unhealthy_after: float = 30.0
    """A feed disconnected for longer than this reports itself unhealthy."""
    max_message_bytes: int = 64 * 2**20
    """A cascade's block of fills can be megabytes; aiohttp's 4 MiB default would drop the connection on it."""
    subscribe_interval: float = 0.0
    """Seconds between two subscribe requests (0: all at once). The exchange allows 2,000 messages a minute per
    IP: a feed of hundreds of subscriptions, resent on every reconnect, paces them while it reads what arrives."""

    def check(self) -> None:
        """Raise :class:`ConfigError` (one line: what is wrong, what to do) for settings that cannot work."""
        parts = urlsplit(self.url)
        if parts.scheme not in ("ws", "wss") or not parts.hostname:
            raise ConfigError(f"the {self.dialect} feed URL {mask_url(self.url)!r} is not a ws:// or wss:// URL")
        param = KEY_PARAMS.get(self.dialect)
        if param is not None and not dict(parse_qsl(parts.query)).get(param):
            raise ConfigError(f"the {self.dialect} feed URL has no ?{param}=: add your API key to it")
        if not self.subscriptions:
            raise ConfigError(f"the {self.dialect} feed has nothing to subscribe to")
        if not 0 < self.ping_after < self.silence_limit:
            raise ConfigError(
                f"the feed's ping interval ({self.ping_after}s) must be positive and below its silence limit "
                f"({self.silence_limit}s)"
            )
        if not 0 < self.backoff_base <= self.backoff_cap:
            raise ConfigError(
                f"the feed's reconnect delay ({self.backoff_base}s) must be positive and at most its cap "
                f"({self.backoff_cap}s)"
            )
        if self.subscribe_interval < 0:
            raise ConfigError(f"the feed's subscribe interval ({self.subscribe_interval}s) cannot be negative")
        if self.connects_per_minute < 1 or self.connect_timeout <= 0:
            raise ConfigError("the feed needs at least one connection a minute and a positive connect timeout")


# ---------------------------------------------------------------------------------------------- notices


@dataclass(frozen=True)
class Connected:
    """Subscribed (or, for Hydromancer, the session restored) and receiving."""

    url: str
    """Masked: no key."""
    resumed: bool
    """Hydromancer restored our session: its replay covers up to 30 s of the outage, overlapping live data."""
    down_for: float | None
    """Seconds since the previous connection ended (what a source may need to fill); None on the first."""


@dataclass(frozen=True)
class Disconnected:
    """The connection ended; nothing is seen until the next :class:`Connected`."""

    reason: str
    lasted: float
    """Seconds the connection was up."""


@dataclass(frozen=True)
class Gap:
    """Hydromancer's ``seq`` jumped: ``received - expected`` messages of this connection were lost."""

    expected: int
    received: int

    @property
    def missed(self) -> int:
        return self.received - self.expected


@dataclass(frozen=True)
class Malformed:
    """A frame that did not decode was skipped: whatever it carried is lost to this connection, and a source that
    can read it again (over REST) should."""


FeedNotice = Connected | Disconnected | Gap | Malformed
DataMessage = (
    UserFills | Trades | GoldRushLiquidationFills | HydromancerLiquidationFills | ChannelError | HydromancerError
)
FeedEvent = FeedNotice | DataMessage | Pong


@dataclass
class FeedStats:
    """Counters for metrics and the health check."""

    connects: int = 0
    """Successful upgrades."""
    reconnects: int = 0
    """Upgrades after the first."""
    disconnects: int = 0
    connect_failures: int = 0
    messages: int = 0
    malformed: int = 0
    ignored: int = 0
    """Well-formed frames of kinds we do not know."""
    gaps: int = 0
    last_message_at: float | None = None
    connected: bool = False
    down_since: float | None = None
    """When the feed last lost (or had not yet got) a connection; None while connected."""


# ---------------------------------------------------------------------------------------------- pure decisions

HeartbeatAction = Literal["wait", "ping", "replace"]


def heartbeat(
    now: float, last_received: float, last_ping: float | None, *, ping_after: float, silence_limit: float
) -> tuple[HeartbeatAction, float]:
    """What to do about a connection's silence, and how long until this should be asked again.

    One ping per silent spell: a ping sent after the last frame received has not been answered yet.
    """
    silent = now - last_received
    if silent >= silence_limit:
        return "replace", 0.0
    pinged = last_ping is not None and last_ping >= last_received
    if not pinged and silent >= ping_after:
        return "ping", 0.0
    until = silence_limit - silent if pinged else min(ping_after, silence_limit) - silent
    return "wait", until


def subscribe_wait(now: float, last_sent: float | None, interval: float) -> float:
    """Seconds until the next paced subscribe request may go (0: now)."""
    if last_sent is None or interval <= 0:
        return 0.0
    return max(0.0, last_sent + interval - now)


def next_seq(expected: int, seq: int | None) -> tuple[int, Gap | None]:
    """The seq expected after a message numbered ``seq``, and the gap it reveals (if it skipped some)."""
    if seq is None:
        return expected, None
    gap = Gap(expected, seq) if seq > expected else None
    return max(expected, seq + 1), gap


def feed_healthy(stats: FeedStats, now: float, unhealthy_after: float) -> bool:
    """Connected, or not disconnected for longer than ``unhealthy_after`` (a reconnect takes a moment)."""
    if stats.connected:
        return True
    return stats.down_since is not None and now - stats.down_since <= unhealthy_after


def mask_url(url: str) -> str:
    """The URL with every query value replaced by ``***``: safe to log (keys and session ids travel there)."""
    parts = urlsplit(url)
    if not parts.query:
        return url
    masked = urlencode([(name, "***") for name, _ in parse_qsl(parts.query, keep_blank_values=True)], safe="*")
    return urlunsplit(parts._replace(query=masked))


def url_secrets(url: str) -> tuple[str, ...]:
    """The query values of ``url``, as they appear raw and decoded, longest first (so a prefix never hides one)."""
    raw = [value for pair in urlsplit(url).query.split("&") if (value := pair.partition("=")[2])]
    decoded = [value for _, value in parse_qsl(urlsplit(url).query) if value]
    return tuple(sorted(set(raw + decoded), key=len, reverse=True))


def redact(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every secret replaced by ``***``, on one bounded line (error texts from below end up in logs)."""
    for secret in secrets:
        text = text.replace(secret, "***")
    return " ".join(text.split())[:_SHOWN]


def with_session(url: str, session_id: str | None) -> str:
    """``url`` naming a Hydromancer session to resume (replacing any previous one)."""
    if session_id is None:
        return url
    parts = urlsplit(url)
    query = [(name, value) for name, value in parse_qsl(parts.query, keep_blank_values=True) if name != SESSION_PARAM]
    return urlunsplit(parts._replace(query=urlencode([*query, (SESSION_PARAM, session_id)])))


# ---------------------------------------------------------------------------------------------- transport


class WebSocketFeed:
    """One provider's feed, reconnected for ever; read it with ``async for event in feed.events()``.

    ``clock`` and ``sleep`` are injectable so tests of the backoff and the connection cap run in no time.
    """

    def __init__(
        self,
        settings: FeedSettings,
        *,
        session: aiohttp.ClientSession | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rng: random.Random | None = None,
    ) -> None:
        settings.check()
        self.settings = settings
        self.url = mask_url(settings.url)
        self.stats = FeedStats(down_since=clock())
        self.session_id: str | None = None
        """Hydromancer's session, named on every reconnect once known."""
        self._secrets = url_secrets(settings.url)
        self._http = session
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        """The open connection, for :meth:`barrier` and :meth:`follow`."""
        self._sent: set[Subscription] = set()
        """The subscriptions requested on the open connection (so :meth:`follow` changes only what differs)."""
        self._clock = clock
        self._sleep = sleep
        self._backoff = Backoff(settings.backoff_base, settings.backoff_cap, rng or random.Random())
        self._window = SlidingWindow(settings.connects_per_minute, 60.0)
        self._delay = 0.0
        self._last_down: float | None = None

    async def barrier(self) -> bool:
        """Send the dialect's ping on the open connection; its :class:`Pong` comes back behind every message the
        server queued before it read the ping. False when there is no connection to send on."""
        ws = self._ws
        if ws is None or ws.closed:
            return False
        try:
            await self._send(ws, encode_ping(self.settings.dialect))
        except (aiohttp.ClientError, OSError, RuntimeError):
            return False
        return True

    async def follow(self, subscriptions: Iterable[Subscription]) -> bool:
        """Follow ``subscriptions`` from now on: a reconnect subscribes them, and on the open connection the ones
        that left are unsubscribed and the new ones subscribed (the others keep flowing, untouched). False when
        there was no open connection to change (the next connect subscribes the new set). For the public dialect
        (a resumed Hydromancer session's subscriptions are the server's, not known here)."""
        wanted = tuple(dict.fromkeys(subscriptions))
        changed = replace(self.settings, subscriptions=wanted)
        changed.check()  # before it replaces the settings: a refused change leaves the feed as it was
        self.settings = changed
        ws = self._ws
        if ws is None or ws.closed:
            return False
        try:
            for subscription in [s for s in self._sent if s not in wanted]:
                self._sent.discard(subscription)
                await self._send(ws, encode_unsubscribe(self.settings.dialect, subscription))
            for subscription in wanted:
                await self._subscribe(ws, subscription)
        except (aiohttp.ClientError, OSError, RuntimeError):
            return False  # the connection is going: the reconnect subscribes the new set
        return True

    async def _subscribe(self, ws: aiohttp.ClientWebSocketResponse, subscription: Subscription) -> None:
        """Request ``subscription`` on ``ws`` unless it was already, or :meth:`follow` dropped it meanwhile (a
        connection's first subscriptions go out one by one, while :meth:`follow` may change the set)."""
        if subscription in self._sent or subscription not in self.settings.subscriptions:
            return
        self._sent.add(subscription)
        await self._send(ws, encode_subscribe(self.settings.dialect, subscription))

    def is_healthy(self, now: float | None = None) -> bool:
        return feed_healthy(self.stats, self._clock() if now is None else now, self.settings.unhealthy_after)

    def until_unhealthy(self) -> float | None:
        """Seconds until a disconnected feed turns unhealthy (a source's wait ends then, so the health check
        says so on time, not at the next push); None while connected or once unhealthy already."""
        if self.stats.connected or self.stats.down_since is None:
            return None
        left = self.stats.down_since + self.settings.unhealthy_after - self._clock()
        return left if left >= 0 else None

    def _redact(self, text: str) -> str:
        return redact(text, (*self._secrets, *((self.session_id,) if self.session_id else ())))

    async def _wait_turn(self) -> None:
        """Wait the backoff's delay, then until the rolling minute has room for one more connection."""
        if self._delay > 0:
            await self._sleep(self._delay)
        while (wait := self._window.wait(self._clock())) > 0:
            await self._sleep(wait)
        self._window.record(self._clock())

    async def _connect(self, http: aiohttp.ClientSession) -> aiohttp.ClientWebSocketResponse | None:
        """An open WebSocket, or None after logging why not (the caller backs off); a refused key raises."""
        settings = self.settings
        url = with_session(settings.url, self.session_id) if settings.dialect == "hydromancer" else settings.url
        try:
            async with asyncio.timeout(settings.connect_timeout):
                return await http.ws_connect(
                    url, autoping=False, heartbeat=None, max_msg_size=settings.max_message_bytes
                )
        except aiohttp.WSServerHandshakeError as exc:
            if exc.status in (401, 403):
                raise FeedRejected(
                    f"the {settings.dialect} feed at {self.url} refused the API key (HTTP {exc.status}): "
                    "check the key in the feed URL"
                ) from None
            reason = f"upgrade refused (HTTP {exc.status})"
        except TimeoutError:
            reason = f"no connection within {settings.connect_timeout:g}s"
        except (aiohttp.ClientError, OSError) as exc:
            reason = self._redact(f"{type(exc).__name__}: {exc}")
        self.stats.connect_failures += 1
        self._delay = self._backoff.next_delay()
        log.warning("feed %s: cannot connect (%s); retrying in %.1fs", self.url, reason, self._delay)
        return None

    async def _send(self, ws: aiohttp.ClientWebSocketResponse, payload: bytes) -> None:
        await ws.send_str(payload.decode())

    async def events(self) -> AsyncGenerator[FeedEvent, None]:
        """Data messages and notices, for ever; stop by leaving the ``async for`` (the connection is closed)."""
        http = self._http or aiohttp.ClientSession()
        try:
            while True:
                await self._wait_turn()
                ws = await self._connect(http)
                if ws is None:
                    continue
                self._ws = ws
                self._sent = set()
                try:
                    async with aclosing(self._session(ws)) as session_events:
                        async for event in session_events:
                            yield event
                finally:
                    self._ws = None
                    await ws.close()
        finally:
            if self._http is None:
                await http.close()

    async def _session(self, ws: aiohttp.ClientWebSocketResponse) -> AsyncGenerator[FeedEvent, None]:
        """One connection's events, ending with its :class:`Disconnected` (the caller closes ``ws``)."""
        settings, stats = self.settings, self.stats
        opened = self._clock()
        stats.connects += 1
        if stats.connects > 1:
            stats.reconnects += 1
        requested = self.session_id
        last_received, last_ping = opened, None
        expected, malformed, announced = 1, 0, False
        reason = "closed"
        # Hydromancer first says whether it restored our session (then :meth:`_handle` subscribes, if need be).
        unsent = deque(settings.subscriptions if settings.dialect != "hydromancer" else ())
        last_subscribe: float | None = None
        try:
            if settings.dialect != "hydromancer":
                while unsent and subscribe_wait(self._clock(), last_subscribe, settings.subscribe_interval) == 0:
                    await self._subscribe(ws, unsent.popleft())
                    last_subscribe = self._clock()
                announced = True
                yield self._announce(opened, resumed=False)
            while True:
                now = self._clock()
                if unsent and subscribe_wait(now, last_subscribe, settings.subscribe_interval) == 0:
                    await self._subscribe(ws, unsent.popleft())
                    last_subscribe = now
                    continue
                action, wait = heartbeat(
                    now, last_received, last_ping, ping_after=settings.ping_after, silence_limit=settings.silence_limit
                )
                if unsent:
                    wait = min(wait, subscribe_wait(now, last_subscribe, settings.subscribe_interval))
                if action == "replace":
                    reason = f"silent for {now - last_received:.1f}s"
                    break
                if action == "ping":
                    await ws.ping()
                    if settings.dialect != "hydromancer":
                        await self._send(ws, encode_ping(settings.dialect))
                    last_ping = now
                    continue
                try:
                    frame = await ws.receive(timeout=wait)
                except TimeoutError:
                    continue
                now = self._clock()
                if frame.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSING, aiohttp.WSMsgType.CLOSED):
                    reason = f"closed by the server, code {ws.close_code}"
                    break
                if frame.type is aiohttp.WSMsgType.ERROR:
                    reason = self._redact(f"connection error: {frame.data!r}")
                    break
                last_received = now
                if frame.type is aiohttp.WSMsgType.PING:
                    await ws.pong(frame.data)
                    continue
                if frame.type is not aiohttp.WSMsgType.TEXT and frame.type is not aiohttp.WSMsgType.BINARY:
                    continue
                stats.messages += 1
                stats.last_message_at = now
                try:
                    message = decode(settings.dialect, frame.data)
                except FeedMessageError as exc:
                    stats.malformed += 1
                    malformed += 1
                    if malformed <= _MALFORMED_LOGGED:
                        log.warning("feed %s: skipped a frame: %s", self.url, self._redact(str(exc)))
                    yield Malformed()
                    continue
                for event in await self._handle(ws, message, requested):
                    if isinstance(event, Connected):
                        announced = True
                    elif isinstance(event, HydromancerLiquidationFills):
                        expected, gap = next_seq(expected, event.seq)
                        if gap is not None:
                            stats.gaps += 1
                            log.warning(
                                "feed %s: %d message(s) lost (seq %d after %d)",
                                self.url,
                                gap.missed,
                                gap.received,
                                gap.expected - 1,
                            )
                            yield gap
                    yield event
        except (aiohttp.ClientError, OSError, RuntimeError) as exc:  # RuntimeError: sending on a closing socket
            reason = self._redact(f"{type(exc).__name__}: {exc}")
        finally:
            down = self._clock()
            stats.connected = False
            stats.disconnects += 1
            stats.down_since = self._last_down = down
            self._delay = self._backoff.next_delay()
        if malformed > _MALFORMED_LOGGED:
            log.warning("feed %s: %d malformed frames skipped on this connection", self.url, malformed)
        log.warning("feed %s: disconnected after %.1fs (%s)", self.url, down - opened, reason)
        if announced:
            yield Disconnected(reason, down - opened)

    def _announce(self, now: float, *, resumed: bool) -> Connected:
        self.stats.connected = True
        self.stats.down_since = None
        down_for = None if self._last_down is None else now - self._last_down
        log.info("feed %s: connected%s", self.url, " (session resumed)" if resumed else "")
        return Connected(self.url, resumed, down_for)

    async def _handle(
        self, ws: aiohttp.ClientWebSocketResponse, message: FeedMessage, requested: str | None
    ) -> list[FeedEvent]:
        """Answer what is the transport's business (pings, sessions); return what the caller sees."""
        dialect = self.settings.dialect
        if isinstance(message, Pong):
            return [message]  # the answer to a source's barrier, or to our heartbeat: either way, harmless
        if isinstance(message, Unrecognised):
            self.stats.ignored += 1
            return []
        if isinstance(message, ServerPing):
            await self._send(ws, encode_pong(dialect))
            return []
        self._backoff.reset()  # the connection works: the next failure starts from the base delay again
        if isinstance(message, SessionStarted):
            resumed = requested is not None and message.session_id == requested
            self.session_id = message.session_id
            if not resumed:
                for subscription in self.settings.subscriptions:
                    await self._subscribe(ws, subscription)
            return [self._announce(self._clock(), resumed=resumed)]
        if isinstance(message, SubscriptionResponse):
            return []
        if isinstance(message, ChannelError | HydromancerError):
            text = message.data if isinstance(message, ChannelError) else message.message
            log.warning("feed %s: the server refused a request: %s", self.url, self._redact(repr(text)))
        return [message]
