"""The ``ws`` source: the watched addresses' fills, pushed by the exchange's public WebSocket as they happen.

It needs no key and no node, and sees what the ``fills`` source sees (the liquidations whose legs touch a watched
address), but within milliseconds instead of a poll interval. The public feed has three traps, each handled here:

- **At most 10 users per IP.** The exchange refuses an 11th distinct ``userFills`` user, so the watchlist is capped
  at :data:`MAX_USERS`; a refusal (another process on the same IP holds slots) makes the source unhealthy, loudly.
- **Snapshots repeat history.** The first message of every subscription is a snapshot of the user's recent fills,
  most of them handled already. Every fill passes one filter (the address's checkpointed watermark and the trade
  ids already taken), so a snapshot adds only what was missed, and nothing is published twice.
- **A disconnect is blind.** Subscriptions die with the connection and the feed does not replay. After every
  (re)connect, and after a frame that did not decode (it may have carried fills), each address is read over REST
  (``userFillsByTime``) from its watermark, and until that read is in,
  the address's fills are held: a liquidation is detected from the snapshot, the gap-fill and the live pushes
  together, never from a part of them. The reads of the addresses follow one another, so a sweep that found
  liquidations the socket had not delivered is confirmed by a second one.

A liquidation's legs on different watched addresses arrive as one message per address, so a block's fills are held
until they can be complete: a block whose every liquidation is whole already (the liquidated user's own fills, or a
backstop's vault fill) goes out at once; any other goes out when the feed shows a later block, when the pong of a
ping sent behind it comes back (a barrier: the server queued the block's other pushes before it read our ping, so
they arrived before the pong, one round trip after the push), or after ``quiet`` seconds on a live connection.
That the server answers a ping behind what it already queued is how a WebSocket server works, not a documented
promise of the exchange: ``quiet`` bounds the wait if the pong does not come.

Beside the WebSocket's addresses, an adaptive watchlist's next makers are read over REST in turn
(:mod:`producer.sources.polled_makers`): only when no pushed block waits to go out, so they never delay one.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import replace
from urllib.parse import urlsplit, urlunsplit

from plumbing.errors import ConfigError
from plumbing.recent_keys import RecentKeys
from producer.client import HyperliquidClient
from producer.detector import detect_from_fills
from producer.exchange_types import Fill
from producer.feed_messages import ChannelError, LiquidationFill, Pong, UserFills, user_fills
from producer.sources.base import PollResult
from producer.sources.fills import CLOCK_SKEW_MS, WATERMARK_PREFIX, read_fills, read_from
from producer.sources.polled_makers import PolledMakers, has_room, room_in
from producer.sources.pushed import PushedSource
from producer.websocket import Connected, Disconnected, FeedEvent, FeedSettings, Malformed, WebSocketFeed
from schemas import Event

log = logging.getLogger(__name__)

MAX_USERS = 10
"""Distinct users the exchange lets one IP follow over ``userFills``."""


# ---------------------------------------------------------------------------------------------- pure decisions


def public_ws_url(api_url: str) -> str:
    """The WebSocket beside an info API: ``https://api.hyperliquid.xyz`` → ``wss://api.hyperliquid.xyz/ws``."""
    parts = urlsplit(api_url)
    scheme = {"https": "wss", "http": "ws"}.get(parts.scheme, parts.scheme)
    return urlunsplit((scheme, parts.netloc, parts.path.rstrip("/") + "/ws", "", ""))


def ws_settings(url: str, watchlist: Sequence[str]) -> FeedSettings:
    """The public feed with one ``userFills`` subscription per watched address."""
    return FeedSettings(dialect="public", url=url, subscriptions=tuple(user_fills(a) for a in watchlist))


def watchlist_problem(watchlist: Sequence[str]) -> str | None:
    """Why the ws source cannot follow ``watchlist``, or None."""
    if not watchlist:
        return "--watchlist / HL_WATCHLIST is empty: the ws source needs at least one address"
    if len(watchlist) > MAX_USERS:
        return (
            f"--watchlist / HL_WATCHLIST has {len(watchlist)} addresses; the exchange's WebSocket follows at most "
            f"{MAX_USERS} per IP: shorten the watchlist, or use --source fills to poll them all"
        )
    return None


