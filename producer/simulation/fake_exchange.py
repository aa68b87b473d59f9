"""In-memory fake of the Hyperliquid info API (``POST /info``), for tests and demos of the producer.

Why a real HTTP server rather than a mocked client: the producer's retry, timeout, paging and decoding code
paths only run against real sockets, real status codes and real broken bodies. The fake serves the shapes and
paging rules of mainnet (see :mod:`producer.simulation.scenarios`) and can inject faults on demand.

Usage in a test::

    async with running_fake(demo_scenario()) as fake:
        fake.fail_next(RATE_LIMITED, times=2, match=lambda body: body.get("type") == "userFillsByTime")
        ...  # point the producer at fake.url, then assert on fake.requests
        assert heaviest_minute(fake.charges) <= 1150  # the request weight the exchange would have counted

As a demo server::

    python -m producer.simulation.fake_exchange --port 8080 --scenario demo
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from typing import Any, Literal

from aiohttp import web

from producer.ratelimit import BASE_WEIGHT, response_weight
from producer.simulation.fake_feeds import FakeFeeds
from producer.simulation.scenarios import DEMO_WATCHLIST, Scenario, coin_spec, demo_scenario

__all__ = [
    "BAD_GATEWAY",
    "DISCONNECT",
    "EXTRA_FIELD",
    "NOT_JSON",
    "RATE_LIMITED",
    "SERVER_ERROR",
    "TRUNCATED_JSON",
    "UNAVAILABLE",
    "WRONG_TYPES",
    "Charge",
    "FakeHyperliquid",
    "Fault",
    "heaviest_minute",
    "request_weight",
    "running_fake",
]

FaultKind = Literal["status", "delay", "raw", "json", "wrong_types", "extra_field", "disconnect"]

_DEFAULT_STATUS_BODIES = {
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
}
_DESERIALIZE_ERROR = "Failed to deserialize the JSON body into the target type"


@dataclass(frozen=True, eq=False)
class Fault:
    """One injected misbehaviour, consumed by one matching request (see :meth:`FakeHyperliquid.fail_next`).

    Build with the class methods; the fields are an implementation detail a test rarely needs.
    """

    kind: FaultKind
    status: int = 200
    body: bytes = b""
    seconds: float = 0.0
    payload: Any = None
    field: str = ""

    @classmethod
    def http(cls, status: int, body: str | None = None) -> Fault:
        """Answer ``status`` with a text body (429 "Too Many Requests", 500, 502, 503, ...)."""
        text = body if body is not None else _DEFAULT_STATUS_BODIES.get(status, "error")
        return cls("status", status=status, body=text.encode())

    @classmethod
    def delay(cls, seconds: float) -> Fault:
        """Wait ``seconds`` then answer normally: long enough to trip the client's timeout."""
        return cls("delay", seconds=seconds)

    @classmethod
    def malformed(cls, body: bytes = b'{"coin": "BT') -> Fault:
        """HTTP 200, ``Content-Type: application/json``, but a body that does not parse (truncated by default)."""
        return cls("raw", body=body)

    @classmethod
    def json(cls, payload: Any) -> Fault:
        """HTTP 200 with an arbitrary valid JSON document instead of the real answer (e.g. ``[1, 2, 3]``)."""
        return cls("json", payload=payload)

    @classmethod
    def wrong_types(cls) -> Fault:
        """The real answer, but every item's ``px`` is an object and ``time`` a string (valid JSON, wrong schema).

        An empty answer is replaced by one such item, so the fault is always observable.
        """
        return cls("wrong_types")

    @classmethod
    def extra_field(cls, name: str = "someNewField", value: Any = None) -> Fault:
        """The real answer with an extra unknown key in every item: a tolerant decoder must ignore it."""
        return cls("extra_field", field=name, payload={"nested": [1, "x"]} if value is None else value)

    @classmethod
    def disconnect(cls) -> Fault:
        """Close the connection without any answer (the client sees ``ServerDisconnectedError``)."""
        return cls("disconnect")


RATE_LIMITED = Fault.http(429)
SERVER_ERROR = Fault.http(500)
BAD_GATEWAY = Fault.http(502)
UNAVAILABLE = Fault.http(503)
TRUNCATED_JSON = Fault.malformed()
NOT_JSON = Fault.malformed(b"not json")
WRONG_TYPES = Fault.wrong_types()
EXTRA_FIELD = Fault.extra_field()
DISCONNECT = Fault.disconnect()


@dataclass(frozen=True)
class Charge:
    """The request weight the exchange counts for one info request, at the time the request arrived."""

    at: float
    """Seconds on the fake's clock (monotonic by default)."""
    weight: int


_ITEM_WEIGHTED = frozenset({"userFillsByTime", "recentTrades"})
"""The answers served here that weigh one more per 20 items; the others weigh the base alone."""


