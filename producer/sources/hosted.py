"""The ``hosted`` source: every liquidation on the venue, in real time, from a provider's ``liquidationFills`` feed.

Hydromancer and GoldRush push each liquidation fill of the whole venue, every leg of it, over a WebSocket
(:mod:`producer.websocket` keeps the connection). Every leg is there, so the detector counts a liquidation from the
liquidated user's own fills, as for a node: the figures are exact. Three things make it safe to publish:

- **Whole blocks only.** Hydromancer batches its messages per block (its documentation says so, and its cursor
  names the block), so each message is published as it arrives. GoldRush does not say how it batches, and a
  provider that splits a block over messages would have an event published with a leg missing (a published event
  is never amended): its blocks are held until the feed has moved past them (a later block seen) or has been quiet
  for ``quiet`` seconds.
- **Replays overlap.** Hydromancer replays up to 30 s after a reconnect, starting a little early on purpose. A
  replayed liquidation comes out with the same key and figures, and the publisher's dedup keys drop it.
- **Gaps are said out loud.** What a provider cannot replay (GoldRush after any drop, Hydromancer after a lost
  message or a longer outage) is logged with its window and the command that backfills it from a node's archive,
  and counted.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Literal

from plumbing.options import Secret
from producer.detector import detect_from_fills
from producer.errors import ProducerError
from producer.feed_messages import (
    GoldRushLiquidationFills,
    HydromancerLiquidationFills,
    LiquidationFill,
    liquidation_fills,
)
from producer.sources.base import LiquidationSource, PollResult
from producer.websocket import (
    GOLDRUSH_URL,
    HYDROMANCER_URL,
    KEY_PARAMS,
    Connected,
    Disconnected,
    FeedEvent,
    FeedRejected,
    FeedSettings,
    Gap,
    Malformed,
    WebSocketFeed,
    mask_url,
)

log = logging.getLogger(__name__)

HostedDialect = Literal["hydromancer", "goldrush"]
HOSTED_DIALECTS: tuple[HostedDialect, ...] = ("hydromancer", "goldrush")
DEFAULT_URLS: dict[HostedDialect, str] = {"hydromancer": HYDROMANCER_URL, "goldrush": GOLDRUSH_URL}
HOSTED_KEY_MISSING = (
    "HL_HOSTED_KEY is not set: the hosted source needs the provider's API key, from the environment only"
)
WHOLE_BLOCK_MESSAGES: frozenset[str] = frozenset({"hydromancer"})
"""The providers whose every message is one whole block: nothing to wait for."""
REPLAY_SECONDS: dict[str, float] = {"hydromancer": 30.0, "goldrush": 0.0}
"""How far back each provider replays after a reconnect (GoldRush is live only)."""


MALFORMED_WINDOW_MS = 5_000
"""The window logged for a frame that did not decode: a provider pushes each block as it is made, so what such a
frame carried is from the last few seconds."""


class HostedKeyRefused(ProducerError):
    """The provider refused HL_HOSTED_KEY: reconnecting would not help, so the process ends."""


# ---------------------------------------------------------------------------------------------- pure decisions


def feed_settings(dialect: HostedDialect, url: str | None, key: Secret) -> FeedSettings:
    """The feed's settings: the provider's URL (its default unless given) with the key in its query parameter."""
    base = url or DEFAULT_URLS[dialect]
    separator = "&" if "?" in base else "?"
    full = f"{base}{separator}{KEY_PARAMS[dialect]}={key.reveal()}"
    return FeedSettings(dialect=dialect, url=full, subscriptions=(liquidation_fills(),))


def block_of(message: HydromancerLiquidationFills | GoldRushLiquidationFills) -> int:
    """Which block a push belongs to, as a number that grows along the chain: Hydromancer's cursor names the block
    (``block:time:txIndex``); otherwise the fills' block time, which every fill of one block shares."""
    if isinstance(message, HydromancerLiquidationFills) and message.cursor:
        head = message.cursor.partition(":")[0]
        if head.isdigit():
            return int(head)
    pairs = message.fills if isinstance(message, HydromancerLiquidationFills) else message.pairs
    return max((fill.time for _, fill in pairs), default=0)


def complete_blocks(pending: Mapping[int, object], newest: int | None, *, quiet: bool) -> list[int]:
    """The held blocks that can have no more legs coming: those before the newest, and the newest once quiet."""
    return sorted(block for block in pending if quiet or (newest is not None and block < newest))


def missed_window(
    *,
    resumed: bool,
    down_for: float,
    now_ms: int,
    replay_seconds: float,
    silence_limit: float,
) -> tuple[int, int] | None:
    """The exchange-time window a reconnect leaves unseen, or None when the provider's replay covers it.

    A connection can be dead up to ``silence_limit`` before it is noticed, so the window starts that much before the
    disconnect; a resumed session replays its last ``replay_seconds``, which shortens the window at its end.
    """
    replayed = replay_seconds if resumed else 0.0
    if down_for <= replayed:
        return None
    start = now_ms - int((down_for + silence_limit) * 1000)
    return start, now_ms - int(replayed * 1000)


def backfill_command(start_ms: int, end_ms: int) -> str:
    """What to run to publish a window's liquidations from a node's archive (the dedup keys skip any we have)."""
    return (
        f"python -m producer --source node --node-path <archive> --node-from {start_ms} --node-until {end_ms} "
        "--node-follow false"
    )


