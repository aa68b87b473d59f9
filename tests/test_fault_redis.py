"""Redis SIGKILLed mid-run and restarted (AOF, fsync always): nothing found meanwhile is lost, nothing doubles.

The producer must hold what it finds while Redis is away and publish it when Redis is back; the consumers must
wait the outage out, reconnect and resume their groups where the AOF left them.
"""

from __future__ import annotations

import re
import time
from functools import partial
from pathlib import Path

import pytest

from tests.faults.feed import Feed
from tests.faults.invariants import (
    Figures,
    assert_delivered,
    groups_caught_up,
    stream_longer,
    wait_for,
    wait_published,
)
from tests.faults.procs import Proc, count_lines
from tests.faults.redis_proc import RedisProcess
from tests.faults.rig import Rig

GROUPS = ("stats", "alerter")
OUTAGE_POLLS = 15
"""Polls the producer makes while Redis is down (0.2 s apart, so an outage of a few seconds)."""


def held_for_redis(producer: Proc) -> list[int]:
    """Events waiting for Redis, as each poll of the producer reported them."""
    return [int(n) for n in re.findall(r"(\d+) waiting for Redis", producer.stderr())]


def noticed_the_outage(proc: Proc) -> bool:
    return "Redis unavailable" in proc.stderr()


def tried_redis(proc: Proc) -> bool:
    """It said something about Redis, or it exited (which the test then reports)."""
    return "Redis" in proc.stderr() or not proc.alive


@pytest.mark.slow
@pytest.mark.parametrize("fsync", ["always", "everysec"])
async def test_redis_sigkilled_and_restarted_with_aof_loses_and_doubles_nothing(tmp_path: Path, fsync: str) -> None:
    """``everysec`` (Redis's default) too: a SIGKILL loses only what was not yet written, and Redis writes the AOF
    before it answers; only a machine crash can take the last second of fsyncs with it."""
    feed = Feed(seed=101, events=150)
    async with Rig(tmp_path, redis=RedisProcess(tmp_path / "redis", aof=True, fsync=fsync)) as rig:
        db, stream = rig.db, rig.stream
        rig.exchange.show_at_poll_start(feed.watchlist[0])  # see ChaosExchange: not the read-order race here
        stats = await rig.start_stats("stats-1")
        alerter = await rig.start_alerter("alerter-1")
        producer = await rig.start_producer("producer-1", feed.watchlist)

        feed.release_fraction(rig.exchange, 0.2)
        await wait_published(db, stream, feed.shown(), within=60)
        await wait_for(lambda: groups_caught_up(db, stream, GROUPS), within=30, what="consumers caught up")
        before = len(feed.shown())

        rig.redis.kill()
        down_at = time.monotonic()
        feed.release_fraction(rig.exchange, 0.4)
        during = len(feed.shown()) - before
        polls_before = len(held_for_redis(producer))
        await wait_for(
            lambda: held_for_redis(producer)[-1:] == [during],
            within=30,
            what=f"the producer to hold the {during} events found while Redis is down",
        )
        # Stay down a while: the producer keeps polling (and holding), the consumers back off further.
        await wait_for(
            lambda: len(held_for_redis(producer)) - polls_before >= OUTAGE_POLLS,
            within=60,
            what=f"{OUTAGE_POLLS} polls while Redis is down",
        )
        for proc in (stats, alerter):
            await wait_for(partial(noticed_the_outage, proc), within=30, what=f"{proc.name} to notice the outage")
        down_s = time.monotonic() - down_at

        await rig.redis.start()
        back_at = time.monotonic()
        await wait_published(db, stream, feed.shown(), within=60, what="the events held during the outage")
        await wait_for(lambda: groups_caught_up(db, stream, GROUPS), within=60, what="consumers resumed")
        recovery = time.monotonic() - back_at

        # Second kill, in full flow: as soon as the last chunk starts reaching the stream, while the producer
        # publishes and the consumers read and acknowledge it.
        length = int(await db.xlen(stream))
        feed.release(rig.exchange)
        await wait_for(
            lambda: stream_longer(db, stream, length), within=30, interval=0.005, what="the last chunk to start"
        )
        rig.redis.kill()
        await rig.redis.start()
        back_at = time.monotonic()
        audit = await assert_delivered(
            db, stream, feed.expected, groups=GROUPS, stats_keys=[rig.stats_key("stats-1")], alert_sink="stdout"
        )
        flow_recovery = time.monotonic() - back_at
        await rig.stop_all()
        assert not rig.crashes()
        assert "Redis is back" in producer.stderr()
        alerts = count_lines(alerter.stdout(), " liquidated: ")
        assert alerts == len(feed.liquidations()), "an alert was printed twice or not at all"

    Figures.from_audit(
        f"redis SIGKILL + restart (AOF, appendfsync {fsync})",
        feed.expected,
        audit,
        recovery,
        held_while_down=during,
        redis_down_s=round(down_s, 1),
        kill_in_flow_recovery_s=round(flow_recovery, 1),
        alerts=alerts,
    ).emit()


async def test_consumers_started_while_redis_is_down_wait_for_it(tmp_path: Path) -> None:
    """A consumer (re)started during a Redis outage, as after a host reboot where Redis is still loading its AOF,
    must wait for Redis like a running one does, not exit: the alerter does; the stats consumer must too."""
    feed = Feed(seed=111, events=10, busy=False)
    async with Rig(tmp_path, redis=RedisProcess(tmp_path / "redis", aof=True), start_redis=False) as rig:
        stats = await rig.start_stats("stats-1")
        alerter = await rig.start_alerter("alerter-1")
        for proc in (stats, alerter):
            await wait_for(partial(tried_redis, proc), within=30, what=f"{proc.name} to try Redis")
        await rig.redis.start()
        assert stats.alive, f"the stats consumer gave up while Redis was down:\n{stats.tail(3)}"
        await rig.start_producer("producer-1", feed.watchlist)
        feed.release(rig.exchange)
        await assert_delivered(
            rig.db, rig.stream, feed.expected, groups=GROUPS, stats_keys=[rig.stats_key("stats-1")], alert_sink="stdout"
        )
        await rig.stop_all()
        assert not rig.crashes()
