"""The ``trades`` source, the original tracker's method kept for compatibility: the last public trades per coin,
taking a trade with a liquidator vault on one side for a liquidation. Public trades carry no liquidation marker,
so it is a heuristic.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

from producer.client import HyperliquidClient
from producer.detector import detect_from_trades
from producer.errors import ExchangeError
from producer.exchange_types import Trade
from producer.sources.base import LiquidationSource, PollResult

log = logging.getLogger(__name__)


class TradesSource(LiquidationSource):
    """Recent public trades per coin with a liquidator vault on one side (the original tracker's heuristic)."""

    name = "trades"

    def __init__(self, client: HyperliquidClient, coins: Sequence[str], *, liquidators: Sequence[str]) -> None:
        self.client = client
        self.coins = list(coins)
        self.liquidators = frozenset(a.lower() for a in liquidators)

    def restore(self, checkpoint: Mapping[str, str]) -> None:
        """Nothing to resume: the exchange only serves the last few trades of a coin."""

    def close(self) -> None:
        pass

    async def poll(self, now_ms: int) -> PollResult:
        result = PollResult()
        trades: list[Trade] = []
        for coin in self.coins:
            try:
                batch = await self.client.recent_trades(coin)
            except ExchangeError as exc:
                log.warning("trades of %s: %s", coin, exc)
                result.errors.append(f"{coin}: {exc}")
                continue
            trades.extend(batch)
        result.items = len(trades)
        result.unreachable = len(result.errors) == len(self.coins)
        result.events = [*detect_from_trades(trades, liquidators=self.liquidators, detected_at=now_ms)]
        return result
