"""A watchlist that follows the makers: the pinned addresses plus the biggest makers of the live ranking.

Why: the ws source sees a market liquidation only through the fills of the addresses it watches, and the makers
absorb liquidations in proportion to the volume they make (:mod:`producer.coverage`). The exchange pushes the fills
of 10 users per IP; the default watchlist (the protocol vaults) spends them on backstops and sees no market
liquidation at all. Giving the slots the pinned addresses leave to the top makers of the ranking that the coverage
measure keeps anyway raises the share of liquidations seen, at no request weight but one gap-fill per joining maker.

The decision (who is watched, given the pinned addresses, the ranking and the cap) is the pure :func:`plan`;
:class:`AdaptiveWatchlist` is the small task that re-ranks every ``every`` seconds and hands the new list to
:meth:`~producer.sources.ws.WsSource.follow`. Like the coverage task, it never stops the producer: a failure is
logged and the next re-rank tries again.

Not in this first cut: REST polling for the makers beyond the 10 slots, and any hysteresis (a maker at the edge of
the top may come and go at each re-rank; each return costs one gap-fill from its watermark, a cheap read).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING

from plumbing.errors import ConfigError
from producer.coverage import MakerRanking
from producer.sources.ws import MAX_USERS, WsSource

if TYPE_CHECKING:
    from producer.config import ProducerConfig
    from producer.coverage_watch import CoverageWatch

log = logging.getLogger(__name__)

__all__ = ["AdaptiveWatchlist", "adaptive_problem", "build_adaptive", "plan"]


def plan(pinned: Sequence[str], ranked: Iterable[str], slots: int) -> list[str]:
    """The addresses to watch: every pinned one first (in order), then the ranked makers not pinned, biggest first,
    until ``slots`` addresses in all; pinned ones beyond ``slots`` are cut, never a maker kept in their place."""
    watched = list(dict.fromkeys(address.lower() for address in pinned))[: max(0, slots)]
    for address in ranked:
        if len(watched) >= slots:
            break
        if (address := address.lower()) not in watched:
            watched.append(address)
    return watched


def adaptive_problem(*, source: str, coverage: bool, slots: int, pinned: Sequence[str]) -> str | None:
    """Why the adaptive watchlist cannot run with these settings, or None."""
    if source != "ws":
        return "--adaptive / HL_ADAPTIVE needs the ws source (--source ws): it fills the WebSocket's user slots"
    if not coverage:
        return "--adaptive / HL_ADAPTIVE needs --coverage / HL_COVERAGE on: the makers are ranked from its trades"
    if not 1 <= slots <= MAX_USERS:
        return f"--adaptive-slots / HL_ADAPTIVE_SLOTS must be between 1 and {MAX_USERS}, got {slots}"
    if len(pinned) > slots:
        return (
            f"--adaptive-slots / HL_ADAPTIVE_SLOTS is {slots} but --watchlist / HL_WATCHLIST pins {len(pinned)} "
            "addresses: raise the slots or pin fewer"
        )
    return None


class AdaptiveWatchlist:
    """Every ``every`` seconds, the pinned addresses plus the ranking's top makers, up to ``slots``, watched."""

    def __init__(
        self,
        source: WsSource,
        ranking: MakerRanking,
        pinned: Sequence[str],
        *,
        slots: int = MAX_USERS,
        every: float = 300.0,
        on_change: Callable[[Sequence[str]], None] | None = None,
    ) -> None:
        self.source = source
        self.ranking = ranking
        self.pinned = [address.lower() for address in pinned]
        self.slots = slots
        self.every = every
        self.on_change = on_change
        """Told each new watchlist (the coverage measure reports on the addresses actually watched)."""
        self.rotations = 0
        """Re-ranks that changed the watchlist."""
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start the task: once, and again after it failed (logged; the producer goes on either way)."""
        task = self._task
        if task is not None and task.done() and not task.cancelled() and (exc := task.exception()) is not None:
            log.error("adaptive watchlist: the task failed (%s: %s); restarting it", type(exc).__name__, exc)
            self._task = None
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="adaptive-watchlist")

    def close(self) -> None:
        if self._task is not None:
            self._task.cancel()

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.every)
            try:
                await self.rerank()
            except (ConfigError, OSError, RuntimeError) as exc:  # never the producer's end: the next re-rank retries
                log.error("adaptive watchlist: re-ranking failed (%s: %s)", type(exc).__name__, exc)

    async def rerank(self) -> tuple[list[str], list[str]]:
        """Watch the current plan; returns the addresses that (joined, left)."""
        ranked = (maker.address for maker in self.ranking.top(self.slots + len(self.pinned)))
        wanted = plan(self.pinned, ranked, self.slots)
        joined, left = await self.source.follow(wanted)
        if joined or left:
            self.rotations += 1
            if self.on_change is not None:
                self.on_change(wanted)
            log.info(
                "adaptive watchlist: %d watched (%d pinned); joined: %s; left: %s",
                len(wanted),
                len(self.pinned),
                ",".join(joined) or "none",
                ",".join(left) or "none",
            )
        return joined, left


def build_adaptive(config: ProducerConfig, source: object, coverage: CoverageWatch | None) -> AdaptiveWatchlist | None:
    """The adaptive watchlist when turned on (the settings were checked by the configuration)."""
    if not config.adaptive or not isinstance(source, WsSource) or coverage is None:
        return None

    def watched(addresses: Sequence[str]) -> None:
        coverage.watched = list(addresses)

    return AdaptiveWatchlist(
        source,
        coverage.ranking,
        config.watchlist,
        slots=config.adaptive_slots,
        every=config.adaptive_every,
        on_change=watched,
    )
