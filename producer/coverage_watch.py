"""Coverage, measured live: every perp coin's public trades into a :class:`~producer.coverage.MakerRanking`, and
the share of maker volume the watchlist makes reported as metrics and in a periodic log line.

Why: a producer without a node or a key sees a market liquidation only through the watched makers' fills, and the
makers absorb liquidations roughly in proportion to the volume they make (:mod:`producer.coverage`). No other
tracker tells its users what it misses; this says it, overall and per coin, and names the makers to watch next.

The exchange's limits, each kept here:

- **1,000 subscriptions per IP.** One ``trades`` subscription per coin, every dex's coins (the main dex's first),
  at most :data:`MAX_COINS`: the ws source's ``userFills`` keep their room.
- **2,000 messages sent per minute per IP.** The subscriptions are paced (:data:`SUBSCRIBE_INTERVAL`), so even a
  feed that reconnects every few seconds sends at most 1,000 a minute, half the allowance.
- **Request weight.** The coins are listed once at start (``meta``, ``perpDexs`` and one ``meta`` per builder
  dex, 20 weight each), through the client and so inside the producer's budget; a failed listing is retried
  after a minute. Coins listed later are not followed until the next start.
- **10 connections per IP.** One connection of its own, beside the ws source's.

The decisions (which coins, what the log line says) are pure functions; :class:`CoverageWatch` is the small task
that does the I/O. It never stops the producer: whatever fails is logged and retried.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING

from plumbing.restarting_task import RestartingTask
from producer.client import HyperliquidClient, PerpMeta
from producer.coverage import Coverage, MakerRanking, Share
from producer.errors import ExchangeError
from producer.feed_messages import Trades, trades
from producer.metrics import ProducerMetrics
from producer.sources import with_timings
from producer.sources.ws import MAX_USERS, public_ws_url
from producer.websocket import FeedSettings, WebSocketFeed

if TYPE_CHECKING:
    from producer.config import ProducerConfig

log = logging.getLogger(__name__)

MAX_SUBSCRIPTIONS = 1000
"""Subscriptions the exchange allows one IP."""
MAX_COINS = MAX_SUBSCRIPTIONS - MAX_USERS
"""Coins followed at most: the ws source's ``userFills`` subscriptions keep their room."""
SUBSCRIBE_INTERVAL = 0.06
"""Seconds between two ``trades`` subscriptions: 1,000 a minute, half the 2,000 messages the exchange allows."""
LIST_RETRY = 60.0
"""Seconds before a failed listing of the coins is tried again."""
SHOWN = 3
"""Coins and makers named in the log line."""


# ---------------------------------------------------------------------------------------------- pure decisions


def trades_settings(url: str, coins: Sequence[str], *, subscribe_interval: float = SUBSCRIBE_INTERVAL) -> FeedSettings:
    """The public feed with one paced ``trades`` subscription per coin."""
    return FeedSettings(
        dialect="public",
        url=url,
        subscriptions=tuple(trades(coin) for coin in coins),
        subscribe_interval=subscribe_interval,
    )


def perp_coins(main: PerpMeta, dexes: Mapping[str, PerpMeta]) -> list[str]:
    """Every listed perp coin, the main dex's first, then each builder dex's in order; delisted ones and repeats
    left out (a delisted market trades no more, and a subscription is worth keeping)."""
    coins: dict[str, None] = {}
    for meta in (main, *dexes.values()):
        for asset in meta.universe:
            if not asset.is_delisted:
                coins.setdefault(asset.name)
    return list(coins)


def followed(coins: Sequence[str], limit: int = MAX_COINS) -> tuple[list[str], list[str]]:
    """The coins to subscribe to and those left out by the subscription limit."""
    return list(coins[:limit]), list(coins[limit:])


def _percent(share: float | None) -> str:
    return "n/a" if share is None else f"{share:.1%}"


def _usd(amount: float) -> str:
    for limit, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if amount >= limit:
            return f"${amount / limit:.1f}{suffix}"
    return f"${amount:.0f}"


def least_covered(coverage: Coverage, n: int = SHOWN) -> list[tuple[str, Share]]:
    """The ``n`` coins with the most maker volume the watchlist does not make: where it misses the most USD (a
    coin with no watched volume but hardly any trades misses little)."""
    ranked = sorted(coverage.per_coin.items(), key=lambda item: (item[1].watched_usd - item[1].total_usd, item[0]))
    return [(coin, share) for coin, share in ranked[:n] if share.watched_usd < share.total_usd]