def request_weight(kind: object, answer: Any) -> int:
    """What Hyperliquid charges for an info request of type ``kind`` answered with ``answer`` (None for an error or
    a fault): the base weight, plus one per 20 items of a fills or trades list, the constants the producer's budget
    uses (:mod:`producer.ratelimit`)."""
    if kind in _ITEM_WEIGHTED and isinstance(answer, list):
        return BASE_WEIGHT + response_weight(len(answer))
    return BASE_WEIGHT


def heaviest_minute(charges: Iterable[Charge], seconds: float = 60.0) -> int:
    """The most weight in any window of ``seconds`` (a rolling minute by default): what the exchange's limit of
    1,200 per minute per IP is held against."""
    ordered = sorted(charges, key=lambda charge: charge.at)
    heaviest = total = start = 0
    for charge in ordered:
        total += charge.weight
        while charge.at - ordered[start].at >= seconds:
            total -= ordered[start].weight
            start += 1
        heaviest = max(heaviest, total)
    return heaviest


@dataclass(frozen=True)
class _Pending:
    fault: Fault
    match: Callable[[dict[str, Any]], bool] | None


class FakeHyperliquid:
    """In-memory fake of the info API. Mutable while running, so tests can add fills between polls.

    Serves ``meta`` (with or without ``dex``) and ``perpDexs`` from :attr:`universe`, ``recentTrades`` (newest
    first, at most :attr:`recent_trades_limit`) and ``userFillsByTime`` (ascending time, ``startTime <= time <=
    endTime``, at most :attr:`max_fills_per_answer` per answer, only the :attr:`reachable_fills` newest fills of
    an address reachable at all). Anything else is a 422 with a text body, like the real API. Every decoded body
    is appended to :attr:`requests`, faulted ones included, and its weight to :attr:`charges`.
    """

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.fills: dict[str, list[dict[str, Any]]] = {}
        self.trades: dict[str, list[dict[str, Any]]] = {}
        self.requests: list[dict[str, Any]] = []
        self.charges: list[Charge] = []
        """The weight of every request, in the order they arrived: see :func:`heaviest_minute`."""
        self.clock = clock
        self.max_fills_per_answer: int = 2000
        self.reachable_fills: int = 10_000
        self.recent_trades_limit: int = 10
        self.universe: dict[str, list[str]] | None = None
        """Dex name (``""`` for the main dex) -> its perp coins, as ``meta`` and ``perpDexs`` list them; None lists
        the coins of the fills and trades held, each ``dex:COIN`` on its dex (see :meth:`list_coins`)."""
        self.url: str = ""
        self.feeds = FakeFeeds(history=self.fills)
        """The WebSocket feeds on the same port (``/ws`` for the public one): ``fake.feeds.push(pairs)`` adds fills
        that both the info API and the ``userFills`` subscribers see."""
        self._faults: deque[_Pending] = deque()
        self._runner: web.AppRunner | None = None
        self._stopping: asyncio.Event | None = None

    # ------------------------------------------------------------------ data
    def add_fills(self, address: str, fills: Iterable[dict[str, Any]]) -> None:
        """Add fills (API-shape dicts, any order) to ``address``; visible to the next request."""
        self.fills.setdefault(address.lower(), []).extend(dict(fill) for fill in fills)

    def add_trades(self, coin: str, trades: Iterable[dict[str, Any]]) -> None:
        """Add public trades (any order) for ``coin``; the answer sorts them newest first."""
        self.trades.setdefault(coin, []).extend(dict(trade) for trade in trades)

    def load(self, scenario: Scenario) -> None:
        """Add everything a :class:`~producer.simulation.scenarios.Scenario` holds."""
        for address, fills in scenario.fills.items():
            self.add_fills(address, fills)
        for coin, trades in scenario.trades.items():
            self.add_trades(coin, trades)

    def list_coins(self, coins: Iterable[str]) -> None:
        """List ``coins`` as the exchange's perp markets, each ``dex:COIN`` on its builder-deployed dex, whether or
        not anything has traded yet (the exchange lists a market before its first trade)."""
        self.universe = _by_dex(coins)

    def _universe(self) -> dict[str, list[str]]:
        if self.universe is not None:
            return self.universe
        coins = set(self.trades) | {fill["coin"] for fills in self.fills.values() for fill in fills}
        return _by_dex(sorted(coins))

    # ------------------------------------------------------------------ faults
    def fail_next(self, fault: Fault, times: int = 1, match: Callable[[dict[str, Any]], bool] | None = None) -> None:
        """Queue ``fault`` for the next ``times`` requests for which ``match(body)`` is true (all if None).

        Faults are FIFO: a request consumes the oldest queued fault that matches it, if any.
        """
        for _ in range(times):
            self._faults.append(_Pending(fault, match))

    @property
    def pending_faults(self) -> int:
        """How many queued faults no request has consumed yet (lets a test assert they all fired)."""
        return len(self._faults)

    def requests_of(self, type_: str) -> list[dict[str, Any]]:
        """The recorded bodies whose ``type`` is ``type_``, in order."""
        return [body for body in self.requests if body.get("type") == type_]

    def _take_fault(self, body: dict[str, Any]) -> Fault | None:
        for pending in self._faults:
            if pending.match is None or pending.match(body):
                self._faults.remove(pending)
                return pending.fault
        return None

    # ------------------------------------------------------------------ answers
    def _user_fills(self, body: dict[str, Any]) -> list[dict[str, Any]] | None:
        user, start, end = body.get("user"), body.get("startTime"), body.get("endTime")
        if not isinstance(user, str) or not _is_int(start) or not (end is None or _is_int(end)):
            return None
        fills = sorted(self.fills.get(user.lower(), ()), key=lambda fill: (fill["time"], fill["tid"]))
        fills = fills[max(0, len(fills) - self.reachable_fills) :] if self.reachable_fills > 0 else []
        window = [fill for fill in fills if fill["time"] >= start and (end is None or fill["time"] <= end)]
        return window[: self.max_fills_per_answer]

    def _recent_trades(self, body: dict[str, Any]) -> list[dict[str, Any]] | None:
        coin = body.get("coin")
        if not isinstance(coin, str):
            return None
        trades = sorted(self.trades.get(coin, ()), key=lambda trade: (trade["time"], trade["tid"]), reverse=True)
        return trades[: self.recent_trades_limit]

    def _meta(self, body: dict[str, Any]) -> dict[str, Any] | None:
        """The mainnet shape: the universe (name, szDecimals, maxLeverage, marginTableId), its margin tables and
        the collateral token; an unknown dex is refused."""
        dex = body.get("dex", "")
        coins = self._universe().get(dex) if isinstance(dex, str) else None
        if coins is None:
            return None
        return {
            "universe": [
                {"name": coin, "szDecimals": coin_spec(coin).sz_dp, "maxLeverage": 20, "marginTableId": 20}
                for coin in coins
            ],
            "marginTables": [[20, {"description": "", "marginTiers": [{"lowerBound": "0.0", "maxLeverage": 20}]}]],
            "collateralToken": 0,
        }

    def _perp_dexs(self) -> list[dict[str, Any] | None]:
        """The main dex first as ``null``, then each builder-deployed dex with its deployer and caps."""
        dexes: list[dict[str, Any] | None] = [None]
        for index, name in enumerate(sorted(dex for dex in self._universe() if dex)):
            dexes.append(
                {
                    "name": name,
                    "fullName": f"{name.upper()} perps",
                    "deployer": f"0x{index + 1:040x}",
                    "oracleUpdater": None,
                    "feeRecipient": None,
                    "assetToStreamingOiCap": [],
                }
            )
        return dexes

    def answer(self, body: Any) -> tuple[int, Any]:
        """(status, JSON payload or error text) the fake gives for ``body``, faults aside. Public for unit tests."""
        if not isinstance(body, dict) or not isinstance(body.get("type"), str):
            return 422, _DESERIALIZE_ERROR
        kind = body["type"]
        if kind == "recentTrades":
            result = self._recent_trades(body)
        elif kind == "userFillsByTime":
            result = self._user_fills(body)
        elif kind == "meta":
            meta = self._meta(body)
            if meta is None:
                return 422, f"{_DESERIALIZE_ERROR}: unknown dex"
            return 200, meta
        elif kind == "perpDexs":
            return 200, self._perp_dexs()
        else:
            return 422, f"{_DESERIALIZE_ERROR}: unknown variant `{kind}`"
        if result is None:
            return 422, _DESERIALIZE_ERROR
        return 200, result

    async def _handle_info(self, request: web.Request) -> web.StreamResponse:
        arrived = self.clock()
        raw = await request.read()
        try:
            decoded = json.loads(raw)
        except ValueError:
            decoded = None
        recorded = decoded if isinstance(decoded, dict) else {"_raw": raw.decode("utf-8", "replace")}
        self.requests.append(recorded)
        response, answer = await self._respond(request, decoded, self._take_fault(recorded))
        self.charges.append(Charge(arrived, request_weight(recorded.get("type"), answer)))
        return response

    async def _respond(self, request: web.Request, decoded: Any, fault: Fault | None) -> tuple[web.StreamResponse, Any]:
        """The response, and the answer it carries when it is the real one (None for an error or a fault)."""
        if fault is not None:
            if fault.kind == "status":
                return web.Response(status=fault.status, body=fault.body, content_type="text/plain"), None
            if fault.kind == "raw":
                return web.Response(body=fault.body, content_type="application/json"), None
            if fault.kind == "json":
                return _json_response(fault.payload), None
            if fault.kind == "disconnect":
                # Closing the transport before any byte is written makes aiohttp drop the response below
                # silently, and the client sees ServerDisconnectedError (a ClientConnectionError).
                if request.transport is not None:
                    request.transport.close()
                return web.Response(), None
            if fault.kind == "delay" and self._stopping is not None:
                with suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), timeout=fault.seconds)

        status, payload = self.answer(decoded)
        if status != 200:
            return web.Response(status=status, text=payload), None
        if fault is not None and fault.kind == "wrong_types":
            payload = _break_types(payload)
        elif fault is not None and fault.kind == "extra_field" and isinstance(payload, list):
            payload = [{**item, fault.field: fault.payload} for item in payload]
        return _json_response(payload), payload

    # ------------------------------------------------------------------ lifecycle
    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Bind (a free port by default) and serve; returns the base URL, e.g. ``http://127.0.0.1:40123``."""
        if self._runner is not None:
            raise RuntimeError("already started")
        self._stopping = asyncio.Event()  # created here: bound to the loop that serves
        app = web.Application()
        app.router.add_post("/info", self._handle_info)
        self.feeds.add_routes(app)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        await web.TCPSite(runner, host, port).start()
        self._runner = runner
        bound_host, bound_port = runner.addresses[0][:2]
        self.url = self.feeds.base_url = f"http://{bound_host}:{bound_port}"
        return self.url

    async def stop(self) -> None:
        """Stop serving; delayed answers in flight are released first so shutdown is quick."""
        if self._stopping is not None:
            self._stopping.set()
        await self.feeds.stop()
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()
        self.url = ""


