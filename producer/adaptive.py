"""A watchlist that follows the makers: the pinned addresses plus the biggest makers of the live ranking.

Why: the ws source sees a market liquidation only through the fills of the addresses it watches, and the makers
absorb liquidations in proportion to the volume they make (:mod:`producer.coverage`). The exchange pushes the fills
of 10 users per IP; the default watchlist (the protocol vaults) spends them on backstops and sees no market
liquidation at all. So the slots the pinned addresses leave go to the top makers of the ranking the coverage
measure keeps anyway, and the next makers are read over REST (:mod:`producer.sources.polled_makers`) within the
weight budget: pushed in milliseconds for the biggest, a read cycle late for the next ones.

Hysteresis: a watched maker keeps its place while it stays within its tier's size plus a margin (a quarter of the
tier, at least one) of the ranking, so a maker at the edge of the top does not come and go at every re-rank (each
return costs a gap-fill, and a subscription of the 2,000 messages a minute the exchange allows).

The decision (who is watched, on which tier, given the pinned addresses, the ranking, the caps and who is watched
now) is the pure :func:`plan`; :class:`AdaptiveWatchlist` is the small task that re-ranks every ``every`` seconds
and hands the new tiers to :meth:`~producer.sources.ws.WsSource.follow`. Like the coverage task, it never stops
the producer: a failure is logged and the next re-rank tries again.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from plumbing.errors import ConfigError
from plumbing.restarting_task import RestartingTask
from producer.coverage import MakerRanking
from producer.sources.ws import MAX_USERS, WsSource

if TYPE_CHECKING:
    from producer.config import ProducerConfig
    from producer.coverage_watch import CoverageWatch
    from producer.metrics import ProducerMetrics

log = logging.getLogger(__name__)

__all__ = ["MAX_POLLED", "AdaptiveWatchlist", "Watch", "adaptive_problem", "build_adaptive", "margin", "plan"]

MAX_POLLED = 200
"""Makers the REST tier may read in turn; beyond it a read cycle would take longer than any ranking is fresh."""


FIRST_RERANK = 60.0
"""Seconds after the start before the first re-rank (when ``every`` is longer): a minute of the venue's trades
ranks its biggest makers well enough, and waiting a whole ``every`` would leave the slots to the pinned alone."""


@dataclass(frozen=True)
class Watch:
    """Who is watched: on the WebSocket (pinned first), and read over REST."""

    pushed: list[str] = field(default_factory=list)
    polled: list[str] = field(default_factory=list)


def margin(size: int) -> int:
    """Ranks a watched maker may fall below its tier before it is replaced."""
    return max(1, size // 4)


def _tier(current: Sequence[str], makers: Sequence[str], rank: dict[str, int], size: int, end: int) -> list[str]:
    """``size`` makers for a tier ending at rank ``end``: the current ones still within ``end`` plus the margin,
    then the best-ranked others, biggest first."""
    kept = [address for address in current if address in rank and rank[address] < end + margin(size)][:size]
    for address in makers:
        if len(kept) >= size:
            break
        if address not in kept:
            kept.append(address)
    return sorted(kept, key=rank.__getitem__)


def plan(
    pinned: Sequence[str], ranked: Iterable[str], slots: int, *, polled: int = 0, current: Watch | None = None
) -> Watch:
    """The addresses to watch: every pinned one first (in order) on the WebSocket, then the ranked makers not
    pinned, biggest first, into its ``slots`` and then into ``polled`` REST reads; pinned ones beyond ``slots`` are
    cut, never a maker kept in their place. With ``current``, a watched maker keeps its tier while it stays
    within the tier's end plus :func:`margin`."""
    now = current or Watch()
    watched = list(dict.fromkeys(address.lower() for address in pinned))[: max(0, slots)]
    makers = [m for m in dict.fromkeys(address.lower() for address in ranked) if m not in watched]
    rank = {address: index for index, address in enumerate(makers)}
    free = slots - len(watched)
    pushed = _tier(now.pushed, makers, rank, free, free) if free > 0 else []
    rest = [m for m in makers if m not in pushed]
    polled_now = [address for address in now.polled if address not in pushed]
    return Watch(watched + pushed, _tier(polled_now, rest, rank, polled, free + polled) if polled > 0 else [])


