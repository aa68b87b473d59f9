"""The original tracker's library API, kept for code that imported it: liquidations in-process, without Redis.

Same names and defaults as that first tracker (mainnet, coins BTC/ETH/SOL, 10 s interval, recent-trades scanning),
on top of the producer's sources and detector, without its defects: failures raise instead of returning empty
lists, memory is bounded however long it runs, money is exact, and the liquidated side is the position's.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import AsyncGenerator, Sequence
from typing import Any, Literal

from consumers.totals import Totals
from producer.client import MAINNET_API_URL, HyperliquidClient
from producer.config import DEFAULT_COINS, LIQUIDATOR_VAULTS, PROTOCOL_VAULTS
from producer.errors import ExchangeUnavailable
from producer.exchange_types import Trade
from producer.sources import FillsSource, PollResult, TradesSource
from schemas import LiquidationEvent

log = logging.getLogger(__name__)

RECENT_LIMIT = 10_000
"""Liquidations kept for :meth:`LiquidationTracker.recent`; older ones live on only in the totals."""


class LiquidationTracker:
    def __init__(
        self,
        api_base: str = MAINNET_API_URL,
        *,
        source: Literal["trades", "fills"] = "trades",
        watchlist: Sequence[str] = PROTOCOL_VAULTS,
        lookback_seconds: float = 3600.0,
        client: HyperliquidClient | None = None,
    ) -> None:
        self.client = client or HyperliquidClient(api_base)
        self.source_name = source
        self._fills = FillsSource(self.client, watchlist, lookback_ms=int(lookback_seconds * 1000))
        self.totals = Totals()
        self.liquidations: deque[LiquidationEvent] = deque(maxlen=RECENT_LIMIT)
        self.errors = 0

    async def __aenter__(self) -> LiquidationTracker:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self.client.close()

    async def query_recent_trades(self, coin: str) -> list[Trade]:
        """The coin's last public trades, newest first; raises :class:`~producer.errors.ExchangeError`."""
        return await self.client.recent_trades(coin)

    async def scan_recent_liquidations(self, coins: Sequence[str] | None = None) -> list[LiquidationEvent]:
        """One poll; returns the liquidations not seen by this tracker before.

        With the trades source ``coins`` (default BTC, ETH, SOL) are scanned; with the fills source the watchlist
        is, and ``coins``, if given, filters the result. Partial failures are logged and counted in
        ``get_statistics()["errors"]``; if every request failed, :class:`ExchangeUnavailable` is raised.
        """
        coin_list = list(coins) if coins is not None else list(DEFAULT_COINS)
        now_ms = int(time.time() * 1000)
        if self.source_name == "trades":
            result = await TradesSource(self.client, coin_list, liquidators=LIQUIDATOR_VAULTS).poll(now_ms)
            attempted = len(coin_list)
        else:
            result = await self._fills.poll(now_ms)
            attempted = len(self._fills.watchlist)
        self._check(result, attempted)
        # The original tracker's API is about liquidations; ADL events stay in the stream producer's domain.
        by_coin = coins is not None and self.source_name == "fills"
        wanted = [e for e in result.events if isinstance(e, LiquidationEvent) and (not by_coin or e.coin in coin_list)]
        # Totals remembers recent keys, so a liquidation a later poll sees again is neither counted nor returned.
        fresh = [event for event in wanted if self.totals.add(event)]
        self.liquidations.extend(fresh)
        return fresh

    def _check(self, result: PollResult, attempted: int) -> None:
        self.errors += len(result.errors)
        if result.errors and len(result.errors) >= attempted:
            raise ExchangeUnavailable("every request of the scan failed: " + "; ".join(result.errors))

    async def monitor_realtime(
        self, coins: Sequence[str] | None = None, interval: float = 10.0
    ) -> AsyncGenerator[LiquidationEvent, None]:
        """Yield new liquidations as polls find them, forever; a failed poll is logged and retried next interval."""
        while True:
            try:
                for event in await self.scan_recent_liquidations(coins):
                    yield event
            except ExchangeUnavailable as exc:
                log.error("poll failed, retrying in %.0fs: %s", interval, exc)
            await asyncio.sleep(interval)

    def get_liquidations_by_timeframe(self, seconds: int) -> dict[str, Any]:
        """Totals of the liquidations of the last ``seconds`` (by exchange time)."""
        return self.totals.by_timeframe(seconds, int(time.time() * 1000))

    def get_statistics(self) -> dict[str, Any]:
        stats = self.totals.statistics(int(time.time() * 1000))
        stats["errors"] = self.errors
        stats["recent_liquidations_count"] = len(self.liquidations)
        return stats