def _by_dex(coins: Iterable[str]) -> dict[str, list[str]]:
    """Coins grouped by dex, in order: ``xyz:CRWV`` on dex ``xyz``, ``BTC`` on the main dex (``""``)."""
    grouped: dict[str, list[str]] = {"": []}
    for coin in coins:
        dex = coin.partition(":")[0] if ":" in coin else ""
        grouped.setdefault(dex, []).append(coin)
    return grouped


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _json_response(payload: Any) -> web.Response:
    return web.Response(body=json.dumps(payload, separators=(",", ":")).encode(), content_type="application/json")


def _break_types(payload: Any) -> Any:
    items = payload if isinstance(payload, list) and payload else [{"coin": "BTC", "px": "1.0", "time": 0}]
    return [{**item, "px": {"value": item.get("px")}, "time": str(item.get("time"))} for item in items]


@asynccontextmanager
async def running_fake(scenario: Scenario | None = None, *, host: str = "127.0.0.1") -> AsyncIterator[FakeHyperliquid]:
    """``async with running_fake(scenario) as fake:`` a started fake (``fake.url`` set), stopped on exit."""
    fake = FakeHyperliquid()
    if scenario is not None:
        fake.load(scenario)
    await fake.start(host)
    try:
        yield fake
    finally:
        await fake.stop()