def whole(pairs: Iterable[LiquidationFill]) -> bool:
    """Whether every liquidation among ``pairs`` is complete as far as a watcher can see: a leg of the liquidated
    user's own (its message carries all its legs of the block) or a backstop (the vault took the whole position)."""
    open_keys: set[tuple[str, str, str]] = set()
    closed: set[tuple[str, str, str]] = set()
    for owner, fill in pairs:
        info = fill.liquidation
        if info is None:
            continue
        key = (fill.hash, fill.coin, info.liquidatedUser.lower())
        if owner.lower() == key[2] or info.method == "backstop":
            closed.add(key)
        else:
            open_keys.add(key)
    return open_keys <= closed


def releasable(
    pending: Mapping[int, list[LiquidationFill]], newest: int | None, *, quiet: bool, flushed: Collection[int] = ()
) -> list[int]:
    """The held blocks that can take no more legs: older than the newest seen, behind a barrier's pong, whole, or
    all of them once quiet."""
    return sorted(
        block
        for block, pairs in pending.items()
        if quiet or (newest is not None and block < newest) or block in flushed or whole(pairs)
    )


def watermark(newest_seen: int | None, oldest_held: int | None, now_ms: int) -> int | None:
    """Where the address's next read would start: its newest fill taken, but not past a fill still held (it must
    be read again after a restart) nor past now."""
    if newest_seen is None:
        return None
    mark = newest_seen if oldest_held is None else min(newest_seen, oldest_held)
    return min(mark, now_ms)


# ---------------------------------------------------------------------------------------------- the source


