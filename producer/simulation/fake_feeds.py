"""Fake WebSocket feeds on 127.0.0.1, one per dialect, scripted from Python, for tests and demos of the transport.

Why a real server rather than a mocked socket: the transport's heartbeats, silence detection, reconnects, session
resumes and key handling only run against real upgrades, real close frames and real refusals. Endpoints:

- ``/ws``: the public Hyperliquid dialect. ``userFills`` subscriptions get a snapshot of the user's fills so far
  (``isSnapshot: true``) then live pushes; ``trades`` subscriptions get pushed trades; ``{"method": "ping"}`` gets
  ``{"channel": "pong"}``; a bad subscription or an 11th distinct user gets ``{"channel": "error"}``. A connection
  from which nothing arrives for ``idle_close`` seconds is closed, as the exchange closes quiet ones.
- ``/hydromancer/ws?token=``: 401 on a wrong token; ``{"type": "connected", "sessionId"}`` first; a ping every
  ``ping_interval`` seconds, and a connection that did not answer the previous one is closed; ``liquidationFills``
  per block with ``seq`` (from 1 per connection) and ``cursor``. Reconnecting with ``&sessionId=`` of a known
  session restores its subscription and replays the blocks it missed that are at most ``replay_window`` seconds
  old, starting ``replay_overlap`` blocks early: the overlap with what was delivered is deliberate, as the
  provider warns.
- ``/goldrush/ws?key=``: 401 on a wrong key; the public wire plus ``liquidationFills`` (``[address, fill]``
  pairs in ``data.fills``), live only.

Control (see :class:`FakeFeeds`): :meth:`~FakeFeeds.push` a block of fills, :meth:`~FakeFeeds.burst` blocks with a
drop in the middle, :meth:`~FakeFeeds.drop_all`, :meth:`~FakeFeeds.stall`, :meth:`~FakeFeeds.send_garbage`,
:meth:`~FakeFeeds.refuse`, :meth:`~FakeFeeds.lose_next`, :meth:`~FakeFeeds.garble_next`. Fills are the exchange's
JSON shapes, e.g. from :class:`~producer.simulation.scenarios.ScenarioBuilder` through :func:`blocks_of`.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from typing import Any

import msgspec
from aiohttp import WSMsgType, web

from producer.feed_messages import Dialect
from producer.simulation.scenarios import Fill, Scenario, Trade

__all__ = ["Block", "FakeFeeds", "blocks_of"]

Pair = tuple[str, Fill]
"""``(address, fill)``: the address whose fill it is."""

FIRST_BLOCK = 758_800_641
TOO_MANY_USERS = "Cannot track more than {limit} total users."
_PATHS: dict[str, Dialect] = {"/ws": "public", "/hydromancer/ws": "hydromancer", "/goldrush/ws": "goldrush"}
_encoder = msgspec.json.Encoder()
"""Compact JSON, as ``json.dumps(..., separators=(",", ":"))`` writes it, a few times faster: in a bench the fake
shares a core with what measures the producer."""


def blocks_of(scenario: Scenario) -> list[list[Pair]]:
    """A scenario's fills as blocks (one per block time, oldest first), as a node or a provider batches them."""
    by_time: dict[int, list[Pair]] = {}
    for address, fills in scenario.fills.items():
        for fill in fills:
            by_time.setdefault(fill["time"], []).append((address, fill))
    return [sorted(by_time[t], key=lambda pair: pair[1]["tid"]) for t in sorted(by_time)]


@dataclass(frozen=True)
class Block:
    """One pushed block of liquidation fills, kept for Hydromancer's replay."""

    number: int
    at: float
    """Server clock when pushed: what the replay window is measured on."""
    pairs: list[Pair]

    @property
    def cursor(self) -> str:
        return f"{self.number}:{self.pairs[0][1]['time']}:0"


@dataclass(eq=False)
class _Session:
    id: str
    subscribed: bool = False
    delivered: int = 0
    """Blocks of the log this session has been sent."""


@dataclass(eq=False)
class _Connection:
    dialect: Dialect
    ws: web.WebSocketResponse
    request: web.Request
    users: set[str] = field(default_factory=set)
    coins: set[str] = field(default_factory=set)
    liquidations: bool = False
    session: _Session | None = None
    seq: int = 0
    ponged: bool = True
    queue: asyncio.Lock = field(default_factory=asyncio.Lock)
    """Held while one block's pushes are sent: a pong is queued behind them, as on a real server."""


