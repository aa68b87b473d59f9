"""The ``fills`` source: ``userFillsByTime`` for each watched address, from a per-address watermark that is
checkpointed in Redis with the events it produced, so a restarted producer resumes where the last publish left it.
It sees the liquidations that touched a watched address: every backstop liquidation when the liquidator vaults are
watched, and the market liquidations that the watched makers absorbed.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import NamedTuple

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
    """Fills of a watchlist of addresses, paged forward from per-address positions.

    A published event is never amended (its key keeps any later version out), so a liquidation is published
    only once every watched address is known to hold no leg of it that was not read. The addresses are read one
    after another, and a block that lands mid-sweep shows up at the addresses read after it and not at those read
    before. Which addresses may still lack legs of a liquidation first seen in a sweep, and so must be read
    again? Not the ones its legs name: any watched address can be the counterparty of any leg, so nothing in a
    fill says who else took part. Not the ones read after the liquidation's time by our clock either: a block
    reaches the API some time after the time it is stamped with, and the two clocks drift. What the exchange
    does guarantee is order: a block visible to one read is visible to every read begun after it, and blocks
    become visible in the order of their times. So an address ``b`` is complete for a liquidation at time ``t``
    when

    * ``b``'s last good read began no earlier than the read that first returned a fill of the liquidation's block
      (that read proves the block had landed; ``b``'s own read returning a leg is that read), or
    * ``b`` has been read past ``t``: its position (the newest fill time read) is after ``t``, so a later block
      had landed when it was read (strictly after: two blocks may share a millisecond), or
    * ``b`` has been unreadable for longer than its allowance of held polls: liveness wins.

    A sweep reads every address; when it leaves liquidations waiting, a confirming read follows at once, of only
    the addresses not complete for them, each from its own position (what it returned before is kept in memory,
    not read again). A liquidation at the first watched address is complete without a second read; one seen
    at the last address whose earlier addresses had nothing newer costs one read per earlier address.
    """

    name = "fills"

    def __init__(
        self, client: HyperliquidClient, watchlist: Sequence[str], *, lookback_ms: int, max_hold_polls: int = 6
    ) -> None:
        self.client = client
        self.watchlist = [address.lower() for address in watchlist]
        self.lookback_ms = lookback_ms
        self.max_hold_polls = max_hold_polls
        self.watermarks: dict[str, int] = {}
        """Per address, where a restarted producer's first read starts (inclusive), as checkpointed: the time of
        the newest fill read, never past now, and held back to the earliest liquidation fill not yet handed over
        and to the position of an unreadable address (a restart forgets what this process keeps in memory)."""
        self.positions: dict[str, int] = {}
        """Per address, where this process's next read starts (inclusive): every fill of the address stamped
        before it has been read, and the liquidation fills not yet handed over are in :attr:`_held`."""
        self.failures: dict[str, int] = {}
        """Per address, the polls in a row that could not read it."""
        self._reads = 0
        """Reads begun so far: the order of reads, which is what tells a read begun after a block landed."""
        self._read_at: dict[str, int] = {}
        """Per address, the order number of its last good read."""
        self._held: dict[tuple[str, int], tuple[str, Fill, int]] = {}
        """Liquidation fills of the events not yet handed over, by (address, tid): the address, the fill, and the
        order number of the read that first returned it."""
        self._excused: set[str] = set()
        """Addresses unreadable for longer than their allowance: liquidations no longer wait for them."""
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
                if address in self.positions:
                    self.positions[address] = max(self.positions[address], self.watermarks[address])

    async def poll(self, now_ms: int) -> PollResult:
        """A sweep of the watchlist, then, if liquidations wait, one read of each address that may lack their legs
        (see the class); returns the liquidations seen whole. What still waits is confirmed by the next poll."""
        result = PollResult()
        ready: dict[str, Event] = {}
        addresses = self.watchlist
        read: set[str] = set()
        for sweep in range(2):
            confirmed, again, failing = await self._sweep(addresses, now_ms, result, read, full=sweep == 0)
            ready.update((event.key, event) for event in confirmed)
            if not again or failing:  # an address that holds the others back would fail the read again
                break
            addresses = again
        self._checkpoint(now_ms, result, read)
        result.events = sorted(ready.values(), key=lambda e: (e.timestamp, e.key))
        return result

    async def _sweep(
        self, addresses: Sequence[str], now_ms: int, result: PollResult, read: set[str], *, full: bool
    ) -> tuple[list[Event], list[str], bool]:
        """Read ``addresses`` once each (adding those that returned fills to ``read``): the events now complete,
        the addresses to read again for those still waiting, and whether an unreadable address holds liquidations
        back."""
        failed: list[str] = []
        for address in addresses:
            start = read_from(self._position(address), now_ms, self.lookback_ms)
            order = self._reads
            self._reads += 1
            fills, error, future, _ = await read_fills(self.client, address, start, now_ms + CLOCK_SKEW_MS)
            for fill in fills:
                if fill.liquidation is not None:
                    self._held.setdefault((address, fill.tid), (address, fill, order))
            result.items += len(fills)
            result.skipped += self._skip_future(address, future, now_ms)
            if fills:
                read.add(address)
                # A fill within the skew allowance is believed, but the next read still starts no later than now.
                self.positions[address] = min(max(start, fills[-1].time), now_ms)
            if error is None:
                self.failures.pop(address, None)
                self._read_at[address] = order
                self._excused.discard(address)
            else:
                result.errors.append(error)
                failed.append(address)
        # When every address failed, the exchange is out, not one address: that uses up no address's allowance.
        outage = full and len(failed) == len(self.watchlist)
        if outage and result.items == 0:
            result.unreachable = True
        failing = False
        for address in failed:
            if outage or self._hold_for(address):
                failing = True
                self._excused.discard(address)
            else:
                self._excused.add(address)
        # One detector pass over every held fill, so all legs of a trade meet before the event is built.
        observed = [(address, fill) for address, fill, _ in self._held.values()]
        events = self._returned.fresh_peek(detect_from_fills(observed, source="fills", detected_at=now_ms))
        landed = self._landed()
        confirmed: list[Event] = []
        again: set[str] = set()
        waiting: set[int] = set()
        for event in events:
            lacking = self._lacking(event, min((landed[tid] for tid in event.tids), default=self._reads))
            if lacking:
                again.update(lacking)
                waiting.update(event.tids)
            else:
                confirmed.append(event)
        self._returned.fresh(confirmed)
        self._held = {key: held for key, held in self._held.items() if held[1].tid in waiting}
        return confirmed, [a for a in self.watchlist if a in again], failing

    def _position(self, address: str) -> int | None:
        position = self.positions.get(address)
        return self.watermarks.get(address) if position is None else position

    def _landed(self) -> dict[int, int]:
        """Per trade id held, the order number of the first read that returned it: its block had landed then."""
        landed: dict[int, int] = {}
        for _, fill, order in self._held.values():
            landed[fill.tid] = min(order, landed.get(fill.tid, order))
        return landed

    def _lacking(self, event: Event, landed: int) -> list[str]:
        """The watched addresses that may hold legs of ``event`` not read yet (see the class for the rule)."""
        return [
            address
            for address in self.watchlist
            if address not in self._excused
            and self._read_at.get(address, -1) < landed
            and (self._position(address) or 0) <= event.timestamp
        ]

    def _checkpoint(self, now_ms: int, result: PollResult, read: set[str]) -> None:
        """Record the position of each address that moved or returned fills, held back to what a restart must
        read again to find what waits (a restart forgets the held fills)."""
        holds = [fill.time for _, fill, _ in self._held.values()]
        holds += [
            read_from(self._position(a), now_ms, self.lookback_ms)
            for a in self.watchlist
            if self.failures.get(a, 0) and a not in self._excused
        ]
        horizon = min(holds) if holds else None
        for address, position in self.positions.items():
            old = self.watermarks.get(address)
            mark = position if horizon is None else min(position, horizon)
            mark = mark if old is None else max(min(old, now_ms), mark)
            if mark != old or address in read:
                self.watermarks[address] = mark
                result.checkpoint[WATERMARK_PREFIX + address] = str(mark)

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


class FillsRead(NamedTuple):
    """What :func:`read_fills` read: the fills, the error that stopped the read (what was read before it is kept),
    the fills stamped after ``latest`` (which cannot be real), and where to read on when it stopped at
    ``max_pages`` with more to read (None when it reached the end or an error)."""

    fills: list[Fill]
    error: str | None
    future: list[Fill]
    read_on: int | None = None


async def read_fills(
    client: HyperliquidClient, address: str, start: int, latest: int, *, max_pages: int | None = None
) -> FillsRead:
    """The fills of ``address`` from ``start`` to ``latest``, page by page: all of them, or ``max_pages`` at most
    (the caller reads on from :attr:`FillsRead.read_on` later)."""
    fills: list[Fill] = []
    seen: set[int] = set()
    future: list[Fill] = []
    pages = 0
    while max_pages is None or pages < max_pages:
        pages += 1
        try:
            page = await client.user_fills_by_time(address, start)
        except ExchangeError as exc:
            log.warning("fills of %s: %s", address, exc)
            return FillsRead(fills, f"{address}: {exc}", future)
        if page.answered and not page.fills:
            # Not one item decodes (wrong types, a schema change): as unreadable as an answer that is not JSON.
            log.warning("fills of %s: none of the %d items of the answer is well formed", address, page.answered)
            error = f"{address}: none of the {page.answered} items of the answer is well formed"
            return FillsRead(fills, error, future)
        believable, ahead = split_future(page.fills, latest)
        future.extend(f for f in ahead if f.tid not in seen)
        seen.update(f.tid for f in ahead)
        fresh = [f for f in believable if f.tid not in seen]
        seen.update(f.tid for f in fresh)
        fills.extend(fresh)
        if page.answered < MAX_FILLS_PER_ANSWER or ahead or not believable:
            # Fills come oldest first: past one from the future there is nothing believable to page to.
            return FillsRead(fills, None, future)
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
    return FillsRead(fills, None, future, read_on=start)
