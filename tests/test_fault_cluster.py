"""The whole pipeline (producer, alerter, stats) on a real Redis Cluster and a real Sentinel set-up, through
failovers: every key a script or transaction touches in the stream's slot, every event in the stream once.

The processes are run as users run them (``REDIS_CLUSTER_NODES`` / ``REDIS_SENTINELS``); the cluster itself refuses
a cross-slot command (CROSSSLOT), and the test's own reads run under the slot guard. Each scenario prints a
``FIGURES`` line; RELIABILITY.md quotes them.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from functools import partial
from pathlib import Path

import pytest
from redis.asyncio import Redis
from redis.crc import key_slot

from plumbing.redis_connect import RedisClient
from plumbing.stream_keys import stream_key
from tests.faults.feed import Feed
from tests.faults.invariants import Figures, assert_delivered, dead_letters, unsent_alerts, wait_for
from tests.faults.procs import Proc, count_lines
from tests.faults.redis_cluster import HOST, SENTINEL_MASTER, Cluster, Sentinels
from tests.faults.rig import Rig

GROUPS = ("stats", "alerter")
BAD_SIGNS = ("Traceback", "CROSSSLOT", "MovedError")


def untagged_stream() -> str:
    """Shaped like the default name (no ``{tag}``): the case whose derived keys had to move into its slot."""
    return f"liq-{uuid.uuid4().hex[:8]}:liquidations"


def cluster_env(cluster: Cluster) -> dict[str, str]:
    return {"REDIS_CLUSTER_NODES": ",".join(f"{HOST}:{node.port}" for node in cluster.nodes)}


def sentinel_env(setup: Sentinels) -> dict[str, str]:
    return {
        "REDIS_SENTINELS": ",".join(f"{host}:{port}" for host, port in setup.addresses),
        "REDIS_SENTINEL_MASTER": SENTINEL_MASTER,
    }


def problems(procs: list[Proc]) -> list[str]:
    """Lines of any process's stderr that show a cross-slot command, a redirection that escaped, or a traceback."""
    return [line for proc in procs for line in proc.stderr().splitlines() if any(s in line for s in BAD_SIGNS)]


def alerts_printed(alerter: Proc) -> int:
    return count_lines(alerter.stdout(), " liquidated: ")


ALERT_LINE = re.compile(r"^(\S+) (?:long|short) liquidated: .*\| user (0x[0-9a-f]+) \|.*/tx/(0x[0-9a-f]+)$")


def alerted_keys(alerter: Proc) -> Counter[str]:
    """How often each liquidation (by its event key: tx, coin, user) was alerted on stdout."""
    found = (ALERT_LINE.match(line) for line in alerter.stdout().splitlines())
    return Counter(f"{m[3]}|{m[1]}|{m[2]}" for m in found if m)


async def keys_of(client: RedisClient, stream: str) -> list[bytes]:
    """Every key on any master whose name contains the stream's (the stream, its dedup keys, markers...)."""
    return [key async for key in client.scan_iter(match=f"*{stream}*", count=1000)]


@contextlib.asynccontextmanager
async def cluster_client(cluster: Cluster) -> AsyncIterator[RedisClient]:
    client = cluster.client()
    try:
        yield client
    finally:
        await client.aclose()


async def test_the_pipeline_runs_on_a_cluster_with_every_key_in_the_streams_slot(
    redis_cluster: Cluster, slot_guard: None, tmp_path: Path
) -> None:
    stream = untagged_stream()
    feed = Feed(seed=141, events=40)
    async with (
        cluster_client(redis_cluster) as client,
        Rig(tmp_path, stream=stream, connection_env=cluster_env(redis_cluster)) as rig,
    ):
        await rig.start_stats("stats-1")
        alerter = await rig.start_alerter("alerter-1")
        await rig.start_producer("producer-1", feed.watchlist)
        feed.release(rig.exchange)
        audit = await assert_delivered(
            client,
            stream,
            feed.expected,
            groups=GROUPS,
            stats_keys=[rig.stats_key("stats-1")],
            alert_sink="stdout",
        )
        # A poison entry: each group writes its dead letter and acknowledges the entry in one MULTI.
        await client.xadd(stream, {"type": "liquidation", "v": "1", "key": "poison", "data": "{broken"})
        await wait_for(
            lambda: dead_lettered_by_every_group(client, stream),
            within=30,
            what="a dead letter per group",
        )
        keys = await keys_of(client, stream)
        await rig.stop_all()
        assert not rig.crashes()
        assert not problems(rig.procs)
        assert alerts_printed(alerter) == len(feed.liquidations())
    derived = {stream_key(stream, "dead"), rig.stats_key("stats-1")}
    assert derived <= {key.decode() for key in keys}
    assert {key_slot(key) for key in keys} == {key_slot(stream.encode())}, "a key of the stream left its slot"
    Figures.from_audit("cluster: producer, alerter, stats on 3+3 nodes", feed.expected, audit, None).emit()


async def dead_lettered_by_every_group(client: RedisClient, stream: str) -> bool:
    return await dead_letters(client, stream) == len(GROUPS)


EVENTS = 240
SHOW_EVERY_S = 0.05
"""One event shown every 50 ms: 12 s of flow, which the faults land in the middle of."""