class FakeFeeds:
    """The three fake feeds on one port; every control method acts at once on the live connections."""

    def __init__(
        self,
        *,
        token: str = "hydromancer-test-token",
        key: str = "goldrush-test-key",
        max_users: int = 10,
        ping_interval: float = 60.0,
        idle_close: float = 60.0,
        replay_window: float = 30.0,
        replay_overlap: int = 1,
        clock: Callable[[], float] = time.monotonic,
        history: dict[str, list[Fill]] | None = None,
    ) -> None:
        self.token = token
        self.key = key
        self.max_users = max_users
        self.ping_interval = ping_interval
        self.idle_close = idle_close
        self.replay_window = replay_window
        self.replay_overlap = replay_overlap
        self.clock = clock
        self.base_url = ""
        self.history: dict[str, list[Fill]] = {} if history is None else history
        """Every pushed fill per address: what a ``userFills`` snapshot shows. The fake exchange passes its own
        fills here, so what is pushed is also what ``userFillsByTime`` answers (a gap-fill reads the same truth)."""
        self.blocks: list[Block] = []
        self.sessions: dict[str, _Session] = {}
        self.connections: list[_Connection] = []
        self.upgrades: list[tuple[str, dict[str, str]]] = []
        """(path, query) of every connection attempt, accepted or not, in order."""
        self.upgrade_times: list[float] = []
        """When each attempt arrived, on the fake's ``clock``."""
        self.accepted = 0
        self.refused = 0
        self.received: list[Any] = []
        """Every JSON request a client sent, in order."""
        self._stalled = False
        self._refuse_times = 0
        self._refuse_until = 0.0
        self._refuse_status = 503
        self._lose = 0
        self._garble = 0
        self._runner: web.AppRunner | None = None

    # ------------------------------------------------------------------ URLs
    @property
    def public_url(self) -> str:
        return self.base_url.replace("http://", "ws://") + "/ws"

    def hydromancer_url(self, token: str | None = None) -> str:
        return f"{self.base_url.replace('http://', 'ws://')}/hydromancer/ws?token={token or self.token}"

    def goldrush_url(self, key: str | None = None) -> str:
        return f"{self.base_url.replace('http://', 'ws://')}/goldrush/ws?key={key or self.key}"

    def live(self, dialect: Dialect) -> list[_Connection]:
        return [conn for conn in self.connections if conn.dialect == dialect and not conn.ws.closed]

    # ------------------------------------------------------------------ control
    async def push(self, pairs: Sequence[Pair]) -> None:
        """One block: each owner's fills to its ``userFills`` subscribers, its liquidation fills to the providers."""
        by_user: dict[str, list[Fill]] = {}
        for address, fill in pairs:
            by_user.setdefault(address.lower(), []).append(fill)
            self.history.setdefault(address.lower(), []).append(fill)
        if not self._stalled:
            for conn in self.live("public"):
                async with conn.queue:
                    await self._push_users(conn, by_user)
        liquidations = [(address, fill) for address, fill in pairs if fill.get("liquidation")]
        if not liquidations:
            return
        self.blocks.append(Block(FIRST_BLOCK + len(self.blocks), self.clock(), liquidations))
        if self._stalled:
            return
        for conn in self.live("goldrush"):
            if conn.liquidations:
                await self._send(conn, {"channel": "liquidationFills", "data": {"fills": liquidations}})
        for conn in self.live("hydromancer"):
            await self._catch_up(conn)

    async def _push_users(self, conn: _Connection, by_user: dict[str, list[Fill]]) -> None:
        for user in conn.users & by_user.keys():
            message = {"channel": "userFills", "data": {"user": user, "fills": by_user[user]}}
            if self._garble:
                self._garble -= 1
                with suppress(ConnectionError, RuntimeError):
                    await conn.ws.send_str(json.dumps(message)[:40])
                continue
            await self._send(conn, message)

    async def push_trades(self, coin: str, trades: Sequence[Trade]) -> None:
        """Public trades of ``coin`` to its ``trades`` subscribers."""
        if self._stalled:
            return
        for conn in self.live("public"):
            if coin in conn.coins:
                await self._send(conn, {"channel": "trades", "data": list(trades)})

    async def burst(self, blocks: Iterable[Sequence[Pair]], *, drop_after: int | None = None) -> None:
        """Push ``blocks`` in order; after ``drop_after`` of them, drop every connection and push the rest."""
        for index, pairs in enumerate(blocks):
            if index == drop_after:
                await self.drop_all()
            await self.push(pairs)
            await asyncio.sleep(0)

    async def drop_all(self, *, abrupt: bool = False) -> None:
        """Close every connection: with a 1012 close frame (a restart), or ``abrupt``ly, no frame, like a crash."""
        for conn in list(self.connections):
            if abrupt and conn.request.transport is not None:
                conn.request.transport.close()
            else:
                with suppress(Exception):
                    await conn.ws.close(code=1012, message=b"restarting")

    def stall(self, stalled: bool = True) -> None:
        """Stop (or resume) sending anything and answering pings, connections left open: a hung server."""
        self._stalled = stalled

    async def send_garbage(self, frames: Iterable[str | bytes]) -> None:
        """Send raw frames (text or binary) to every live connection."""
        for frame in frames:
            for conn in [c for c in self.connections if not c.ws.closed]:
                with suppress(ConnectionError, RuntimeError):
                    if isinstance(frame, bytes):
                        await conn.ws.send_bytes(frame)
                    else:
                        await conn.ws.send_str(frame)

    def refuse(self, *, times: int = 0, seconds: float = 0.0, status: int = 503) -> None:
        """Answer the next ``times`` upgrades, or all for ``seconds``, with HTTP ``status`` instead of a WebSocket."""
        self._refuse_times = times
        self._refuse_until = self.clock() + seconds if seconds else 0.0
        self._refuse_status = status

    def garble_next(self, pushes: int = 1) -> None:
        """Send the next ``pushes`` public ``userFills`` pushes cut short (not JSON): their fills reach no
        subscriber, though the exchange (``userFillsByTime``) has them."""
        self._garble += pushes

    def lose_next(self, messages: int = 1) -> None:
        """Number the next Hydromancer messages as if ``messages`` before them were lost in transit (a seq jump)."""
        self._lose += messages

    # ------------------------------------------------------------------ serving
    async def _send(self, conn: _Connection, payload: Any) -> bool:
        if conn.ws.closed:
            return False
        try:
            await conn.ws.send_str(_encoder.encode(payload).decode())
        except (ConnectionError, RuntimeError):
            return False
        return True

    async def _catch_up(self, conn: _Connection, start: int | None = None) -> None:
        """Send a Hydromancer session the blocks it has not been sent (from ``start`` when replaying)."""
        session = conn.session
        if session is None or not session.subscribed or self._stalled:
            return
        index = session.delivered if start is None else start
        while index < len(self.blocks):
            block = self.blocks[index]
            conn.seq += 1 + self._lose
            self._lose = 0
            message = {
                "type": "liquidationFills",
                "channel": "liquidationFills",
                "seq": conn.seq,
                "cursor": block.cursor,
                "fills": block.pairs,
            }
            if not await self._send(conn, message):
                return
            index += 1
            session.delivered = max(session.delivered, index)

    def _refusing(self) -> bool:
        if self._refuse_times > 0:
            self._refuse_times -= 1
            return True
        return self.clock() < self._refuse_until

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        dialect = _PATHS[request.path]
        self.upgrades.append((request.path, dict(request.query)))
        self.upgrade_times.append(self.clock())
        if self._refusing():
            self.refused += 1
            return web.Response(status=self._refuse_status, text="refusing connections")
        expected = {"hydromancer": ("token", self.token), "goldrush": ("key", self.key)}.get(dialect)
        if expected is not None and request.query.get(expected[0]) != expected[1]:
            self.refused += 1
            return web.Response(status=401, text="invalid API key")
        ws = web.WebSocketResponse(autoping=False, max_msg_size=64 * 2**20)
        await ws.prepare(request)
        self.accepted += 1
        conn = _Connection(dialect, ws, request)
        self.connections.append(conn)
        pinger = asyncio.create_task(self._ping(conn)) if dialect == "hydromancer" else None
        try:
            if dialect == "hydromancer":
                await self._open_session(conn, request.query.get("sessionId"))
            await self._serve(conn)
        finally:
            if pinger is not None:
                pinger.cancel()
                with suppress(asyncio.CancelledError):
                    await pinger
            self.connections.remove(conn)
            await ws.close()
        return ws

    async def _open_session(self, conn: _Connection, requested: str | None) -> None:
        session = self.sessions.get(requested) if requested else None
        resumed = session is not None
        if session is None:
            session = _Session(uuid.uuid4().hex, delivered=len(self.blocks))
            self.sessions[session.id] = session
        conn.session = session
        await self._send(conn, {"type": "connected", "sessionId": session.id})
        if resumed:
            now = self.clock()
            window = next(
                (i for i, block in enumerate(self.blocks) if block.at >= now - self.replay_window), len(self.blocks)
            )
            await self._catch_up(conn, start=max(window, session.delivered - self.replay_overlap, 0))

    async def _serve(self, conn: _Connection) -> None:
        idle = self.idle_close if conn.dialect != "hydromancer" else None
        while True:
            try:
                frame = await conn.ws.receive(timeout=idle)
            except TimeoutError:
                return  # quiet client: the exchange closes such connections
            if frame.type is WSMsgType.PING:
                if not self._stalled:
                    await conn.ws.pong(frame.data)
                continue
            if frame.type is not WSMsgType.TEXT:
                if frame.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED, WSMsgType.ERROR):
                    return
                continue
            if self._stalled:
                continue
            try:
                request = json.loads(frame.data)
            except ValueError:
                request = None
            self.received.append(request)
            if conn.dialect == "hydromancer":
                await self._hydromancer_request(conn, request)
            else:
                await self._public_request(conn, request)

    async def _public_request(self, conn: _Connection, request: Any) -> None:
        method = request.get("method") if isinstance(request, dict) else None
        if method == "ping":
            async with conn.queue:
                await self._send(conn, {"channel": "pong"})
            return
        subscription = request.get("subscription") if isinstance(request, dict) else None
        kind = subscription.get("type") if isinstance(subscription, dict) else None
        if method == "unsubscribe" and isinstance(subscription, dict) and conn.dialect == "public":
            await self._public_unsubscribe(conn, subscription)
            return
        if method != "subscribe" or not isinstance(subscription, dict):
            await self._send(
                conn, {"channel": "error", "data": f"Error parsing JSON into valid websocket request: {request}"}
            )
            return
        ack = {"channel": "subscriptionResponse", "data": {"method": "subscribe", "subscription": subscription}}
        if conn.dialect == "public" and kind == "userFills" and isinstance(subscription.get("user"), str):
            user = subscription["user"].lower()
            tracked = set().union(*(c.users for c in self.live("public")))
            if user not in tracked and len(tracked) >= self.max_users:
                await self._send(conn, {"channel": "error", "data": TOO_MANY_USERS.format(limit=self.max_users)})
                return
            conn.users.add(user)
            await self._send(conn, ack)
            snapshot = {"user": user, "fills": self.history.get(user, []), "isSnapshot": True}
            await self._send(conn, {"channel": "userFills", "data": snapshot})
        elif conn.dialect == "public" and kind == "trades" and isinstance(subscription.get("coin"), str):
            conn.coins.add(subscription["coin"])
            await self._send(conn, ack)
        elif conn.dialect == "goldrush" and kind == "liquidationFills":
            conn.liquidations = True
            await self._send(conn, ack)
        else:
            await self._send(conn, {"channel": "error", "data": f"Invalid subscription {json.dumps(subscription)}"})

    async def _public_unsubscribe(self, conn: _Connection, subscription: dict[str, Any]) -> None:
        """End a ``userFills`` or ``trades`` subscription as the exchange does: acknowledged, and the user's slot
        freed for another (an unsubscribe of what was not subscribed is refused)."""
        kind, user, coin = subscription.get("type"), subscription.get("user"), subscription.get("coin")
        if kind == "userFills" and isinstance(user, str) and user.lower() in conn.users:
            conn.users.discard(user.lower())
        elif kind == "trades" and isinstance(coin, str) and coin in conn.coins:
            conn.coins.discard(coin)
        else:
            await self._send(conn, {"channel": "error", "data": f"Already unsubscribed: {json.dumps(subscription)}"})
            return
        ack = {"channel": "subscriptionResponse", "data": {"method": "unsubscribe", "subscription": subscription}}
        await self._send(conn, ack)

    async def _hydromancer_request(self, conn: _Connection, request: Any) -> None:
        kind = request.get("type") if isinstance(request, dict) else None
        if kind == "pong":
            conn.ponged = True
            return
        subscription = request.get("subscription") if isinstance(request, dict) else None
        if kind == "subscribe" and isinstance(subscription, dict) and subscription.get("type") == "liquidationFills":
            if conn.session is not None and not conn.session.subscribed:
                conn.session.subscribed = True
                conn.session.delivered = len(self.blocks)
            return
        await self._send(conn, {"type": "error", "message": f"invalid request: {json.dumps(request)[:200]}"})

    async def _ping(self, conn: _Connection) -> None:
        """Hydromancer's heartbeat: ping every interval; a client that left the last ping unanswered is dropped."""
        while not conn.ws.closed:
            await asyncio.sleep(self.ping_interval)
            if self._stalled:
                continue
            if not conn.ponged:
                await conn.ws.close(code=1008, message=b"pong timeout")
                return
            conn.ponged = False
            await self._send(conn, {"type": "ping"})

    # ------------------------------------------------------------------ lifecycle
    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Bind (a free port by default) and serve; returns the base URL, e.g. ``http://127.0.0.1:40123``."""
        if self._runner is not None:
            raise RuntimeError("already started")
        app = web.Application()
        self.add_routes(app)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        await web.TCPSite(runner, host, port).start()
        self._runner = runner
        bound_host, bound_port = runner.addresses[0][:2]
        self.base_url = f"http://{bound_host}:{bound_port}"
        return self.base_url

    def add_routes(self, app: web.Application) -> None:
        """Serve the feeds on another app's port (the fake exchange serves ``/ws`` beside ``/info``, as mainnet)."""
        for path in _PATHS:
            app.router.add_get(path, self._handle)

    async def stop(self) -> None:
        self._stalled = False
        await self.drop_all()
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()
        self.base_url = ""

    async def __aenter__(self) -> FakeFeeds:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
