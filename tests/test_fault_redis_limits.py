"""Redis up but not taking what we give it: full, demoted, evicting, trimming past a group, keys shared by tag.

Each scenario runs the real processes against a redis-server of its own that the test reconfigures mid-run
(CONFIG SET, REPLICAOF), and ends with the suite's invariants where they apply.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from tests.faults.feed import Feed
from tests.faults.invariants import (
    Figures,
    as_expected,
    assert_delivered,
    audit_stream,
    groups_caught_up,
    wait_for,
    wait_published,
)
from tests.faults.procs import Proc
from tests.faults.rig import Rig

GROUPS = ("stats", "alerter")


def held_for_redis(producer: Proc) -> list[int]:
    return [int(n) for n in re.findall(r"(\d+) waiting for Redis", producer.stderr())]


async def test_redis_full_then_demoted_holds_everything_and_doubles_nothing(tmp_path: Path) -> None:
    """``maxmemory`` reached under ``noeviction`` (every write answered OOM), then our Redis demoted by a failover
    (READONLY): the producer holds what it finds and the consumers wait, each saying so once; when Redis takes
    writes again, everything arrives once."""
    feed = Feed(seed=201, events=60, busy=False)
    async with Rig(tmp_path) as rig:
        db, stream = rig.db, rig.stream
        rig.exchange.show_at_poll_start(feed.watchlist[0])
        await rig.start_stats("stats-1")
        alerter = await rig.start_alerter("alerter-1")
        producer = await rig.start_producer("producer-1", feed.watchlist)
        feed.release_fraction(rig.exchange, 0.2)
        await wait_published(db, stream, feed.shown(), within=60)
        await wait_for(lambda: groups_caught_up(db, stream, GROUPS), within=30, what="consumers caught up")

        recoveries: list[float] = []
        held: list[int] = []
        for fraction, refuse, accept in (
            (0.6, ("CONFIG", "SET", "maxmemory", "1"), ("CONFIG", "SET", "maxmemory", "0")),
            (1.0, ("REPLICAOF", "127.0.0.1", "1"), ("REPLICAOF", "NO", "ONE")),
        ):
            before = len(feed.shown())
            await db.execute_command(*refuse)  # type: ignore[no-untyped-call]
            feed.release_fraction(rig.exchange, fraction)
            during = len(feed.shown()) - before
            await wait_for(
                lambda d=during: held_for_redis(producer)[-1:] == [d],  # type: ignore[misc]
                within=30,
                what=f"the producer to hold the {during} events found while Redis refuses writes",
            )
            held.append(during)
            polls = len(held_for_redis(producer))
            await wait_for(lambda p=polls: len(held_for_redis(producer)) - p >= 10, within=30, what="10 polls held")  # type: ignore[misc]
            assert producer.alive, producer.tail()
            await db.execute_command(*accept)  # type: ignore[no-untyped-call]
            back_at = time.monotonic()
            await wait_published(db, stream, feed.shown(), within=60, what="the events held")
            await wait_for(lambda: groups_caught_up(db, stream, GROUPS), within=60, what="consumers resumed")
            recoveries.append(time.monotonic() - back_at)

        audit = await assert_delivered(
            db, stream, feed.expected, groups=GROUPS, stats_keys=[rig.stats_key("stats-1")], alert_sink="stdout"
        )
        await rig.stop_all()
        assert not rig.crashes()
        assert producer.stderr().count("refusing writes") == 2, "one line per outage"
        assert alerter.stderr().count("Redis unavailable") == 1, "the READONLY outage, said once"

    Figures.from_audit(
        "redis full (OOM, noeviction) then demoted (READONLY)",
        feed.expected,
        audit,
        max(recoveries),
        held_oom=held[0],
        held_readonly=held[1],
        recovery_oom_s=round(recoveries[0], 1),
        recovery_readonly_s=round(recoveries[1], 1),
    ).emit()


@pytest.mark.parametrize("policy", ["volatile-lru", "allkeys-lru"])
async def test_a_redis_that_may_evict_our_keys_is_refused_at_start(tmp_path: Path, policy: str) -> None:
    """Under ``volatile-lru`` the dedup keys (they have a TTL) are the first to go, and a restarted producer then
    publishes an event twice; under ``allkeys-lru`` the stream and checkpoint go too. The producer refuses such a
    Redis as a bad setting, and runs, saying it loudly, only when told to."""
    feed = Feed(seed=211, events=10, busy=False)
    async with Rig(tmp_path) as rig:
        db, stream = rig.db, rig.stream
        await db.config_set("maxmemory-policy", policy)
        await db.config_set("maxmemory", str(256 << 20))
        await rig.start_stats("stats-1")
        await rig.start_alerter("alerter-1")
        feed.release(rig.exchange)
        refused = await rig.start_producer("producer-refused", feed.watchlist)
        started = time.monotonic()
        assert await refused.wait(30) == 2, refused.tail()
        refused_s = time.monotonic() - started
        errors = [line for line in refused.stderr().splitlines() if " ERROR " in line]
        assert len(errors) == 1 and f"maxmemory-policy {policy}" in errors[0] and "Traceback" not in refused.stderr()
        assert await db.exists(stream) == 0 or await db.xlen(stream) == 0, "nothing published before refusing"

        allowed = await rig.start_producer("producer-allowed", feed.watchlist, REDIS_ALLOW_EVICTION="1")
        audit = await assert_delivered(
            db, stream, feed.expected, groups=GROUPS, stats_keys=[rig.stats_key("stats-1")], alert_sink="stdout"
        )
        await rig.stop_all()
        assert "exactly once is not guaranteed" in allowed.stderr()
        assert not rig.crashes()

    Figures.from_audit(
        f"maxmemory-policy {policy}: refused, then allowed", feed.expected, audit, refused_in_s=round(refused_s, 1)
    ).emit()


async def test_entries_trimmed_past_stopped_consumers_are_said_counted_and_the_lag_stays_true(tmp_path: Path) -> None:
    """Consumers stopped while the producer publishes far more than ``MAXLEN``: what was trimmed unread cannot be
    delivered, but each group must say how much it lost and where, count it, and report a true lag; what the
    stream still holds must reach every group, once."""
    feed = Feed(seed=221, events=400, busy=False)
    async with Rig(tmp_path) as rig:
        db, stream = rig.db, rig.stream
        stats = await rig.start_stats("stats-1")
        alerter = await rig.start_alerter("alerter-1")
        await rig.start_producer("producer-1", feed.watchlist, LIQ_STREAM_MAXLEN="100")
        feed.release(rig.exchange, 20)
        await wait_published(db, stream, feed.shown(), within=60)
        await wait_for(lambda: groups_caught_up(db, stream, GROUPS), within=30, what="consumers caught up")
        read_before = len(feed.shown())
        await stats.stop()
        await alerter.stop()

        feed.release(rig.exchange)
        total = len(feed.expected)

        async def all_added() -> bool:
            return int((await db.xinfo_stream(stream))["entries-added"]) == total

        await wait_for(all_added, within=60, what=f"the producer to publish all {total} events")
        info = await db.xinfo_stream(stream)
        retained = int(info["length"])
        trimmed_unread = total - retained - read_before
        assert trimmed_unread > 0

        await rig.start_stats("stats-2")
        await rig.start_alerter("alerter-2")
        in_stream = as_expected((await audit_stream(db, stream, {})).events)  # what trimming left
        audit = await assert_delivered(
            db, stream, in_stream, groups=GROUPS, stats_keys=[rig.stats_key("stats-2")], alert_sink="stdout"
        )
        said = {
            name: [int(n) for n in re.findall(rf"(\d+) entries of .* before group '{name}' read them", rig.logs(name))]
            for name in GROUPS
        }
        groups = {g["name"].decode(): g for g in await db.xinfo_groups(stream)}
        await rig.stop_all()
        assert not rig.crashes()
    for name in GROUPS:
        assert said[name] == [trimmed_unread], f"{name} said {said[name]}, not [{trimmed_unread}]"
        assert groups[name]["lag"] == 0, f"Redis's lag of {name} still counts the trimmed entries"
    Figures.from_audit(
        f"{total} published with MAXLEN ~100 while consumers were stopped",
        in_stream,
        audit,
        published_total=total,
        retained=retained,
        trimmed_unread_said=trimmed_unread,
    ).emit()


async def test_streams_sharing_a_hash_tag_keep_their_own_checkpoint_and_dedup_keys(tmp_path: Path) -> None:
    """A replay into ``replay:{hl}:liqs`` next to production's ``prod:{hl}:liqs``: the same slot, but its own
    checkpoint and dedup keys, so it neither resumes from production's watermarks nor finds its events "already
    published"."""
    feed = Feed(seed=231, events=30, busy=False)
    async with Rig(tmp_path, stream="prod:{hl}:liqs") as rig:
        db, stream = rig.db, rig.stream
        await rig.start_stats("stats-1")
        await rig.start_alerter("alerter-1")
        await rig.start_producer("producer-prod", feed.watchlist)
        feed.release(rig.exchange)
        audit = await assert_delivered(
            db, stream, feed.expected, groups=GROUPS, stats_keys=[rig.stats_key("stats-1")], alert_sink="stdout"
        )
        replay_stream = "replay:{hl}:liqs"
        replay = await rig.start(
            "producer-replay", "producer", rig.producer_env(feed.watchlist, LIQ_STREAM=replay_stream), "--once"
        )
        assert await replay.wait(60) == 0, replay.tail()
        replayed = await audit_stream(db, replay_stream, feed.expected)
        await rig.stop_all()
        assert not rig.crashes()
    assert replayed.clean, replayed.describe()
    Figures.from_audit(
        "replay stream sharing production's hash tag", feed.expected, replayed, production_published=len(audit.keys)
    ).emit()