async def show_gradually(rig: Rig, feed: Feed) -> None:
    while not feed.done:
        feed.release(rig.exchange, 1)
        await asyncio.sleep(SHOW_EVERY_S)


async def _shown_at_least(feed: Feed, count: int) -> bool:
    return len(feed.shown()) >= count


Fault = Callable[[str], Awaitable[float]]
"""Injects a fault on the stream's Redis; returns the seconds until the set-up had settled again."""


async def run_through_faults(
    tmp_path: Path, client: RedisClient, connection_env: dict[str, str], faults: dict[str, Fault], *, seed: int
) -> tuple[Figures, int, int]:
    """Producer, alerter and stats on ``connection_env``; each fault injected in flow, one after another, each
    after more of the feed was shown and half of it published; then every invariant, but for the alerts: a fault
    can take an alert's "sent" marker with it (the alert went out, its marker was on the master that died), so
    what is checked is what a user sees: every liquidation alerted, repeats counted. Returns the figures, the
    alerts printed and the liquidations expected."""
    stream = untagged_stream()
    feed = Feed(seed=seed, events=EVENTS)
    seconds: dict[str, float] = {}
    async with Rig(tmp_path, stream=stream, connection_env=connection_env) as rig:
        await rig.start_stats("stats-1")
        alerter = await rig.start_alerter("alerter-1")
        producer = await rig.start_producer("producer-1", feed.watchlist, REDIS_WAIT_TIMEOUT_MS="500")
        trickle = asyncio.create_task(show_gradually(rig, feed))
        try:
            for n, (name, fault) in enumerate(faults.items(), start=1):
                before = EVENTS * n // (len(faults) + 1)
                await wait_for(partial(_shown_at_least, feed, before), within=60, what=f"events before the {name}")
                seconds[name] = round(await fault(stream), 1)  # the feed flows on meanwhile
            await trickle
        finally:
            trickle.cancel()
        audit = await assert_delivered(
            client,
            stream,
            feed.expected,
            groups=GROUPS,
            stats_keys=[rig.stats_key("stats-1")],
            within=120,
        )
        await wait_for(
            lambda: _every_liquidation_alerted(alerter, feed), within=60, what="an alert for every liquidation"
        )
        await rig.stop_all()
        assert not rig.crashes()
        assert not problems(rig.procs), problems(rig.procs)
        alerts = alerts_printed(alerter)
        keys = [e.key for e in feed.liquidations()]
        unmarked = await unsent_alerts(client, stream, keys, "stdout")
        log = producer.stderr()
    assert "each publish waits" in log  # --wait-replicas auto found the replica
    figures = Figures.from_audit(
        "",
        feed.expected,
        audit,
        None,
        fault_seconds=seconds,
        outages_logged=count_lines(log, "holding events in memory"),
        unreplicated_outages=count_lines(log, "replicas had the publish"),
        alerts=alerts,
        alerts_without_their_marker=len(unmarked),
    )
    return figures, alerts, len(feed.liquidations())


async def _every_liquidation_alerted(alerter: Proc, feed: Feed) -> bool:
    alerted = alerted_keys(alerter)
    return all(alerted[e.key] for e in feed.liquidations())


@pytest.mark.slow
async def test_a_cluster_failover_and_a_killed_master_mid_run_lose_nothing(
    redis_cluster: Cluster, tmp_path: Path
) -> None:
    async def failover(stream: str) -> float:
        return await redis_cluster.failover(stream)

    async def kill(stream: str) -> float:
        killed, seconds = await redis_cluster.kill_master(stream)
        await redis_cluster.restart(killed)
        return seconds

    faults: dict[str, Fault] = {"failover": failover, "kill": kill}
    async with cluster_client(redis_cluster) as client:
        figures, alerts, liquidations = await run_through_faults(
            tmp_path, client, cluster_env(redis_cluster), faults, seed=142
        )
    figures.scenario = (
        f"cluster: CLUSTER FAILOVER, then SIGKILL of the stream's master ({alerts - liquidations} alerts repeated)"
    )
    figures.emit()
    assert alerts >= liquidations


@pytest.mark.slow
async def test_a_sentinel_failover_and_a_killed_master_mid_run_lose_nothing(
    redis_sentinels: Sentinels, tmp_path: Path
) -> None:
    async def failover(stream: str) -> float:
        seconds = await redis_sentinels.failover()
        await redis_sentinels.settled(master=await redis_sentinels.master(), within=60, what="the demoted master")
        return seconds

    async def kill(stream: str) -> float:
        killed, seconds = await redis_sentinels.kill_master()
        await redis_sentinels.restart(killed, within=60)
        return seconds

    faults: dict[str, Fault] = {"failover": failover, "kill": kill}
    async with redis_sentinels.client() as sentinel:
        client: Redis = sentinel.master_for(SENTINEL_MASTER, socket_timeout=5)
        try:
            figures, alerts, liquidations = await run_through_faults(
                tmp_path, client, sentinel_env(redis_sentinels), faults, seed=143
            )
        finally:
            await client.aclose()
    figures.scenario = (
        f"sentinel: SENTINEL FAILOVER, then SIGKILL of the master ({alerts - liquidations} alerts repeated)"
    )
    figures.emit()
    assert alerts >= liquidations