SCENARIOS: dict[str, Callable[[int], Scenario]] = {
    "demo": demo_scenario,
    "empty": lambda seed: Scenario(fills={}, trades={}, liquidations=[]),
}


async def _serve(host: str, port: int, scenario: Scenario) -> None:
    fake = FakeHyperliquid()
    fake.load(scenario)
    url = await fake.start(host, port)
    print(f"fake Hyperliquid info API on {url}/info", flush=True)
    trade_count = sum(len(trades) for trades in scenario.trades.values())
    print(
        f"  {scenario.fill_count} fills on {len(scenario.fills)} addresses, {trade_count} trades, "
        f"{len(scenario.liquidations)} liquidations, {scenario.adl_fill_count} ADL fills"
    )
    for address, label in scenario.labels.items():
        print(f"  {address}  {label}  ({len(scenario.fills.get(address, ()))} fills)")
    if scenario.labels:
        print(f"  watchlist suggestion: {','.join(DEMO_WATCHLIST)}", flush=True)
    done = asyncio.Event()
    loop = asyncio.get_running_loop()
    with suppress(NotImplementedError, RuntimeError):  # no signal handlers off the main thread / on Windows
        loop.add_signal_handler(signal.SIGTERM, done.set)
    try:
        await done.wait()
    finally:
        with suppress(NotImplementedError, RuntimeError):
            loop.remove_signal_handler(signal.SIGTERM)
        await fake.stop()


def main(argv: list[str] | None = None) -> None:
    """Serve a scenario forever (Ctrl-C stops): handy to run the producer by hand against known data."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--scenario", choices=sorted(SCENARIOS), default="demo")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    with suppress(KeyboardInterrupt):
        asyncio.run(_serve(args.host, args.port, SCENARIOS[args.scenario](args.seed)))


if __name__ == "__main__":
    main()