class WsSource(PushedSource):
    """``userFills`` of up to 10 addresses over the public WebSocket, gap-filled over REST after every connect."""

    name = "ws"

    def __init__(
        self,
        client: HyperliquidClient,
        watchlist: Sequence[str],
        *,
        url: str,
        lookback_ms: int,
        quiet: float = 0.2,
        max_hold_polls: int = 6,
        settings: FeedSettings | None = None,
        feed: WebSocketFeed | None = None,
        polled_every: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if (problem := watchlist_problem(watchlist)) is not None:
            raise ConfigError(problem)
        super().__init__()
        self.client = client
        self.watchlist = [address.lower() for address in watchlist]
        self.lookback_ms = lookback_ms
        self.quiet = quiet
        self.max_hold_polls = max_hold_polls
        self.settings = settings or ws_settings(url, self.watchlist)
        self.feed = feed or WebSocketFeed(self.settings)
        self._clock = clock
        self.watermarks: dict[str, int] = {}
        """Per address, the checkpointed position: fills before it were handled (the ``fills`` source's too)."""
        self._newest: dict[str, int] = {}
        """Per address, the newest fill taken (published, or nothing to publish)."""
        self._taken = RecentKeys()
        """``address|tid`` of every fill taken: snapshots, gap-fills and live pushes overlap."""
        self._pending: dict[int, list[LiquidationFill]] = {}
        """Liquidation fills per block time, held until their block can take no more legs."""
        self._newest_block: int | None = None
        self._last_push = clock()
        self._unfilled: dict[str, int] = {}
        self._unconfirmed = 0
        """Liquidation fills the current sweep (or a snapshot) showed in blocks the socket has not delivered."""
        """Addresses whose gap-fill after the last connect is not in yet, with the polls it has failed."""
        self._refused: str | None = None
        self._connected = False
        """Whether pushes arrive: while they do not, a held block's missing legs may be in flight nowhere."""
        self._items = 0
        """Fills pushed and taken since the last poll."""
        self._barrier: set[int] | None = None
        """The held blocks behind the ping sent as a barrier, until its pong."""
        self._flushed: set[int] = set()
        """Held blocks a pong has shown complete."""
        self._joining: dict[str, int | None] = {}
        """Addresses that joined the watchlist on the open connection, whose history is being read, page by page:
        where the next page starts (None: from the watermark or the lookback)."""
        self._join_failures: dict[str, int] = {}
        self.polled = PolledMakers(polled_every, clock=clock)
        """The makers read over REST beyond the WebSocket's slots (an adaptive watchlist's; none otherwise)."""

    def _due_in(self) -> float | None:
        due: list[float] = []
        if self._pending and not self._unfilled and self._connected:  # disconnected, quiet time releases nothing
            due.append(self._last_push + self.quiet - self._clock())
        if self._unfilled:  # the reads beside the WebSocket wait for the gap-fill, at its pace
            return min(due, default=None)
        if (polled := self.polled.due_in()) is not None:
            due.append(max(polled, room_in(self.client.budget)))
        if any(address not in self._join_failures for address in self._joining):  # a failed one waits for a poll
            due.append(room_in(self.client.budget))
        return min(due, default=None)

    def restore(self, checkpoint: Mapping[str, str]) -> None:
        # Every address's watermark, watched or not: one that joins later (an adaptive watchlist's maker) is
        # gap-filled from where it was left, not from the whole lookback.
        for name, value in checkpoint.items():
            if name.startswith(WATERMARK_PREFIX):
                address = name.removeprefix(WATERMARK_PREFIX)
                self.watermarks[address] = max(int(value), self.watermarks.get(address, 0))

    async def follow(self, watchlist: Sequence[str], polled: Sequence[str] = ()) -> tuple[list[str], list[str]]:
        """Watch ``watchlist`` from now on, and read ``polled`` over REST beside it; returns the addresses that
        (joined, left) the WebSocket's watchlist.

        A joining address is subscribed on the open connection and its history read over REST from its watermark
        (or the lookback), a page a poll, while the budget has room and no push waits (:meth:`_catch_up`): the
        others' blocks do not wait for it, as they did not before it joined. A leaving one is unsubscribed, and its
        late pushes are ignored (its fills already held still go out with their block). The feed's subscriptions
        change too, so a reconnect subscribes the current set.
        """
        if (problem := watchlist_problem(watchlist)) is not None:
            raise ConfigError(problem)
        wanted = list(dict.fromkeys(address.lower() for address in watchlist))
        self.polled.set([address for address in polled if address.lower() not in wanted])
        joined = [address for address in wanted if address not in self.watchlist]
        left = [address for address in self.watchlist if address not in wanted]
        if not joined and not left:
            return joined, left
        self.watchlist = wanted
        for address in left:
            self._unfilled.pop(address, None)
            self._joining.pop(address, None)
            self._join_failures.pop(address, None)
        for address in joined:
            self._joining[address] = None
        self.settings = replace(self.settings, subscriptions=tuple(user_fills(a) for a in wanted))
        await self.feed.follow(self.settings.subscriptions)
        self._arrived.set()
        return joined, left

    async def _run(self) -> None:
        async for event in self.feed.events():
            self.take(event, int(time.time() * 1000))
            await self._send_barrier()

    async def _send_barrier(self) -> None:
        """Ping behind the held blocks that wait for other makers' pushes: the server queued those pushes in the
        same moment as the ones we have, before it read our ping, so its pong says they have all arrived."""
        if self._barrier is None and self._connected and any(b not in self._flushed for b in self._pending):
            blocks = set(self._pending)
            if await self.feed.barrier():
                self._barrier = blocks

    # ------------------------------------------------------------------ what arrives
    def take(self, event: FeedEvent, now_ms: int) -> None:
        """One event of the feed (tests hand them over without a socket)."""
        if isinstance(event, UserFills):
            address = event.data.user.lower()
            if address in self.watchlist:
                live = not event.data.is_snapshot
                confirm = address not in self._joining  # a joiner's snapshot is history, as its catch-up reads
                self._items += self._take_fills(address, event.data.fills, now_ms, live=live, confirm=confirm)
        elif isinstance(event, Connected):
            # Whatever happened while disconnected (or before this process started) is read over REST.
            self._unfilled = self._sweep()
            self._unconfirmed = 0
            self._connected = True
            self._refused = None
            self._arrived.set()
        elif isinstance(event, Malformed):
            # The frame may have been a push of fills: every address is read again, and held until it is.
            self._unfilled = self._sweep()
            self._arrived.set()
        elif isinstance(event, ChannelError):
            if "user" in event.data.lower():
                self._refused = event.data
            self._arrived.set()
        elif isinstance(event, Pong):
            if self._barrier is not None:
                self._flushed |= self._barrier
                self._barrier = None
                self._arrived.set()
        elif isinstance(event, Disconnected):
            self._connected = False
            self._barrier = None  # no pong will come
            self._arrived.set()

    def _take_fills(self, address: str, fills: Sequence[Fill], now_ms: int, *, live: bool, confirm: bool = True) -> int:
        """Hold the liquidation fills not taken before; returns how many fills were new.

        Only a live push says the feed has moved on to its block: the pushes of one connection come in block
        order, while a snapshot or a REST answer says nothing about what the socket has delivered. A REST answer
        with blocks the socket has not shown is confirmed by a second sweep, unless ``confirm`` is off (a joining
        address's history: the others were not waiting for its legs).
        """
        new = 0
        if live and fills:  # a push of a fill taken already (a snapshot's, say) still says how far the socket is
            self._newest_block = max(self._newest_block or 0, max(fill.time for fill in fills))
        for fill in self._fresh(address, fills, now_ms):
            new += 1
            if fill.liquidation is not None:
                self._pending.setdefault(fill.time, []).append((address, fill))
                if live:  # the quiet time waits for other pushes; a gap-fill has read every address already
                    self._last_push = self._clock()
                elif confirm and fill.time > (self._newest_block or 0):
                    self._unconfirmed += 1
                self._arrived.set()
        if self._unconfirmed and not self._unfilled:
            self._unfilled = self._sweep()  # a snapshot after the sweep: confirm it too
        return new

    def _sweep(self) -> dict[str, int]:
        """Every watched address for a gap-fill sweep, with no failed polls yet; not those still joining: their
        history is being read (:meth:`_catch_up`) up to now, which covers a disconnect too."""
        return dict.fromkeys((address for address in self.watchlist if address not in self._joining), 0)

    def _fresh(self, address: str, fills: Iterable[Fill], now_ms: int) -> Iterator[Fill]:
        """The fills of ``address`` not taken before (snapshots, gap-fills, pushes and polled reads overlap), each
        taken as it is yielded."""
        floor = read_from(self.watermarks.get(address), now_ms, self.lookback_ms)
        for fill in fills:
            if fill.time >= floor and self._taken.add(f"{address}|{fill.tid}"):
                self._newest[address] = max(self._newest.get(address, 0), fill.time)
                yield fill

    # ------------------------------------------------------------------ polling
    async def _gap_fill(self, now_ms: int, result: PollResult) -> None:
        """Read each address not gap-filled since the connect; one that keeps failing is let go after a while."""
        sweep = self._unfilled
        for address in list(sweep):
            start = read_from(self.watermarks.get(address), now_ms, self.lookback_ms)
            fills, error, future, _ = await read_fills(self.client, address, start, now_ms + CLOCK_SKEW_MS)
            result.items += self._take_fills(address, fills, now_ms, live=False)
            result.skipped += len(future)
            if self._unfilled is not sweep:
                # A reconnect (or a lost frame) began a new sweep during the read, which may predate it: the new
                # sweep reads every address again, this one included, at the next poll.
                return
            if address not in self._unfilled:
                continue  # it left the watchlist during the read (see follow)
            if error is None:
                del self._unfilled[address]
                continue
            result.errors.append(error)
            failures = self._unfilled[address] = self._unfilled[address] + 1
            if failures > self.max_hold_polls:
                log.error(
                    "ws: gap-fill of %s failed %d polls in a row: publishing without it; liquidations of the "
                    "disconnected time may lack its legs (a restart reads it again from its watermark)",
                    address,
                    failures - 1,
                )
                del self._unfilled[address]
        result.unreachable = len(result.errors) == len(self.watchlist) and not result.items
        if not self._unfilled and self._unconfirmed:
            # This sweep found liquidations the socket has not shown. The addresses were read one after another,
            # so one read early may lack a leg that happened before a later read (and whose push the socket,
            # stalled or gone, never brought): one more sweep, begun after they were all seen, has every leg.
            self._unconfirmed = 0
            self._unfilled = self._sweep()
            self._arrived.set()
        elif not self._unfilled:
            # A leg of a block the REST answers showed may still be on its way as a push (an address read before
            # the block happened has it pushed): one quiet time from here, as after a push.
            self._last_push = self._clock()

    def _may_read(self) -> bool:
        """Whether a read beside the WebSocket may go now: the budget has room, and no push waits to go out."""
        return has_room(self.client.budget) and not (self._arrived.is_set() and self._pending)

    async def _catch_up(self, now_ms: int, result: PollResult) -> None:
        """Read the joining addresses' history a page each, their fills held like pushes; one that keeps failing is
        watched from now on after a while (logged)."""
        for address, start in list(self._joining.items()):
            if not self._may_read():
                return
            begin = read_from(self.watermarks.get(address), now_ms, self.lookback_ms) if start is None else start
            read = await read_fills(self.client, address, begin, now_ms + CLOCK_SKEW_MS, max_pages=1)
            if address not in self._joining:
                continue  # it left during the read (see follow)
            result.items += self._take_fills(address, read.fills, now_ms, live=False, confirm=False)
            result.skipped += len(read.future)
            if read.error is None:
                self._join_failures.pop(address, None)
                if read.read_on is None:
                    del self._joining[address]  # caught up: its watermark moves with its fills from now on
                else:
                    self._joining[address] = read.read_on
                continue
            result.errors.append(read.error)
            failures = self._join_failures[address] = self._join_failures.get(address, 0) + 1
            if failures > self.max_hold_polls:
                log.error(
                    "ws: reading the history of %s, which joined the watchlist, failed %d polls in a row: watching "
                    "it from now on; its liquidations before may be missing",
                    address,
                    failures - 1,
                )
                del self._joining[address]
                del self._join_failures[address]

    async def _read_polled(self, now_ms: int, result: PollResult) -> list[Event]:
        """Read the polled makers that are due, while the budget has room and no push waits for release; their
        liquidations, each from the fills read (partial: see :mod:`producer.sources.polled_makers`)."""
        observed: list[LiquidationFill] = []
        for address in self.polled.due():
            if not self._may_read():
                break
            start = read_from(self.watermarks.get(address), now_ms, self.lookback_ms)
            # One page a turn: a maker's first read may span the whole lookback, thousands of fills (pages of 120
            # weight each), and the next turn reads on from where this one stopped.
            fills, error, future, _ = await read_fills(self.client, address, start, now_ms + CLOCK_SKEW_MS, max_pages=1)
            self.polled.read(address)
            result.skipped += len(future)
            if error is not None:
                result.errors.append(error)
            for fill in self._fresh(address, fills, now_ms):
                result.items += 1
                if fill.liquidation is not None:
                    observed.append((address, fill))
        return detect_from_fills(observed, source="fills", detected_at=now_ms)

    def _checkpoint(self, now_ms: int) -> dict[str, str]:
        oldest_held: dict[str, int] = {}
        for block, pairs in self._pending.items():
            for address, _ in pairs:
                oldest_held[address] = min(oldest_held.get(address, block), block)
        checkpoint: dict[str, str] = {}
        for address in [*self.watchlist, *self.polled.addresses]:
            if address in self._unfilled or address in self._joining:
                continue  # its gap-fill must still start where the last connection left it, its history be read
            mark = watermark(self._newest.get(address), oldest_held.get(address), now_ms)
            if mark is not None and mark > self.watermarks.get(address, 0):
                self.watermarks[address] = mark
                checkpoint[WATERMARK_PREFIX + address] = str(mark)
        return checkpoint

    async def poll(self, now_ms: int) -> PollResult:
        self._started()
        self._arrived.clear()
        result = PollResult(items=self._items)
        self._items = 0
        if self._unfilled:
            await self._gap_fill(now_ms, result)
        observed: list[LiquidationFill] = []
        if not self._unfilled:
            # Quiet means "no more legs coming" only on a live connection. Disconnected, the REST reads of the
            # addresses were taken at different moments, so only blocks the connection itself got past are whole.
            quiet = self._connected and self._clock() - self._last_push >= self.quiet
            for block in releasable(self._pending, self._newest_block, quiet=quiet, flushed=self._flushed):
                observed.extend(self._pending.pop(block))
                self._flushed.discard(block)
        result.events = detect_from_fills(observed, source="ws", detected_at=now_ms)
        if not self._unfilled and (self._joining or self.polled.addresses):
            if observed:
                self._arrived.set()  # the pushed events go out first; the reads follow at once
            else:
                await self._catch_up(now_ms, result)
                result.events.extend(await self._read_polled(now_ms, result))
        result.checkpoint = self._checkpoint(now_ms)
        if not self._unfilled:
            await self._send_barrier()  # the blocks a gap-fill showed may have pushes on their way too
        if self._refused is not None:
            result.problem = f"the exchange refused a userFills subscription: {self._refused!r}"
        elif not self.feed.is_healthy():
            result.problem = (
                f"the public WebSocket has been disconnected for more than {self.settings.unhealthy_after:g}s "
                "(the log says why)"
            )
        return result
