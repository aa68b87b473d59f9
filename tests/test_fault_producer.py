"""The producer SIGKILLed between polls and mid-publish, restarted, and run twice side by side: no gap, no duplicate.

Mid-publish is made exact by a relay in front of Redis (:mod:`tests.faults.proxy`): it catches the publish script
of a batch in flight, the producer is killed, and the script is then either dropped (the crash came first) or
delivered to Redis (the crash came after the script ran, before its answer). The restarted producer must fill the
first gap from its old watermarks and skip the second batch's events as already published.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from tests.faults.feed import Feed
from tests.faults.invariants import Figures, assert_delivered, stream_longer, wait_for, wait_published
from tests.faults.procs import Proc
from tests.faults.proxy import RedisRelay
from tests.faults.rig import Rig

GROUPS = ("stats", "alerter")


def polls(producer: Proc) -> int:
    return len(re.findall(r" poll \d+ \(fills\)", producer.stderr()))


def skipped_as_published(text: str) -> int:
    return sum(int(n) for n in re.findall(r"(\d+) already published", text))


@pytest.mark.slow
async def test_producer_killed_between_polls_mid_publish_and_side_by_side_publishes_each_event_once(
    tmp_path: Path,
) -> None:
    # One watched leg per liquidation: with two producers polling side by side, fills that appear in the middle
    # of one's poll would otherwise also stage the read-order race (test_fault_exchange pins that one down).
    feed = Feed(seed=202, events=150, shared=False)
    relay = RedisRelay(0)
    async with Rig(tmp_path) as rig:
        db, stream, exchange = rig.db, rig.stream, rig.exchange
        relay.target = ("127.0.0.1", rig.redis.port)
        await relay.start()
        try:
            via_relay = {"REDIS_URL": relay.url, "HL_POLL_INTERVAL": "0.5"}
            await rig.start_stats("stats-1")
            await rig.start_alerter("alerter-1")
            recoveries: dict[str, float] = {}

            # 1. Between polls: right after a poll's summary line the loop sleeps; kill it there.
            p1 = await rig.start_producer("producer-1", feed.watchlist, **via_relay)
            feed.release_fraction(exchange, 1 / 6)
            await wait_published(db, stream, feed.shown(), within=60)
            seen = polls(p1)
            await wait_for(lambda: polls(p1) > seen, within=30, interval=0.005, what="a poll to finish")
            p1.kill()
            assert await p1.wait() == -9
            feed.release_fraction(exchange, 2 / 6)  # shown while no producer runs
            restart = time.monotonic()
            p2 = await rig.start_producer("producer-2", feed.watchlist, **via_relay)
            await wait_published(db, stream, feed.shown(), within=60)
            recoveries["between_polls"] = time.monotonic() - restart

            # 2. Mid-publish, the script never reaches Redis: the restart must publish the batch.
            length = await db.xlen(stream)
            relay.arm()
            feed.release_fraction(exchange, 3 / 6)
            await wait_for(relay.caught.is_set, within=30, interval=0.005, what="the publish to be caught")
            p2.kill()
            await p2.wait()
            dropped = await relay.drop()
            assert await db.xlen(stream) == length, "the dropped publish must not have reached the stream"
            restart = time.monotonic()
            p3 = await rig.start_producer("producer-3", feed.watchlist, **via_relay)
            await wait_published(db, stream, feed.shown(), within=60)
            recoveries["mid_publish_lost"] = time.monotonic() - restart

            # 3. Mid-publish, the script runs after its producer died: the restart must not publish it again.
            length = await db.xlen(stream)
            relay.arm()
            feed.release_fraction(exchange, 4 / 6)
            await wait_for(relay.caught.is_set, within=30, interval=0.005, what="the publish to be caught")
            p3.kill()
            await p3.wait()
            delivered = await relay.deliver()
            await wait_for(lambda: stream_longer(db, stream, length), within=30, what="the orphaned script to run")
            grew_by = await db.xlen(stream) - length
            restart = time.monotonic()
            p4 = await rig.start_producer("producer-4", feed.watchlist, **via_relay)
            await wait_published(db, stream, feed.shown(), within=60)
            await wait_for(lambda: polls(p4) >= 1, within=30, what="the restarted producer to poll")
            recoveries["mid_publish_ran"] = time.monotonic() - restart

            # 4. Two producers side by side (one through the relay, one direct); one dies mid-flow.
            p5 = await rig.start_producer("producer-5", feed.watchlist, HL_POLL_INTERVAL="0.5")
            feed.release_fraction(exchange, 5 / 6)
            await wait_published(db, stream, feed.shown(), within=60)
            length = await db.xlen(stream)
            feed.release(exchange)
            await wait_for(
                lambda: stream_longer(db, stream, length), within=30, interval=0.005, what="the last chunk to start"
            )
            p4.kill()
            await p4.wait()

            audit = await assert_delivered(
                db, stream, feed.expected, groups=GROUPS, stats_keys=[rig.stats_key("stats-1")], alert_sink="stdout"
            )
            await rig.stop_all()
            assert not rig.crashes()
            assert p5.returncode == 0
        finally:
            await relay.stop()

    skipped = skipped_as_published(rig.logs("producer-"))
    Figures.from_audit(
        "producer SIGKILL between polls / mid-publish (x2) + side by side",
        feed.expected,
        audit,
        max(recoveries.values()),
        **{k: round(v, 1) for k, v in recoveries.items()},
        orphan_script_events=grew_by,
        dropped_bytes=dropped,
        delivered_bytes=delivered,
        skipped_as_published=skipped,
    ).emit()