def gap_message(dialect: str, start_ms: int, end_ms: int) -> str:
    start = datetime.fromtimestamp(start_ms / 1000, UTC).isoformat(timespec="seconds")
    end = datetime.fromtimestamp(end_ms / 1000, UTC).isoformat(timespec="seconds")
    return (
        f"hosted: liquidations between {start} and {end} ({(end_ms - start_ms) / 1000:.1f}s) may be missing: the "
        f"{dialect} feed cannot replay them; backfill with: {backfill_command(start_ms, end_ms)}"
    )


# ---------------------------------------------------------------------------------------------- the source


class HostedSource(LiquidationSource):
    """A provider's venue-wide liquidation feed, read by a background task into a buffer that :meth:`poll` drains."""

    name = "hosted"

    def __init__(
        self,
        settings: FeedSettings,
        *,
        quiet: float = 1.0,
        feed: WebSocketFeed | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_ms: Callable[[], int] = lambda: int(time.time() * 1000),
    ) -> None:
        self.settings = settings
        self.feed = feed or WebSocketFeed(settings)
        self.quiet = quiet
        self._clock = clock
        self._wall_ms = wall_ms
        self._pending: dict[int, list[LiquidationFill]] = {}
        """Fills per block, held until the block is complete."""
        self._newest: int | None = None
        self._last_push = clock()
        self._gap_seconds = 0.0
        self._arrived = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def restore(self, checkpoint: Mapping[str, str]) -> None:
        pass  # a feed has no position to resume from: the provider's replay and the dedup keys cover restarts

    def close(self) -> None:
        if self._task is not None:
            self._task.cancel()

    def _started(self) -> asyncio.Task[None]:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="hosted feed")
        if self._task.done() and not self._task.cancelled():
            self._task.result()  # a refused key ends the process here
        return self._task

    async def _run(self) -> None:
        try:
            async for event in self.feed.events():
                self.take(event)
        except FeedRejected:
            raise HostedKeyRefused(
                f"the {self.settings.dialect} feed at {mask_url(self.settings.url)} refused HL_HOSTED_KEY: "
                "set HL_HOSTED_KEY to a valid API key from the provider"
            ) from None

    def take(self, event: FeedEvent) -> None:
        """One event of the feed, as the background task hands it over (tests hand them over without a socket)."""
        if isinstance(event, HydromancerLiquidationFills | GoldRushLiquidationFills):
            pairs = event.fills if isinstance(event, HydromancerLiquidationFills) else event.pairs
            if not pairs:
                return
            block = block_of(event)
            self._pending.setdefault(block, []).extend(pairs)
            self._newest = block if self._newest is None else max(self._newest, block)
            self._last_push = self._clock()
            self._arrived.set()
        elif isinstance(event, Gap):
            # Messages lost on a live connection: the window is since the silence limit, conservatively.
            now_ms = self._wall_ms()
            self._gap(now_ms - int(self.settings.silence_limit * 1000), now_ms)
        elif isinstance(event, Connected) and event.down_for is not None:
            window = missed_window(
                resumed=event.resumed,
                down_for=event.down_for,
                now_ms=self._wall_ms(),
                replay_seconds=REPLAY_SECONDS.get(self.settings.dialect, 0.0),
                silence_limit=self.settings.silence_limit,
            )
            if window is not None:
                self._gap(*window)
        elif isinstance(event, Malformed) and self.settings.dialect == "goldrush":
            # GoldRush numbers nothing: a frame that did not decode may have been a block of liquidations. (On
            # Hydromancer's feed the next message's seq says whether it was.)
            now_ms = self._wall_ms()
            self._gap(now_ms - MALFORMED_WINDOW_MS, now_ms)
        elif isinstance(event, Disconnected):
            self._arrived.set()  # the loop looks again: the health check may have changed

    def _gap(self, start_ms: int, end_ms: int) -> None:
        self._gap_seconds += (end_ms - start_ms) / 1000
        log.warning("%s", gap_message(self.settings.dialect, start_ms, end_ms))

    def _quiet(self) -> bool:
        return self._clock() - self._last_push >= self.quiet

    async def poll(self, now_ms: int) -> PollResult:
        self._started()
        self._arrived.clear()
        result = PollResult()
        observed: list[LiquidationFill] = []
        whole = self.settings.dialect in WHOLE_BLOCK_MESSAGES
        for block in complete_blocks(self._pending, self._newest, quiet=whole or self._quiet()):
            observed.extend(self._pending.pop(block))
        result.items = len(observed)
        result.events = detect_from_fills(
            observed, source="hosted", detected_at=now_ms, own_legs_only=True, via=("hosted",)
        )
        result.gap_seconds, self._gap_seconds = self._gap_seconds, 0.0
        if not self.feed.is_healthy():
            result.problem = (
                f"the {self.settings.dialect} feed has been disconnected for more than "
                f"{self.settings.unhealthy_after:g}s (the log says why)"
            )
        return result

    async def wait(self, seconds: float) -> None:
        """Until a push arrives, a held block's quiet time ends, or ``seconds``, whichever is first."""
        task = self._started()
        if self._pending:
            seconds = min(seconds, max(0.0, self._last_push + self.quiet - self._clock()))
        if (unhealthy := self.feed.until_unhealthy()) is not None:
            seconds = min(seconds, unhealthy + 0.01)
        arrived = asyncio.ensure_future(self._arrived.wait())
        try:
            await asyncio.wait({arrived, task}, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        finally:
            arrived.cancel()
        self._started()
