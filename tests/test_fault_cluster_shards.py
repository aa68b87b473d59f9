"""A sharded stream (``LIQ_SHARDS=3``) on the real 3+3 cluster: the producer spreads the events over three masters,
the stats aggregator and the alerter read every shard through their groups, and nothing is lost or doubled.

The processes run as users run them; the cluster refuses any cross-slot command (CROSSSLOT) and the test's own
reads run under the slot guard. Prints a ``FIGURES`` line.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import partial
from pathlib import Path

from redis.crc import key_slot

from plumbing.shards import shard_of, shard_streams
from plumbing.stream_keys import key_namespace
from tests.faults.feed import Expected, Feed
from tests.faults.invariants import (
    Figures,
    StreamAudit,
    audit_stream,
    dead_letters,
    groups_caught_up,
    unsent_alerts,
    wait_for,
    wait_published,
    wait_stats,
)
from tests.faults.redis_cluster import Cluster, owner_port, slot_map
from tests.faults.rig import Rig
from tests.test_fault_cluster import (
    GROUPS,
    alerts_printed,
    cluster_client,
    cluster_env,
    keys_of,
    problems,
    untagged_stream,
)

SHARDS = 3


def routed(expected: Mapping[str, Expected], shards: int) -> list[dict[str, Expected]]:
    """The truth, split the way the producer must split it: by each event's key."""
    parts: list[dict[str, Expected]] = [{} for _ in range(shards)]
    for key, want in expected.items():
        parts[shard_of(key, shards)][key] = want
    return parts


async def test_a_sharded_stream_spreads_over_the_masters_and_every_group_reads_every_shard(
    redis_cluster: Cluster, slot_guard: None, tmp_path: Path
) -> None:
    stream = untagged_stream()
    names = shard_streams(stream, SHARDS)
    feed = Feed(seed=143, events=40)
    sharded = {"LIQ_SHARDS": str(SHARDS)}
    async with (
        cluster_client(redis_cluster) as client,
        Rig(tmp_path, stream=stream, connection_env=cluster_env(redis_cluster)) as rig,
    ):
        await rig.start_stats("stats-1", **sharded)
        alerter = await rig.start_alerter("alerter-1", **sharded)
        await rig.start_producer("producer-1", feed.watchlist, **sharded)
        feed.release(rig.exchange)
        audits: list[StreamAudit] = []
        for name, part in zip(names, routed(feed.expected, SHARDS), strict=True):
            assert part, "every shard should get some of the feed's events"
            await wait_published(client, name, part, within=60, what=f"the events of {name}")
            audits.append(await audit_stream(client, name, part))
            await wait_for(partial(groups_caught_up, client, name, GROUPS), within=60, what=f"groups on {name}")
            assert await dead_letters(client, name) == 0
        every = [event for audit in audits for event in audit.events]
        assert sorted(e.key for e in every) == sorted(feed.expected), "an event was lost, doubled or misrouted"
        for audit in audits:
            assert not (audit.lost or audit.invented or audit.mismatched or audit.duplicates), audit.describe()
        await wait_stats(client, rig.stats_key("stats-1"), feed.expected, within=60)  # totals over every shard
        liquidations = [key for key, want in feed.expected.items() if want.kind == "liquidation"]
        assert not await unsent_alerts(client, stream, liquidations, "stdout")
        keys = await keys_of(client, stream)
        masters = slot_map(await redis_cluster.views(redis_cluster.live[0]))
        await rig.stop_all()
        assert not rig.crashes()
        assert not problems(rig.procs)
        assert alerts_printed(alerter) == len(feed.liquidations())
    # the three shards are on three masters, and each shard's keys are in its slot
    assert len({owner_port(masters, key_slot(name.encode())) for name in names}) == SHARDS
    for key in (key.decode() for key in keys):
        shard = next((name for name in reversed(names) if key.startswith(key_namespace(name)) or key == name), None)
        if shard is not None:
            assert key_slot(key.encode()) == key_slot(shard.encode()), f"{key} left the slot of {shard}"
    Figures(
        "cluster: 3 shards over 3 masters, producer, alerter, stats",
        expected=len(feed.expected),
        published=sum(audit.entries for audit in audits),
        duplicates=sum(audit.duplicates for audit in audits),
        lost=sum(len(audit.lost) for audit in audits),
        notes={"per_shard": [audit.entries for audit in audits]},
    ).emit()
