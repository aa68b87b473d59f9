"""Play a simulated :class:`~producer.simulation.market.Market` through the fakes, block by block, as it happens.

Why block by block: a producer that follows the makers learns who they are from the ``trades`` feed while the
market runs, then reads their fills; loading every fill at once would show the REST source the future. So each
block (the fills and trades of one block time) reaches, in order:

- the fake info API (:class:`~producer.simulation.fake_exchange.FakeHyperliquid`): its fills become visible to
  ``userFillsByTime`` and its trades to ``recentTrades``;
- the WebSocket feeds (:class:`~producer.simulation.fake_feeds.FakeFeeds`): the exchange's own (``/ws`` on its
  port), and any other given, e.g. a hosted provider's: the block's public trades to each coin's ``trades``
  subscribers, its fills to their owners' ``userFills`` subscribers, its liquidation fills to the providers'.

The exchange's feeds share its fills (a pushed fill is what ``userFillsByTime`` answers), so its fills go in once,
through the push. For a market served whole, ``exchange.load(market.scenario)`` is enough.
"""

from __future__ import annotations

from dataclasses import dataclass

from producer.simulation.fake_exchange import FakeHyperliquid
from producer.simulation.fake_feeds import FakeFeeds, Pair
from producer.simulation.market import Market
from producer.simulation.scenarios import Trade

__all__ = ["MarketBlock", "MarketReplay", "market_blocks"]


@dataclass(frozen=True)
class MarketBlock:
    """Everything of one block time: its fills as (owner, fill) and its public trades per coin, by tid."""

    time: int
    fills: list[Pair]
    trades: dict[str, list[Trade]]


def market_blocks(market: Market) -> list[MarketBlock]:
    """The market's fills and trades grouped by block time, oldest block first."""
    fills: dict[int, list[Pair]] = {}
    for address, owned in market.scenario.fills.items():
        for fill in owned:
            fills.setdefault(fill["time"], []).append((address, fill))
    trades: dict[int, dict[str, list[Trade]]] = {}
    for trade in market.trades():
        trades.setdefault(trade["time"], {}).setdefault(trade["coin"], []).append(trade)
    return [
        MarketBlock(time, sorted(fills.get(time, []), key=lambda pair: pair[1]["tid"]), trades.get(time, {}))
        for time in sorted(fills.keys() | trades.keys())
    ]


class MarketReplay:
    """Plays ``market``'s blocks, oldest first, into the fakes given: an exchange (with its feeds), feeds, or both."""

    def __init__(
        self, market: Market, *, feeds: FakeFeeds | None = None, exchange: FakeHyperliquid | None = None
    ) -> None:
        self.market = market
        self.exchange = exchange
        self.feeds = [exchange.feeds] if exchange is not None else []
        if feeds is not None and all(feeds is not own for own in self.feeds):
            self.feeds.append(feeds)
        self.blocks = market_blocks(market)
        self.played = 0
        """Blocks played so far."""

    @property
    def done(self) -> bool:
        return self.played >= len(self.blocks)

    @property
    def now_ms(self) -> int | None:
        """The time of the last block played: the simulated market's "now" (None before the first)."""
        return self.blocks[self.played - 1].time if self.played else None

    async def play(self, count: int | None = None, *, until_ms: int | None = None) -> int:
        """Play the next ``count`` blocks (all that are left without it), stopping before any block later than
        ``until_ms``; returns how many were played."""
        played = 0
        while not self.done and (count is None or played < count):
            block = self.blocks[self.played]
            if until_ms is not None and block.time > until_ms:
                break
            await self._deliver(block)
            self.played += 1
            played += 1
        return played

    async def _deliver(self, block: MarketBlock) -> None:
        if self.exchange is not None:
            for coin, trades in block.trades.items():
                self.exchange.add_trades(coin, trades)
        for feeds in self.feeds:
            for coin, trades in block.trades.items():
                await feeds.push_trades(coin, trades)
            if block.fills:
                await feeds.push(block.fills)  # for the exchange's own feeds, also its userFillsByTime answers
