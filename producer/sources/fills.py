"""The ``fills`` source: ``userFillsByTime`` for each watched address, from a per-address watermark that is
checkpointed in Redis with the events it produced, so a restarted producer resumes where the last publish left it.
It sees the liquidations that touched a watched address: every backstop liquidation when the liquidator vaults are
watched, and the market liquidations that the watched makers absorbed.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

from plumbing.recent_keys import RecentKeys
from producer.client import MAX_FILLS_PER_ANSWER, HyperliquidClient
from producer.detector import detect_from_fills
from producer.errors import ExchangeError
from producer.exchange_types import Fill
from producer.sources.base import LiquidationSource, PollResult
from schemas import Event

log = logging.getLogger(__name__)

WATERMARK_PREFIX = "fills:"

CLOCK_SKEW_MS = 60_000
"""How far ahead of our clock a fill's time may be and still be believed: the exchange's clock and ours drift a
little. A fill stamped further ahead cannot be real yet; taken at its word it would move the address's
watermark into the future, and the address would not be read again until then."""


class FillsSource(LiquidationSource):
    """Fills of a watchlist of addresses, paged forward from per-address watermarks."""

    name = "fills"

    def __init__(
        self, client: HyperliquidClient, watchlist: Sequence[str], *, lookback_ms: int, max_hold_polls: int = 6
    ) -> None:
        self.client = client
        self.watchlist = [address.lower() for address in watchlist]
        self.lookback_ms = lookback_ms
        self.max_hold_polls = max_hold_polls
        self.watermarks: dict[str, int] = {}
        """Per address, where the next read starts (inclusive): the time of the newest fill read, never past now,
        and pulled back to the earliest liquidation still waiting for confirmation or for an unreadable address."""
        self.failures: dict[str, int] = {}
        """Per address, the polls in a row that could not read it."""
        self._sighted: set[str] = set()
        """Keys of liquidations the last sweep saw for the first time; the next sweep confirms them."""
        self._returned = RecentKeys()
        """Keys already handed to the publisher; a re-read of them is neither held nor returned again."""
        self._skipped_tids: set[int] = set()
        """Trade ids of fills from the future already counted and logged: every poll reads them again."""

    def close(self) -> None:
        pass

    def restore(self, checkpoint: Mapping[str, str]) -> None:
        for name, value in checkpoint.items():
            if name.startswith(WATERMARK_PREFIX):
                address = name.removeprefix(WATERMARK_PREFIX)
                # Never move backwards: what this process already read is in its outbox.
                self.watermarks[address] = max(int(value), self.watermarks.get(address, 0))

    async def poll(self, now_ms: int) -> PollResult:
        """One or two sweeps of the watchlist; returns the liquidations seen whole.

        The addresses are read one after another, so a block that lands mid-sweep shows up at the addresses read
        after it and not at those read before: a liquidation first seen in a sweep may lack legs. A published
        event is never amended (its key keeps any later version out), so a liquidation is published only from
        the sweep after the one that first saw it; when a sweep found new ones, the confirming sweep follows at
        once, re-reading every address from the earliest of them.
        """
        result = PollResult()
        ready: dict[str, Event] = {}
        for _ in range(2):
            confirmed, waiting, failing = await self._sweep(now_ms, result)
            ready.update((event.key, event) for event in confirmed)
            if not waiting or failing:  # an address that holds the others back would fail the sweep again
                break
        result.events = sorted(ready.values(), key=lambda e: (e.timestamp, e.key))
        return result

    async def _sweep(self, now_ms: int, result: PollResult) -> tuple[list[Event], bool, bool]:
        """Read every address once: the events confirmed by an earlier sweep, whether new ones wait, and whether
        an unreadable address holds liquidations back."""
        observed: list[tuple[str, Fill]] = []
        newest: dict[str, int] = {}
        failed: dict[str, int] = {}
        for address in self.watchlist:
            start = read_from(self.watermarks.get(address), now_ms, self.lookback_ms)
            fills, error, future = await read_fills(self.client, address, start, now_ms + CLOCK_SKEW_MS)
            observed.extend((address, fill) for fill in fills if fill.liquidation is not None)
            result.items += len(fills)
            result.skipped += self._skip_future(address, future, now_ms)
            if fills:
                # A fill within the skew allowance is believed, but the next read still starts no later than now.
                newest[address] = min(max(start, fills[-1].time), now_ms)
            if error is None:
                self.failures.pop(address, None)
            else:
                result.errors.append(error)
                failed[address] = newest.get(address, start)
        # When every address failed, the exchange is out, not one address: that uses up no address's allowance.
        outage = len(failed) == len(self.watchlist)
        if outage and result.items == 0:
            result.unreachable = True
        holding = [reached for address, reached in failed.items() if outage or self._hold_for(address)]
        horizon = min(holding) if holding else None
        failing = horizon is not None
        if horizon is not None:
            # An address we could not read may hold legs of any liquidation from its position on: those wait.
            observed = [(address, fill) for address, fill in observed if fill.time < horizon]
        # One detector pass over every address's fills, so both legs of a trade meet before the event is built.
        events = self._returned.fresh_peek(detect_from_fills(observed, source="fills", detected_at=now_ms))
        confirmed = [e for e in events if e.key in self._sighted]
        waiting = [e for e in events if e.key not in self._sighted]
        self._sighted = {e.key for e in waiting}
        self._returned.fresh(confirmed)
        if waiting:
            first = min(e.timestamp for e in waiting)
            horizon = first if horizon is None else min(horizon, first)
        if horizon is not None:
            # Every address is read again from the horizon, so what waits is seen whole by the next sweep.
            newest = {a: max(min(self.watermarks.get(a, 0), now_ms), min(t, horizon)) for a, t in newest.items()}
        for address, time in newest.items():
            self.watermarks[address] = time
            result.checkpoint[WATERMARK_PREFIX + address] = str(time)
        return confirmed, bool(waiting), failing

    def _hold_for(self, address: str) -> bool:
        """Whether to hold liquidations back for a failing address; after too many polls, liveness wins."""
        failures = self.failures[address] = self.failures.get(address, 0) + 1
        if failures <= self.max_hold_polls:
            log.warning(
                "fills of %s unreadable (%d/%d): holding back liquidations from its position on",
                address,
                failures,
                self.max_hold_polls,
            )
            return True
        if failures == self.max_hold_polls + 1:
            log.error(
                "fills of %s unreadable for %d polls: publishing without it; liquidations it shares with "
                "other watched addresses lack its legs until it answers again",
                address,
                failures - 1,
            )
        return False

    def _skip_future(self, address: str, future: Sequence[Fill], now_ms: int) -> int:
        """Count and log the fills from the future not reported before; returns how many that is."""
        new = [f for f in future if f.tid not in self._skipped_tids]
        if not new:
            return 0
        if len(self._skipped_tids) > 100_000:  # bounded: a few polls' worth of re-reads is all it must cover
            self._skipped_tids.clear()
        self._skipped_tids.update(f.tid for f in new)
        ahead_s = (max(f.time for f in new) - now_ms) / 1000
        log.error(
            "fills of %s: skipped %d fills stamped more than %d s ahead of our clock (up to %.0f s ahead): the "
            "exchange's clock or this host's is wrong; check this host's time (NTP)",
            address,
            len(new),
            CLOCK_SKEW_MS // 1000,
            ahead_s,
        )
        return len(new)


def read_from(watermark: int | None, now_ms: int, lookback_ms: int) -> int:
    """Where an address's next read starts: its watermark, or the lookback for a new address; never in the
    future (a watermark written before the clock check existed may be)."""
    if watermark is None:
        return now_ms - lookback_ms
    return min(watermark, now_ms)


def split_future(fills: Sequence[Fill], latest: int) -> tuple[list[Fill], list[Fill]]:
    """The fills stamped at or before ``latest``, and those after it, which cannot have happened yet."""
    return [f for f in fills if f.time <= latest], [f for f in fills if f.time > latest]


async def read_fills(
    client: HyperliquidClient, address: str, start: int, latest: int
) -> tuple[list[Fill], str | None, list[Fill]]:
    """All fills of ``address`` from ``start`` to ``latest``, page by page: the fills, the error that stopped
    the read (what was read before it is kept), and the fills stamped after ``latest``, which cannot be real.
    """
    fills: list[Fill] = []
    seen: set[int] = set()
    future: list[Fill] = []
    while True:
        try:
            page = await client.user_fills_by_time(address, start)
        except ExchangeError as exc:
            log.warning("fills of %s: %s", address, exc)
            return fills, f"{address}: {exc}", future
        if page.answered and not page.fills:
            # Not one item decodes (wrong types, a schema change): as unreadable as an answer that is not JSON.
            log.warning("fills of %s: none of the %d items of the answer is well formed", address, page.answered)
            error = f"{address}: none of the {page.answered} items of the answer is well formed"
            return fills, error, future
        believable, ahead = split_future(page.fills, latest)
        future.extend(f for f in ahead if f.tid not in seen)
        seen.update(f.tid for f in ahead)
        fresh = [f for f in believable if f.tid not in seen]
        seen.update(f.tid for f in fresh)
        fills.extend(fresh)
        if page.answered < MAX_FILLS_PER_ANSWER or ahead or not believable:
            # Fills come oldest first: past one from the future there is nothing believable to page to.
            return fills, None, future
        last = believable[-1].time
        if last == start:
            # A full page within one millisecond: paging from the same time would return it again.
            log.warning(
                "fills of %s: over %d fills at %d ms; later ones in that ms are not reachable",
                address,
                MAX_FILLS_PER_ANSWER,
                last,
            )
            last += 1
        start = last
