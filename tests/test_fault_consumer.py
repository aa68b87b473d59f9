"""A consumer SIGKILLed mid-batch: another consumer of its group takes its pending entries over; nothing is lost.

The alerter is killed while it is certainly mid-batch: its webhook never answers, so it is blocked inside its
handler with a whole batch pending. A second alerter of the group must claim that batch (XAUTOCLAIM after
``LIQ_CLAIM_IDLE_MS``) and alert each liquidation exactly once, including the one whose delivery was in flight
(its marker claim expires first). The stats consumer is killed in full flow and replaced: the new one rebuilds
from the stream, skips what it counted, and its totals must equal the truth.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.faults.feed import Feed
from tests.faults.invariants import (
    Figures,
    assert_delivered,
    group_states,
    stream_longer,
    wait_for,
    wait_published,
)
from tests.faults.procs import count_lines
from tests.faults.rig import Rig
from tests.faults.webhooks import HoldingWebhooks

GROUPS = ("stats", "alerter")
ALERTER = {
    "ALERT_SINKS": "webhook",
    "ALERT_SINK_ATTEMPTS": "1",
    "ALERT_SINK_TIMEOUT_S": "2",
    "LIQ_CLAIM_IDLE_MS": "3000",
}
"""One attempt of at most 2 s per alert: the in-flight marker of a dead alerter expires after 4 s (a claim covers
one attempt: the timeout + 2 s)."""


async def pending_of(rig: Rig, group: str, consumer: str) -> int:
    summary = await rig.db.xpending(rig.stream, group)
    for row in summary.get("consumers") or ():
        name = row["name"].decode() if isinstance(row["name"], bytes) else row["name"]
        if name == consumer:
            return int(row["pending"])
    return 0


@pytest.mark.slow
@pytest.mark.timeout(300)
async def test_a_consumer_killed_mid_batch_hands_its_pending_entries_to_the_group(tmp_path: Path) -> None:
    feed = Feed(seed=303, events=90)
    hooks = HoldingWebhooks()
    await hooks.start()
    hooks.hold_paths.add("/a")
    try:
        async with Rig(tmp_path) as rig:
            db, stream, exchange = rig.db, rig.stream, rig.exchange
            exchange.show_at_poll_start(feed.watchlist[0])  # see ChaosExchange: not the read-order race here
            doomed = await rig.start_alerter("alerter-a", ALERT_WEBHOOK_URL=hooks.url + "/a", **ALERTER)
            stats1 = await rig.start_stats("stats-1", LIQ_COUNT="5")
            await rig.start_producer("producer-1", feed.watchlist)

            feed.release_fraction(exchange, 1 / 3)
            await wait_published(db, stream, feed.shown(), within=60)
            await wait_for(lambda: len(hooks.held) > 0, within=30, what="the doomed alerter to block in its sink")
            held_batch = await pending_of(rig, "alerter", "alerter-a")
            assert held_batch > 1, "the alerter must die holding a batch for this test to mean anything"
            heir = await rig.start_alerter("alerter-b", ALERT_WEBHOOK_URL=hooks.url + "/b", **ALERTER)
            doomed.kill()
            killed_at = time.monotonic()
            assert await doomed.wait() == -9

            # The stats consumer dies in full flow (5 entries per read), and a new one takes its place.
            length = await db.xlen(stream)
            feed.release_fraction(exchange, 2 / 3)
            await wait_for(
                lambda: stream_longer(db, stream, length), within=30, interval=0.005, what="the second chunk to start"
            )
            stats1.kill()
            await stats1.wait()
            stats_pending = await pending_of(rig, "stats", "stats-1")
            await rig.start_stats("stats-2")

            feed.release(exchange)
            audit = await assert_delivered(
                db,
                stream,
                feed.expected,
                groups=GROUPS,
                stats_keys=[rig.stats_key("stats-2")],
                alert_sink="webhook",
                within=120,
            )
            recovery = time.monotonic() - killed_at
            # How long the surviving alerter sent nothing at all while it had work: the dead one's in-flight
            # alert is left for a retry (its claim expires) while the rest of the claimed batch goes on.
            silence = hooks.longest_silence(killed_at)
            states = await group_states(db, stream)
            await rig.stop_all()
            assert not rig.crashes()

            liquidations = {e.key for e in feed.liquidations()}
            assert set(hooks.accepted) == liquidations, "every liquidation alerted"
            repeated = {k: n for k, n in hooks.accepted.items() if n > 1}
            assert not repeated, f"alerts repeated: {repeated}"
            claimed = count_lines(heir.stderr(), "claimed ")
            assert claimed >= 1 and "claimed" in heir.stderr()
    finally:
        await hooks.stop()

    Figures.from_audit(
        "consumer SIGKILL mid-batch (alerter, stats)",
        feed.expected,
        audit,
        recovery,
        alerter_batch_held=held_batch,
        stats_pending_at_kill=stats_pending,
        alerts=sum(hooks.accepted.values()),
        alerts_repeated=len(repeated),
        longest_alert_silence_s=round(silence, 1),
        alerter_group_consumers=states["alerter"]["consumers"],
    ).emit()