def coverage_line(
    coverage: Coverage, ranking: MakerRanking, watched: Iterable[str], *, followed_coins: int, n: int = SHOWN
) -> str:
    """The periodic log line: the overall share, the coins where most is missed, the biggest unwatched makers."""
    overall = coverage.overall
    if overall.total_trades == 0:
        return f"coverage: no trades yet on the {followed_coins} coins followed"
    addresses = {address.lower() for address in watched}
    total = ranking.volume()
    unwatched = [m for m in ranking.top(n + len(addresses)) if m.address not in addresses][:n]
    worst = ", ".join(
        f"{coin} {_percent(share.fraction)} ({_usd(float(share.total_usd - share.watched_usd))} missed)"
        for coin, share in least_covered(coverage, n)
    )
    makers = ", ".join(f"{m.address} {_percent(float(m.volume_usd / total))}" for m in unwatched)
    window_min = ranking.window_ms / 60_000
    return (
        f"coverage: the watched addresses made {_percent(overall.fraction)} of maker volume "
        f"({_percent(overall.trade_fraction)} of trades), the estimated share of market liquidations seen; "
        f"{overall.total_trades} trades, {_usd(float(overall.total_usd))} by {ranking.maker_count} makers on "
        f"{len(coverage.per_coin)}/{followed_coins} coins in the last {window_min:g} min; "
        f"least covered: {worst or 'none'}; biggest unwatched makers: {makers or 'none'}"
    )


# ---------------------------------------------------------------------------------------------- the task


class CoverageWatch:
    """Lists the perp coins, follows their trades on a connection of its own, reports every ``report_every`` s."""

    def __init__(
        self,
        client: HyperliquidClient,
        watched: Sequence[str],
        metrics: ProducerMetrics,
        *,
        feed_settings: Callable[[Sequence[str]], FeedSettings],
        report_every: float = 60.0,
        list_retry: float = LIST_RETRY,
        ranking: MakerRanking | None = None,
    ) -> None:
        self.client = client
        self.watched = [address.lower() for address in watched]
        self.metrics = metrics
        self.feed_settings = feed_settings
        """The feed following the coins, once listed."""
        self.report_every = report_every
        self.list_retry = list_retry
        self.ranking = ranking or MakerRanking()
        self.coins: list[str] = []
        self.feed: WebSocketFeed | None = None
        self._task = RestartingTask("coverage", "coverage: the trades feed", self._run, log)

    def start(self) -> None:
        """Start the task: once, and again after it failed (logged; the producer goes on either way). A task
        that ended without failing (no coin listed) is not restarted: listing again would find the same."""
        self._task.start()

    def close(self) -> None:
        self._task.close()

    async def _run(self) -> None:
        coins = await self._list_coins()
        self.coins, left_out = followed(coins)
        self.metrics.coverage_coins.set(len(self.coins))
        if left_out:
            log.warning(
                "coverage: %d perp coins listed, following the first %d (the exchange allows %d subscriptions per "
                "IP); not followed: %s",
                len(coins),
                len(self.coins),
                MAX_SUBSCRIPTIONS,
                ",".join(left_out),
            )
        if not self.coins:
            log.warning("coverage: the exchange lists no perp coins: nothing to measure")
            return
        log.info("coverage: following the trades of %d perp coins", len(self.coins))
        self.feed = WebSocketFeed(self.feed_settings(self.coins))
        reporter = asyncio.create_task(self._report_every())
        try:
            async for event in self.feed.events():
                if isinstance(event, Trades):
                    counted = self.ranking.add_many(event.data)
                    self.metrics.coverage_trades.inc(counted)
        finally:
            reporter.cancel()

    async def _list_coins(self) -> list[str]:
        """Every dex's perp coins; retried every :data:`LIST_RETRY` seconds until the exchange answers."""
        while True:
            try:
                main = await self.client.perp_meta()
                dexes = {dex.name: await self.client.perp_meta(dex.name) for dex in await self.client.perp_dexs()}
            except ExchangeError as exc:
                log.warning("coverage: cannot list the perp coins (%s); trying again in %gs", exc, self.list_retry)
                await asyncio.sleep(self.list_retry)
                continue
            return perp_coins(main, dexes)

    async def _report_every(self) -> None:
        while True:
            await asyncio.sleep(self.report_every)
            self.report()

    def report(self) -> Coverage:
        """Measure now: set the gauges and log the line."""
        coverage = self.ranking.coverage(self.watched)
        self.metrics.set_coverage(coverage)
        log.info("%s", coverage_line(coverage, self.ranking, self.watched, followed_coins=len(self.coins)))
        return coverage


def build_coverage(config: ProducerConfig, client: HyperliquidClient, metrics: ProducerMetrics) -> CoverageWatch | None:
    """The coverage task for a source that watches addresses (ws, fills), unless turned off."""
    if not config.coverage or config.source not in ("ws", "fills"):
        return None
    url = config.ws_url or public_ws_url(config.api_url)

    def feed_settings(coins: Sequence[str]) -> FeedSettings:
        return with_timings(trades_settings(url, coins), config)

    return CoverageWatch(
        client, config.watchlist, metrics, feed_settings=feed_settings, report_every=config.coverage_every
    )
