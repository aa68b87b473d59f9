"""A thin client of Hyperliquid's info API: one aiohttp session, retries, the weight budget, msgspec decoding.

Transient failures (429, 5xx, timeouts, dropped connections) are retried with exponential backoff and full
jitter, so several producers behind one IP do not retry in lockstep. Anything else surfaces as one of our own
errors and the caller decides; nothing is swallowed. A malformed item inside an otherwise good answer is logged,
counted and skipped so one bad fill does not hide the 1,999 good ones beside it.
"""

from __future__ import annotations

import asyncio
import logging
import random
from dataclasses import dataclass
from typing import Any, TypeVar

import aiohttp
import msgspec

from plumbing.backoff import full_jitter
from producer.errors import ExchangeRejected, ExchangeUnavailable, MalformedResponse
from producer.exchange_types import Fill, Trade
from producer.ratelimit import BASE_WEIGHT, WeightBudget, response_weight

log = logging.getLogger(__name__)

T = TypeVar("T")

MAINNET_API_URL = "https://api.hyperliquid.xyz"
MAX_FILLS_PER_ANSWER = 2000
FILLS_ANSWER_WEIGHT = response_weight(MAX_FILLS_PER_ANSWER)
"""The most a fills answer's items weigh: kept free in the budget's minute while the answer is on its way."""
_ITEMS_LOGGED = 3
"""Malformed items logged one by one per answer; the rest are counted in one line."""


@dataclass(frozen=True)
class FillsPage:
    fills: list[Fill]
    answered: int
    """Items in the answer, malformed ones included: a full page (2,000) means there may be more."""


class PerpAsset(msgspec.Struct, frozen=True):
    """One perp market of a dex's ``meta`` universe; its other fields (szDecimals, leverage) are not read."""

    name: str
    """The coin as the feeds name it: ``BTC`` on the main dex, ``xyz:CRWV`` on a builder-deployed one."""
    is_delisted: bool = msgspec.field(default=False, name="isDelisted")


class PerpMeta(msgspec.Struct, frozen=True):
    """A dex's ``meta`` answer: the perp markets listed on it."""

    universe: list[PerpAsset]


class PerpDex(msgspec.Struct, frozen=True):
    """A builder-deployed perp dex of the ``perpDexs`` answer (its deployer, oracle and caps are not read)."""

    name: str


@dataclass
class ClientStats:
    """Counters of the client's requests, served as the producer's ``hl_producer_api_*`` metrics."""

    requests: int = 0
    retries: int = 0
    rate_limited: int = 0
    server_errors: int = 0
    timeouts: int = 0
    connection_errors: int = 0
    malformed: int = 0
    skipped_items: int = 0


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 5
    base_delay: float = 0.5
    max_delay: float = 30.0

    def delay(self, attempt: int, rng: random.Random) -> float:
        """Full jitter, the one backoff every process uses: uniform in [0, min(cap, base * 2**attempt)]."""
        return full_jitter(attempt, base=self.base_delay, cap=self.max_delay, rng=rng)


class _Transient(Exception):
    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.retry_after = retry_after


def _retry_after(headers: Any) -> float | None:
    try:
        return float(headers.get("Retry-After", ""))
    except ValueError:
        return None


