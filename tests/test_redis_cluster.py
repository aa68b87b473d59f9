"""The cluster and Sentinel harness works, and redis-py's clients survive the failovers it injects.

The pure parts (what ``CLUSTER NODES`` says, port choice) are tested directly; the rest starts one cluster and one
Sentinel set-up for the module (seconds each) and prints a ``FIGURES`` line with how long things took here.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path
from typing import cast

import pytest
import redis.exceptions
from redis.asyncio.cluster import RedisCluster
from redis.crc import key_slot

from tests.faults import servers
from tests.faults.invariants import RawEntry, raw_entries, wait_for
from tests.faults.redis_cluster import (
    SENTINEL_MASTER,
    Cluster,
    NodeView,
    Sentinels,
    covers_every_slot,
    node_client,
    owner_port,
    parse_cluster_nodes,
    replication_map,
    sentinel_master_state,
    skip_without_redis_binaries,
    slot_map,
    slot_of,
)

NODES = """\
07c3 127.0.0.1:30001@40001 myself,master - 0 0 1 connected 0-5460
67ed 127.0.0.1:30002@40002 master - 0 1426238316232 2 connected 5461-10922 [5500->-292f]
292f 127.0.0.1:30003@40003 master - 0 1426238318243 3 connected 10923-16383
6ec2 127.0.0.1:30004@40004,node-4 slave 07c3 0 1426238317741 1 connected
824f 127.0.0.1:30005@40005 slave,fail 67ed 1426238316232 1426238316000 2 disconnected
"""


# --- pure -------------------------------------------------------------------------------------------------------


def test_cluster_nodes_lines_are_read_into_roles_slots_and_masters() -> None:
    views = parse_cluster_nodes(NODES)
    assert [view.port for view in views] == [30001, 30002, 30003, 30004, 30005]
    assert views[0].flags == {"myself", "master"} and views[0].slots == ((0, 5460),)
    assert views[1].slots == ((5461, 10922),)  # the slot being migrated is left out
    assert views[3].master_id == "07c3" and not views[3].is_master
    assert views[4].failing and not views[3].failing
    assert slot_map(views) == ((0, 5460, 30001), (5461, 10922, 30002), (10923, 16383, 30003))
    assert covers_every_slot(slot_map(views))
    assert slot_of("{liq}:stream") == slot_of("{liq}:dedup:x") == slot_of(key_slot(b"liq"))
    assert owner_port(slot_map(views), 5461) == 30002
    assert replication_map(views) == ((30004, 30001),)  # the failing replica does not count


def test_a_map_with_a_gap_or_an_overlap_is_not_a_whole_cluster() -> None:
    assert not covers_every_slot(((0, 5460, 1), (5462, 16383, 2)))
    assert not covers_every_slot(((0, 5460, 1), (5460, 16383, 2)))
    assert not covers_every_slot(((0, 16382, 1),))
    dead_master = NodeView("x", 1, frozenset({"master", "fail"}), None, ((0, 16383),))
    assert slot_map([dead_master]) == ()


def test_cluster_ports_and_their_bus_ports_stay_below_the_ephemeral_range() -> None:
    span = servers.cluster_port_range(32_768)
    assert span.stop + servers.CLUSTER_BUS_OFFSET <= 32_768 and span.start >= 1_024
    taken = {span.start + 1 + servers.CLUSTER_BUS_OFFSET}  # the second candidate's bus port is held
    candidates = iter(range(span.start, span.stop))
    ports = servers.free_cluster_ports(
        2, is_free=lambda port: port not in taken, choose=lambda _span: next(candidates), avoid={span.start}
    )
    assert ports == [span.start + 2, span.start + 3]


def test_a_server_that_lost_its_port_is_told_apart_from_one_that_broke() -> None:
    lost = servers.ServerDidNotStart("node 1", "# Warning: Could not create server TCP listening socket *:1: bind")
    assert lost.lost_port_race
    assert not servers.ServerDidNotStart("node 1", "# Bad directive or wrong number of arguments").lost_port_race


def test_sentinel_master_replies_are_read_as_a_parsed_dict_or_a_flat_list() -> None:
    assert sentinel_master_state({"port": 6380, "flags": "master"}) == {"port": "6380", "flags": "master"}
    assert sentinel_master_state(["port", "6380", "flags", "s_down,master"])["flags"] == "s_down,master"


# --- a real cluster ---------------------------------------------------------------------------------------------


def tagged_stream() -> str:
    return f"{{liq-{uuid.uuid4().hex[:8]}}}:liquidations"


async def test_a_client_from_the_seed_nodes_reads_a_hash_tagged_stream_through_a_group(redis_cluster: Cluster) -> None:
    stream = tagged_stream()
    client = redis_cluster.client()
    try:
        await client.xgroup_create(stream, "stats", id="0", mkstream=True)
        ids = [await client.xadd(stream, {"type": "liquidation", "n": str(n)}) for n in range(3)]
        reply = cast(list[tuple[bytes, list[RawEntry]]], await client.xreadgroup("stats", "stats-1", {stream: ">"}))
        read = [entry_id for _, entries in reply for entry_id, _ in entries]
        assert read == ids
        assert await client.xack(stream, "stats", *read) == 3
        owner = node_client(await redis_cluster.owner(stream))
        assert await owner.xlen(stream) == 3  # on the node that serves the tag's slot, nowhere else
        with pytest.raises(redis.exceptions.ClusterCrossSlotError):
            await owner.eval("return 1", 2, stream, "other-key")  # what the slot guard predicts, from Redis itself
        await owner.aclose()
    finally:
        await client.aclose()


async def test_a_cluster_failover_mid_stream_loses_and_repeats_nothing(redis_cluster: Cluster) -> None:
    stream = tagged_stream()
    client = redis_cluster.client()
    written: list[str] = []
    stop_at: list[int] = []

    async def write() -> None:
        while not stop_at or len(written) < stop_at[0]:
            written.append(str(await client.xadd(stream, {"n": str(len(written))})))
            await asyncio.sleep(0.01)

    try:
        writer = asyncio.create_task(write())
        await wait_for(lambda: len(written) >= 5, within=10, what="writes before the failover")
        before = await redis_cluster.owner(stream)
        seconds = await redis_cluster.failover(stream)
        count_at_failover = len(written)
        stop_at.append(count_at_failover + 20)  # and 20 more through the new master
        await asyncio.wait_for(writer, 30)
        after = await redis_cluster.owner(stream)
        assert after.port != before.port
        entries = raw_entries(await client.xrange(stream))
        assert [str(entry_id) for entry_id, _ in entries] == written
        assert [fields[b"n"] for _, fields in entries] == [str(n).encode() for n in range(len(written))]
        print(f"FIGURES cluster failover: {seconds:.2f} s, {count_at_failover} writes before it, {len(written)} in all")
    finally:
        await client.aclose()


async def test_a_new_cluster_starts_within_seconds(tmp_path: Path) -> None:
    skip_without_redis_binaries()
    cluster = Cluster(tmp_path, masters=3, replicas=1)
    try:
        seconds = await cluster.start()
        assert len(cluster.live) == 6
        client = RedisCluster(startup_nodes=cluster.seeds[:1])  # one seed is enough: it discovers the others
        assert len(await asyncio.wait_for(client.cluster_nodes(), 5)) == 6
        await client.aclose()
        print(f"FIGURES cluster start: {seconds:.2f} s")
    finally:
        cluster.stop()
    assert all(node.proc is None for node in cluster.nodes)


@pytest.mark.slow
async def test_a_killed_master_is_replaced_and_the_client_carries_on(redis_cluster: Cluster) -> None:
    stream = tagged_stream()
    client = redis_cluster.client()
    try:
        await client.xadd(stream, {"n": "0"})
        await client.wait(1, 5000)  # the entry is on the replica before its master dies
        killed, seconds = await redis_cluster.kill_master(stream)
        started = time.monotonic()
        await client.xadd(stream, {"n": "1"})
        resumed = time.monotonic() - started
        assert [fields[b"n"] for _, fields in raw_entries(await client.xrange(stream))] == [b"0", b"1"]
        rejoined = await redis_cluster.restart(killed)
        print(
            f"FIGURES cluster kill: promoted in {seconds:.2f} s, resumed in {resumed:.2f} s, rejoined {rejoined:.2f} s"
        )
    finally:
        await client.aclose()


# --- Sentinel ---------------------------------------------------------------------------------------------------


async def test_master_for_follows_a_sentinel_failover(redis_sentinels: Sentinels) -> None:
    """A client asks the sentinels for the master when it connects: after a failover it writes to the new one.
    (A connection opened before keeps writing to the old master until the sentinels demote it, about 10 s here.)"""
    key = f"sentinel-test:{uuid.uuid4().hex[:8]}"
    before = await redis_sentinels.master()
    async with redis_sentinels.client() as sentinel:
        master = sentinel.master_for(SENTINEL_MASTER, socket_timeout=2)
        await master.set(key, "before")
        await master.wait(1, 5000)
        await master.aclose()
        seconds = await redis_sentinels.failover()
        after = await redis_sentinels.master()
        assert after.port != before.port
        assert await sentinel.discover_master(SENTINEL_MASTER) == ("127.0.0.1", after.port)
        master = sentinel.master_for(SENTINEL_MASTER, socket_timeout=2)
        assert await master.get(key) == b"before"  # replicated before the failover
        await master.set(key, "after")
        await master.aclose()
    on_new_master = node_client(after)
    assert await on_new_master.get(key) == "after"
    await on_new_master.aclose()
    print(f"FIGURES sentinel failover: new master reported by all 3 sentinels in {seconds:.2f} s")


@pytest.mark.slow
async def test_a_killed_sentinel_master_is_replaced_and_master_for_reaches_the_new_one(tmp_path: Path) -> None:
    skip_without_redis_binaries()
    async with Sentinels(tmp_path) as setup, setup.client() as sentinel:
        master = sentinel.master_for(SENTINEL_MASTER, socket_timeout=2)
        await master.set("k", "1")
        await master.wait(1, 5000)
        killed, seconds = await setup.kill_master()
        started = time.monotonic()
        await wait_for(lambda: master.set("k", "2"), within=30, what="a write through master_for")
        resumed = time.monotonic() - started
        assert await master.get("k") == b"2"
        rejoined = await setup.restart(killed)
        await master.aclose()
        print(
            f"FIGURES sentinel kill: promoted in {seconds:.2f} s, resumed in {resumed:.2f} s, rejoined {rejoined:.2f} s"
        )