def adaptive_problem(*, source: str, coverage: bool, slots: int, polled: int, pinned: Sequence[str]) -> str | None:
    """Why the adaptive watchlist cannot run with these settings, or None."""
    if source != "ws":
        return "--adaptive / HL_ADAPTIVE needs the ws source (--source ws): it fills the WebSocket's user slots"
    if not coverage:
        return "--adaptive / HL_ADAPTIVE needs --coverage / HL_COVERAGE on: the makers are ranked from its trades"
    if not 1 <= slots <= MAX_USERS:
        return f"--adaptive-slots / HL_ADAPTIVE_SLOTS must be between 1 and {MAX_USERS}, got {slots}"
    if not 0 <= polled <= MAX_POLLED:
        return f"--adaptive-polled / HL_ADAPTIVE_POLLED must be between 0 and {MAX_POLLED}, got {polled}"
    if len(pinned) > slots:
        return (
            f"--adaptive-slots / HL_ADAPTIVE_SLOTS is {slots} but --watchlist / HL_WATCHLIST pins {len(pinned)} "
            "addresses: raise the slots or pin fewer"
        )
    return None


class AdaptiveWatchlist:
    """Every ``every`` seconds, the pinned addresses plus the ranking's top makers watched: up to ``slots`` on the
    WebSocket, and ``polled`` more read over REST."""

    def __init__(
        self,
        source: WsSource,
        ranking: MakerRanking,
        pinned: Sequence[str],
        *,
        slots: int = MAX_USERS,
        polled: int = 0,
        every: float = 300.0,
        on_change: Callable[[Watch, Sequence[str], Sequence[str]], None] | None = None,
    ) -> None:
        self.source = source
        self.ranking = ranking
        self.pinned = [address.lower() for address in pinned]
        self.slots = slots
        self.polled = polled
        self.every = every
        self.on_change = on_change
        """Told each new watch and who (joined, left) it: the coverage measure reports on the addresses actually
        watched, the metrics count the changes."""
        self.watch = Watch(list(source.watchlist), list(source.polled.addresses))
        self.rotations = 0
        """Re-ranks that changed the watchlist."""
        self._task = RestartingTask("adaptive-watchlist", "adaptive watchlist: the task", self._run, log)

    def start(self) -> None:
        """Start the task: once, and again after it failed (logged; the producer goes on either way)."""
        self._task.start()

    def close(self) -> None:
        self._task.close()

    async def _run(self) -> None:
        delay = min(self.every, FIRST_RERANK)
        while True:
            await asyncio.sleep(delay)
            delay = self.every
            try:
                await self.rerank()
            except (ConfigError, OSError, RuntimeError) as exc:  # never the producer's end: the next re-rank retries
                log.error("adaptive watchlist: re-ranking failed (%s: %s)", type(exc).__name__, exc)

    async def rerank(self) -> tuple[list[str], list[str]]:
        """Watch the current plan; returns the addresses that (joined, left) the watch, either tier."""
        wanted_ranks = self.slots + self.polled + margin(self.slots) + margin(self.polled) + len(self.pinned)
        ranked = [maker.address for maker in self.ranking.top(wanted_ranks)]
        before = self.watch
        watch = plan(self.pinned, ranked, self.slots, polled=self.polled, current=before)
        await self.source.follow(watch.pushed, watch.polled)
        self.watch = watch
        was, now = {*before.pushed, *before.polled}, {*watch.pushed, *watch.polled}
        joined = [address for address in [*watch.pushed, *watch.polled] if address not in was]
        left = [address for address in [*before.pushed, *before.polled] if address not in now]
        if watch != before:
            self.rotations += 1
            if self.on_change is not None:
                self.on_change(watch, joined, left)
            log.info(
                "adaptive watchlist: %d on the WebSocket (%d pinned), %d polled; joined: %s; left: %s",
                len(watch.pushed),
                len(self.pinned),
                len(watch.polled),
                ",".join(joined) or "none",
                ",".join(left) or "none",
            )
        return joined, left


def build_adaptive(
    config: ProducerConfig, source: object, coverage: CoverageWatch | None, metrics: ProducerMetrics
) -> AdaptiveWatchlist | None:
    """The adaptive watchlist when turned on (the settings were checked by the configuration)."""
    if not config.adaptive or not isinstance(source, WsSource) or coverage is None:
        return None
    metrics.watch_polled_oldest.set_function(source.polled.oldest_read_age)

    def watched(watch: Watch, joined: Sequence[str] = (), left: Sequence[str] = ()) -> None:
        coverage.watched = [*watch.pushed, *watch.polled]
        pinned = len(config.watchlist)
        metrics.watch_addresses.labels("pinned").set(pinned)
        metrics.watch_addresses.labels("pushed").set(len(watch.pushed) - pinned)
        metrics.watch_addresses.labels("polled").set(len(watch.polled))
        metrics.watch_changes.labels("joined").inc(len(joined))
        metrics.watch_changes.labels("left").inc(len(left))

    adaptive = AdaptiveWatchlist(
        source,
        coverage.ranking,
        config.watchlist,
        slots=config.adaptive_slots,
        polled=config.adaptive_polled,
        every=config.adaptive_every,
        on_change=watched,
    )
    watched(adaptive.watch)
    return adaptive