class HyperliquidClient:
    def __init__(
        self,
        api_url: str = MAINNET_API_URL,
        *,
        timeout: float = 10.0,
        retry: RetryPolicy | None = None,
        budget: WeightBudget | None = None,
        session: aiohttp.ClientSession | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.info_url = api_url.rstrip("/") + "/info"
        self.timeout = aiohttp.ClientTimeout(total=timeout)
        self.retry = retry or RetryPolicy()
        self.budget = budget
        self.stats = ClientStats()
        self._session = session
        self._owns_session = session is None
        self._rng = rng or random.Random()
        self._encoder = msgspec.json.Encoder()
        self._raw_list = msgspec.json.Decoder(list[msgspec.Raw])

    async def __aenter__(self) -> HyperliquidClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._session is not None and self._owns_session:
            await self._session.close()
            self._session = None

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=self.timeout)
            self._owns_session = True
        return self._session

    async def user_fills_by_time(self, user: str, start_time: int, end_time: int | None = None) -> FillsPage:
        """One page: at most 2,000 fills of ``user`` from ``start_time`` (inclusive), oldest first."""
        body: dict[str, Any] = {"type": "userFillsByTime", "user": user, "startTime": start_time}
        if end_time is not None:
            body["endTime"] = end_time
        body["aggregateByTime"] = False
        fills, answered = await self._info_list(body, Fill, headroom=FILLS_ANSWER_WEIGHT)
        return FillsPage(fills, answered)

    async def recent_trades(self, coin: str) -> list[Trade]:
        """The last few public trades of ``coin``, newest first."""
        trades, _ = await self._info_list({"type": "recentTrades", "coin": coin}, Trade)
        return trades

    async def perp_meta(self, dex: str = "") -> PerpMeta:
        """The perp markets of ``dex`` (the main dex without one)."""
        body: dict[str, Any] = {"type": "meta"}
        if dex:
            body["dex"] = dex
        meta: PerpMeta = self._decode_object(await self._post(body), PerpMeta, body)
        return meta

    async def perp_dexs(self) -> list[PerpDex]:
        """The builder-deployed perp dexes. The answer lists the main dex first, as ``null``: left out here."""
        body: dict[str, Any] = {"type": "perpDexs"}
        dexes: list[PerpDex | None] = self._decode_object(await self._post(body), list[PerpDex | None], body)
        return [dex for dex in dexes if dex is not None]

    def _decode_object(self, raw: bytes, kind: Any, body: dict[str, Any]) -> Any:
        """One whole answer of shape ``kind``: these answers are read rarely and used whole, so a bad one is an
        error (retried by the caller later), never partly used."""
        try:
            return msgspec.json.decode(raw, type=kind)
        except msgspec.DecodeError as exc:
            self.stats.malformed += 1
            raise MalformedResponse(f"{body['type']}: malformed answer ({exc}): {raw[:120]!r}") from None

    async def _info_list(
        self, body: dict[str, Any], item_type: type[T], *, headroom: float = 0.0
    ) -> tuple[list[T], int]:
        raw = await self._post(body, headroom=headroom)
        items, answered = self._decode_list(raw, item_type, body)
        if self.budget is not None:
            self.budget.charge(response_weight(answered))
        return items, answered

    async def _post(self, body: dict[str, Any], *, headroom: float = 0.0) -> bytes:
        """The answer's bytes, retried; ``headroom`` is the most the answer's items may weigh (see the budget)."""
        payload = self._encoder.encode(body)
        what = f"{body['type']} {body.get('user') or body.get('coin') or ''}".strip()
        last = "no attempt made"
        for attempt in range(self.retry.attempts):
            if self.budget is not None:
                await self.budget.acquire(BASE_WEIGHT, headroom=headroom)
            try:
                return await self._post_once(payload)
            except _Transient as exc:
                last = str(exc)
                if attempt + 1 == self.retry.attempts:
                    break
                delay = self.retry.delay(attempt, self._rng)
                if exc.retry_after is not None:
                    delay = max(delay, min(exc.retry_after, self.retry.max_delay))
                self.stats.retries += 1
                log.warning("%s: %s; retry %d/%d in %.1fs", what, last, attempt + 1, self.retry.attempts - 1, delay)
                await asyncio.sleep(delay)
        raise ExchangeUnavailable(f"{what}: gave up after {self.retry.attempts} attempts, last: {last}")

    async def _post_once(self, payload: bytes) -> bytes:
        self.stats.requests += 1
        session = self._get_session()
        try:
            async with session.post(
                self.info_url, data=payload, headers={"Content-Type": "application/json"}, timeout=self.timeout
            ) as resp:
                body = await resp.read()
                if resp.status == 200:
                    return body
                if resp.status == 429:
                    self.stats.rate_limited += 1
                    raise _Transient("rate limited (HTTP 429)", _retry_after(resp.headers))
                if resp.status >= 500:
                    self.stats.server_errors += 1
                    raise _Transient(f"HTTP {resp.status}")
                raise ExchangeRejected(f"HTTP {resp.status} from {self.info_url}: {body[:200]!r}")
        except TimeoutError:
            self.stats.timeouts += 1
            raise _Transient(f"no answer within {self.timeout.total}s") from None
        except aiohttp.ClientError as exc:
            self.stats.connection_errors += 1
            raise _Transient(f"connection error: {exc.__class__.__name__}: {exc}") from None

    def _decode_list(self, raw: bytes, item_type: type[T], body: dict[str, Any]) -> tuple[list[T], int]:
        """The decoded items and how many the answer held (paging counts the skipped ones too)."""
        try:
            items: list[T] = msgspec.json.decode(raw, type=list[item_type])  # type: ignore[valid-type]
            return items, len(items)
        except msgspec.DecodeError:
            pass
        # Slow path, only for answers that failed the fast one: find out whether the whole answer is bad or
        # just some items, and keep the good ones.
        try:
            raw_items = self._raw_list.decode(raw)
        except msgspec.DecodeError as exc:
            self.stats.malformed += 1
            raise MalformedResponse(f"{body['type']}: answer is not a JSON list ({exc}): {raw[:120]!r}") from None
        items = []
        skipped = 0
        for raw_item in raw_items:
            try:
                items.append(msgspec.json.decode(raw_item, type=item_type))
            except msgspec.DecodeError as exc:
                skipped += 1
                if skipped <= _ITEMS_LOGGED:  # a whole answer of junk must not flood the log
                    log.error("%s: skipped a malformed item (%s): %.200r", body["type"], exc, bytes(raw_item))
        if skipped:
            self.stats.malformed += 1
            self.stats.skipped_items += skipped
            if skipped > _ITEMS_LOGGED:
                log.error("%s: skipped %d malformed items of %d in one answer", body["type"], skipped, len(raw_items))
        return items, len(raw_items)
