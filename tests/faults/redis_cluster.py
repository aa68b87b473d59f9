"""A Redis Cluster (3 masters, 3 replicas) and a Sentinel set-up (a master, a replica, 3 sentinels) of a test's own,
on free loopback ports, with the failovers a test injects and then waits out.

    async with Cluster(tmp_path / "cluster") as cluster:
        client = cluster.client()                      # redis.asyncio.cluster.RedisCluster from the seed nodes
        await client.xadd("{liq}:stream", {"n": "1"})
        await cluster.failover("{liq}:stream")         # CLUSTER FAILOVER on the slot's replica, roles switched
        await cluster.kill_master("{liq}:stream")      # SIGKILL; the cluster promotes the replica

Why real servers: fakeredis has no cluster and no Sentinel, and what a client must survive (MOVED, CROSSSLOT,
READONLY from a demoted master, a node gone) only a real one says. Every wait polls until the set-up has
*settled* (every live node agrees, every replica in sync), never a fixed sleep: these machines are small and shared.
Every process is SIGKILLed on exit, whatever happened; the ``redis_cluster`` and ``redis_sentinels`` fixtures
(one per module) skip their tests, saying why, only when the Redis binaries are missing.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Self

import pytest
import pytest_asyncio
import redis.asyncio as aioredis
import redis.asyncio.cluster as aiocluster
from redis.asyncio.sentinel import Sentinel
from redis.crc import REDIS_CLUSTER_HASH_SLOTS, key_slot

from tests.faults import servers
from tests.faults.invariants import wait_for
from tests.faults.redis_proc import RedisProcess

HOST = "127.0.0.1"
NODE_TIMEOUT_MS = 2_000
"""How long a cluster node may be silent before the others fail it over (the default, 15 s, makes a kill test
wait 15 s; much shorter and a node starved of CPU on a shared machine is failed over for nothing)."""

NO_SYNC_DELAY = ["--repl-diskless-sync-delay", "0"]
"""A master waits 5 s by default before a full sync, for more replicas to share it; ours have one replica each."""

SENTINEL_DOWN_AFTER_MS = 1_000
SENTINEL_FAILOVER_TIMEOUT_MS = 5_000
SENTINEL_MASTER = "liq"
START_ATTEMPTS = 3
"""Ports are checked free and then bound by the server; a parallel run may win that race. Then: new ports."""


async def start_all(processes: Sequence[RedisProcess]) -> None:
    """Start servers side by side; if any fails, kill them all and raise its error (a lost port race first, so
    the caller knows to pick other ports)."""
    results = await asyncio.gather(*(process.start() for process in processes), return_exceptions=True)
    errors = [result for result in results if isinstance(result, BaseException)]
    if errors:
        for process in processes:
            process.kill()
        races = [error for error in errors if isinstance(error, servers.ServerDidNotStart) and error.lost_port_race]
        raise (races or errors)[0]


def key_bytes(key: str | bytes) -> bytes:
    return key.encode() if isinstance(key, str) else key


Where = str | bytes | int
"""A key (its slot is its hash tag's, if it has one) or a slot number."""


def slot_of(where: Where) -> int:
    return where if isinstance(where, int) else key_slot(key_bytes(where))


# --- what a node says about the cluster (pure) -----------------------------------------------------------------


@dataclass(frozen=True)
class NodeView:
    """One line of ``CLUSTER NODES``: what the asked node believes about one node of the cluster."""

    node_id: str
    port: int
    flags: frozenset[str]
    master_id: str | None
    slots: tuple[tuple[int, int], ...]
    """Inclusive ranges this node serves (slots being migrated, ``[...]``, are left out)."""

    @property
    def is_master(self) -> bool:
        return "master" in self.flags

    @property
    def failing(self) -> bool:
        return bool({"fail", "fail?", "noaddr", "handshake"} & self.flags)


def parse_cluster_nodes(text: str) -> list[NodeView]:
    """``CLUSTER NODES``: ``<id> <ip:port@bus[,host]> <flags> <master|-> <ping> <pong> <epoch> <link> <slot>...``."""
    views = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 8:
            continue
        address = fields[1].split("@", 1)[0]
        slots = []
        for item in fields[8:]:
            if item.startswith("["):
                continue
            first, _, last = item.partition("-")
            slots.append((int(first), int(last or first)))
        views.append(
            NodeView(
                node_id=fields[0],
                port=int(address.rsplit(":", 1)[1]),
                flags=frozenset(fields[2].split(",")),
                master_id=None if fields[3] == "-" else fields[3],
                slots=tuple(sorted(slots)),
            )
        )
    return views


SlotMap = tuple[tuple[int, int, int], ...]
"""(first slot, last slot, port of the master serving them), sorted."""


def slot_map(views: Iterable[NodeView]) -> SlotMap:
    """Who serves which slots, in one node's view; failing nodes serve nothing."""
    return tuple(
        sorted(
            (first, last, view.port)
            for view in views
            if view.is_master and not view.failing
            for first, last in view.slots
        )
    )


Replication = tuple[tuple[int, int], ...]
"""(replica's port, its master's port), sorted."""


def replication_map(views: Iterable[NodeView]) -> Replication:
    """Who replicates whom, in one node's view (failing nodes left out)."""
    ports = {view.node_id: view.port for view in views}
    return tuple(
        sorted(
            (view.port, ports[view.master_id])
            for view in views
            if view.master_id is not None and view.master_id in ports and not view.failing
        )
    )


def covers_every_slot(slots: SlotMap) -> bool:
    """Whether the ranges tile 0..16383 exactly: no gap, no slot served twice."""
    expected = 0
    for first, last, _ in slots:
        if first != expected:
            return False
        expected = last + 1
    return expected == REDIS_CLUSTER_HASH_SLOTS


def owner_port(slots: SlotMap, slot: int) -> int | None:
    return next((port for first, last, port in slots if first <= slot <= last), None)


def replication_in_sync(info: dict[str, object]) -> bool:
    """``INFO replication`` of a replica: linked to its master and not in the middle of a full sync."""
    return (
        info.get("role") == "slave"
        and info.get("master_link_status") == "up"
        and str(info.get("master_sync_in_progress")) == "0"
    )


# --- the cluster ------------------------------------------------------------------------------------------------


def node_client(node: RedisProcess) -> aioredis.Redis:
    """A client of one node (short timeouts: a check must never hang on a dead or frozen node)."""
    return aioredis.Redis(host=HOST, port=node.port, socket_timeout=2, socket_connect_timeout=1, decode_responses=True)


async def ask(node: RedisProcess, *command: str) -> object:
    client = node_client(node)
    try:
        return await client.execute_command(*command)  # type: ignore[no-untyped-call]  # unannotated in redis-py
    finally:
        await client.aclose()


async def info(node: RedisProcess, section: str) -> dict[str, object]:
    client = node_client(node)
    try:
        return await client.info(section)
    finally:
        await client.aclose()


class _Servers:
    """A set of redis-server processes a test starts as one: started on entry, logs shown on failure, always
    stopped on exit (a process left running would hold its ports for the next test)."""

    async def start(self, within: float = 60.0) -> float:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def log_tails(self, lines: int = 8) -> str:
        raise NotImplementedError

    async def __aenter__(self) -> Self:
        try:
            await self.start()
        except BaseException:
            self.stop()
            raise
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is not None:
            print(self.log_tails())
        self.stop()


class Cluster(_Servers):
    """``masters`` masters with ``replicas`` replicas each, every node a ``redis-server`` on its own ports."""

    def __init__(self, workdir: Path, *, masters: int = 3, replicas: int = 1, node_timeout_ms: int = NODE_TIMEOUT_MS):
        self.workdir = workdir
        self.masters = masters
        self.replicas = replicas
        self.node_timeout_ms = node_timeout_ms
        self.nodes: list[RedisProcess] = []
        self._state = "not started"
        """The last thing a wait saw, for the message when it times out."""

    # --- addresses -------------------------------------------------------------------------------------------

    @property
    def live(self) -> list[RedisProcess]:
        return [node for node in self.nodes if node.proc is not None]

    @property
    def seeds(self) -> list[aiocluster.ClusterNode]:
        """Every node, as a client's ``startup_nodes`` (any one that answers is enough for a client)."""
        return [aiocluster.ClusterNode(HOST, node.port) for node in self.nodes]

    def client(self, **kwargs: object) -> aiocluster.RedisCluster:
        options: dict[str, object] = {"socket_timeout": 5, "socket_connect_timeout": 2}
        options.update(kwargs)
        return aiocluster.RedisCluster(startup_nodes=self.seeds, **options)  # type: ignore[arg-type]

    def node(self, port: int) -> RedisProcess:
        return next(node for node in self.nodes if node.port == port)

    # --- lifecycle -------------------------------------------------------------------------------------------

    def _node_args(self) -> list[str]:
        return [
            "--cluster-enabled",
            "yes",
            "--cluster-config-file",
            "nodes.conf",
            "--cluster-node-timeout",
            str(self.node_timeout_ms),
            # A replica that lagged on a busy machine must still be promoted: a test kills its master on purpose.
            "--cluster-replica-validity-factor",
            "0",
            *NO_SYNC_DELAY,
        ]

    async def start(self, within: float = 60.0) -> float:
        """Start the nodes, join them (``redis-cli --cluster create``), wait until settled; returns the seconds."""
        started = time.monotonic()
        size = self.masters * (1 + self.replicas)
        for attempt in range(1, START_ATTEMPTS + 1):
            ports = servers.free_cluster_ports(size)
            self.nodes = [
                RedisProcess(self.workdir / f"node-{port}", port=port, extra=self._node_args()) for port in ports
            ]
            try:
                await start_all(self.nodes)
                break
            except servers.ServerDidNotStart as error:
                self.stop()
                if not error.lost_port_race or attempt == START_ATTEMPTS:
                    raise
        await self._create(within)
        await self.settled(within=within, what="the new cluster")
        return time.monotonic() - started

    async def _create(self, within: float) -> None:
        proc = await asyncio.create_subprocess_exec(
            servers.binary("redis-cli"),
            "--cluster",
            "create",
            *(f"{HOST}:{node.port}" for node in self.nodes),
            "--cluster-replicas",
            str(self.replicas),
            "--cluster-yes",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        try:
            out, _ = await asyncio.wait_for(proc.communicate(), within)
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        if proc.returncode != 0:
            tail = "\n".join(out.decode(errors="replace").splitlines()[-15:])
            pytest.fail(f"redis-cli --cluster create exited {proc.returncode}:\n{tail}")

    def stop(self) -> None:
        """SIGKILL every node (nothing of a test's cluster is worth a clean shutdown)."""
        for node in self.nodes:
            node.kill()

    async def restart(self, node: RedisProcess, within: float = 30.0) -> float:
        """Start a killed node again on its port with its ``nodes.conf``: it rejoins, as a replica of whoever took
        over its slots. Returns the seconds until the cluster has settled with it."""
        started = time.monotonic()
        await node.start()
        await self.settled(within=within, what=f"node {node.port} to rejoin")
        return time.monotonic() - started

    # --- what the cluster says -------------------------------------------------------------------------------

    async def views(self, node: RedisProcess) -> list[NodeView]:
        return parse_cluster_nodes(str(await ask(node, "CLUSTER", "NODES")))

    async def _settled_now(self, expect_owner: tuple[int, int] | None = None) -> bool:
        """Every live node: ``cluster_state:ok``, the same full slot map with ``masters`` masters, the same view of
        who replicates whom; every live node either serves slots or is a replica in sync with the master all the
        nodes say it has; and, if asked, ``slot`` is served by ``port``."""
        maps = set()
        for node in self.live:
            cluster_info = str(await ask(node, "CLUSTER", "INFO"))
            if "cluster_state:ok" not in cluster_info:
                self._state = f"node {node.port}: cluster_state is not ok"
                return False
            views = await self.views(node)
            maps.add((slot_map(views), replication_map(views)))
        if len(maps) != 1:
            self._state = f"the nodes disagree on who serves which slots or replicates whom: {sorted(maps)}"
            return False
        ((slots, replication),) = maps
        serving = {port for _, _, port in slots}
        if not covers_every_slot(slots) or len(serving) != self.masters:
            self._state = f"slot map not whole or not {self.masters} masters: {slots}"
            return False
        masters_of = dict(replication)
        for node in self.live:
            if node.port in serving:
                continue
            replica_info = await info(node, "replication")
            if not replication_in_sync(replica_info) or replica_info.get("master_port") != masters_of.get(node.port):
                self._state = f"node {node.port} is neither a master with slots nor a replica in sync"
                return False
        if expect_owner is not None and owner_port(slots, expect_owner[0]) != expect_owner[1]:
            self._state = f"slot {expect_owner[0]} is not served by {expect_owner[1]} yet: {slots}"
            return False
        return True

    async def settled(
        self, *, within: float = 30.0, what: str = "the cluster", owner: tuple[int, int] | None = None
    ) -> float:
        return await wait_for(
            lambda: self._settled_now(owner), within=within, what=f"{what} to settle", detail=lambda: self._state
        )

    async def owner(self, key: Where) -> RedisProcess:
        """The master that serves the key's slot now."""
        slots = slot_map(await self.views(self.live[0]))
        port = owner_port(slots, slot_of(key))
        assert port is not None, f"no master serves slot {slot_of(key)}: {slots}"
        return self.node(port)

    async def replica_of(self, master: RedisProcess) -> RedisProcess:
        views = await self.views(master)
        (me,) = [view for view in views if "myself" in view.flags]
        ports = [view.port for view in views if view.master_id == me.node_id and not view.failing]
        assert ports, f"master {master.port} has no live replica"
        return self.node(ports[0])

    # --- faults ----------------------------------------------------------------------------------------------

    async def failover(self, key: Where, within: float = 30.0) -> float:
        """``CLUSTER FAILOVER`` on the replica of the key's master (coordinated: no write is lost); returns the
        seconds until the replica serves the slot, the old master replicates it and every node agrees."""
        await self.settled(what="the cluster before the failover")
        master = await self.owner(key)
        replica = await self.replica_of(master)
        started = time.monotonic()
        await ask(replica, "CLUSTER", "FAILOVER")
        await self.settled(within=within, what="the failover", owner=(slot_of(key), replica.port))
        return time.monotonic() - started

    async def kill_master(self, key: Where, within: float = 60.0) -> tuple[RedisProcess, float]:
        """SIGKILL the key's master; returns it (for :meth:`restart`) and the seconds until the cluster had
        promoted its replica and settled without it."""
        await self.settled(what="the cluster before the kill")
        master = await self.owner(key)
        replica = await self.replica_of(master)
        started = time.monotonic()
        master.kill()
        await self.settled(within=within, what=f"the promotion of {replica.port}", owner=(slot_of(key), replica.port))
        return master, time.monotonic() - started

    def log_tails(self, lines: int = 8) -> str:
        return "\n".join(f"--- node {node.port} ---\n{node.log_tail(lines)}" for node in self.nodes)


# --- Sentinel ---------------------------------------------------------------------------------------------------


def sentinel_config(master_port: int, *, quorum: int, down_after_ms: int, failover_timeout_ms: int) -> str:
    return (
        f"sentinel monitor {SENTINEL_MASTER} {HOST} {master_port} {quorum}\n"
        f"sentinel down-after-milliseconds {SENTINEL_MASTER} {down_after_ms}\n"
        f"sentinel failover-timeout {SENTINEL_MASTER} {failover_timeout_ms}\n"
        f"sentinel parallel-syncs {SENTINEL_MASTER} 1\n"
    )


def sentinel_master_state(reply: object) -> dict[str, str]:
    """``SENTINEL MASTER <name>``: redis-py parses it into a dict of strings and numbers; a raw flat list works too."""
    if isinstance(reply, dict):
        return {str(k): str(v) for k, v in reply.items()}
    assert isinstance(reply, list), f"not a SENTINEL MASTER reply: {reply!r}"
    return {str(reply[i]): str(reply[i + 1]) for i in range(0, len(reply) - 1, 2)}


class Sentinels(_Servers):
    """A master and a replica watched by ``count`` sentinels (``quorum`` of them to agree the master is down)."""

    def __init__(
        self,
        workdir: Path,
        *,
        count: int = 3,
        quorum: int = 2,
        down_after_ms: int = SENTINEL_DOWN_AFTER_MS,
        failover_timeout_ms: int = SENTINEL_FAILOVER_TIMEOUT_MS,
    ) -> None:
        self.workdir = workdir
        self.count = count
        self.quorum = quorum
        self.down_after_ms = down_after_ms
        self.failover_timeout_ms = failover_timeout_ms
        self.data: list[RedisProcess] = []
        """The master and the replica, in the order they were started (roles change; ask :meth:`master`)."""
        self.sentinels: list[RedisProcess] = []
        self._state = "not started"

    @property
    def addresses(self) -> list[tuple[str, int]]:
        return [(HOST, sentinel.port) for sentinel in self.sentinels]

    @contextlib.asynccontextmanager
    async def client(self, **kwargs: object) -> AsyncIterator[Sentinel]:
        """A ``redis.asyncio.sentinel.Sentinel``; ``.master_for(SENTINEL_MASTER)`` follows failovers. Its
        connections to the sentinels are closed on exit (redis-py's ``Sentinel`` has no ``aclose``)."""
        options: dict[str, object] = {"socket_timeout": 2, "socket_connect_timeout": 1}
        options.update(kwargs)
        sentinel = Sentinel(self.addresses, **options)  # type: ignore[no-untyped-call]  # unannotated in redis-py
        try:
            yield sentinel
        finally:
            for connection in sentinel.sentinels:
                await connection.aclose()

    def node(self, port: int) -> RedisProcess:
        return next(node for node in self.data if node.port == port)

    async def start(self, within: float = 60.0) -> float:
        started = time.monotonic()
        for attempt in range(1, START_ATTEMPTS + 1):
            try:
                await self._spawn()
                break
            except servers.ServerDidNotStart as error:
                self.stop()
                if not error.lost_port_race or attempt == START_ATTEMPTS:
                    raise
        await self.settled(master=self.data[0], within=within, what="the new Sentinel set-up")
        return time.monotonic() - started

    async def _spawn(self) -> None:
        master = RedisProcess(self.workdir / "data-0", extra=NO_SYNC_DELAY)
        self.data = [master]
        await master.start()
        replica = RedisProcess(self.workdir / "data-1", extra=[*NO_SYNC_DELAY, "--replicaof", HOST, str(master.port)])
        self.data.append(replica)
        self.sentinels = []
        for index in range(self.count):
            config = self.workdir / f"sentinel-{index}" / "sentinel.conf"
            config.parent.mkdir(parents=True, exist_ok=True)
            config.write_text(
                sentinel_config(
                    master.port,
                    quorum=self.quorum,
                    down_after_ms=self.down_after_ms,
                    failover_timeout_ms=self.failover_timeout_ms,
                )
            )
            self.sentinels.append(RedisProcess(config.parent, config_file=config, extra=["--sentinel"]))
        await start_all([replica, *self.sentinels])

    def stop(self) -> None:
        for process in [*self.sentinels, *self.data]:
            process.kill()

    async def restart(self, node: RedisProcess, within: float = 30.0) -> float:
        """Start a killed data node again: the sentinels turn it into a replica of the current master."""
        started = time.monotonic()
        await node.start()
        current = await self.master()
        await self.settled(master=current, within=within, what=f"{node.port} to rejoin as a replica")
        return time.monotonic() - started

    # --- what the sentinels say ------------------------------------------------------------------------------

    async def reported_masters(self) -> list[tuple[str, int] | None]:
        """Each sentinel's ``GET-MASTER-ADDR-BY-NAME`` (None where it has no answer)."""
        reported: list[tuple[str, int] | None] = []
        for sentinel in self.sentinels:
            reply = await ask(sentinel, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", SENTINEL_MASTER)
            if isinstance(reply, list | tuple) and len(reply) == 2:
                reported.append((str(reply[0]), int(reply[1])))
            else:
                reported.append(None)
        return reported

    async def master(self) -> RedisProcess:
        """The data node every sentinel reports as master (fails if they disagree)."""
        reported = set(await self.reported_masters())
        assert len(reported) == 1 and None not in reported, f"the sentinels disagree on the master: {reported}"
        ((_, port),) = reported  # type: ignore[misc]
        return self.node(port)

    async def _settled_now(self, master: RedisProcess, replicas: Sequence[RedisProcess]) -> bool:
        """Every sentinel reports ``master``, sees it as up with its replicas and knows the other sentinels;
        ``master`` is a master and every one of ``replicas`` replicates it, in sync."""
        for sentinel in self.sentinels:
            state = sentinel_master_state(await ask(sentinel, "SENTINEL", "MASTER", SENTINEL_MASTER))
            if int(state.get("port", 0)) != master.port or state.get("flags") != "master":
                self._state = f"sentinel {sentinel.port}: master {state.get('port')} flags {state.get('flags')}"
                return False
            if int(state.get("num-other-sentinels", 0)) != self.count - 1:
                self._state = f"sentinel {sentinel.port} knows {state.get('num-other-sentinels')} other sentinels"
                return False
            if int(state.get("num-slaves", 0)) < len(replicas):
                self._state = f"sentinel {sentinel.port} knows {state.get('num-slaves')} replicas"
                return False
        if (await info(master, "replication")).get("role") != "master":
            self._state = f"{master.port} is not a master yet"
            return False
        for replica in replicas:
            replication = await info(replica, "replication")
            if not replication_in_sync(replication) or replication.get("master_port") != master.port:
                self._state = f"{replica.port} does not replicate {master.port} yet: {replication.get('master_port')}"
                return False
        return True

    async def settled(
        self, *, master: RedisProcess, within: float = 30.0, what: str = "the sentinels", replicas: bool = True
    ) -> float:
        """Wait until every sentinel reports ``master`` as up and, unless ``replicas`` is false, every other live
        data node replicates it in sync. A demoted master is reconfigured only when a sentinel next reads its
        INFO, every 10 s: a test that needs the replica back waits for that, one that needs a master does not."""
        synced = [node for node in self.data if node is not master and node.proc is not None] if replicas else []
        return await wait_for(
            lambda: self._settled_now(master, synced),
            within=within,
            what=f"{what} to settle on master {master.port}",
            detail=lambda: self._state,
        )

    # --- faults ----------------------------------------------------------------------------------------------

    async def _before_fault(self) -> tuple[RedisProcess, RedisProcess]:
        """The master and the replica that will replace it, once the set-up is whole (a fault injected while the
        last one is still being repaired tests nothing a user meets)."""
        old = await self.master()
        await self.settled(master=old, what="the set-up before the fault")
        (new,) = [node for node in self.data if node is not old]
        return old, new

    async def failover(self, within: float = 30.0) -> float:
        """``SENTINEL FAILOVER``: returns the seconds until every sentinel reports the promoted replica (the old
        master becomes its replica some seconds later; :meth:`settled` waits for that)."""
        _, new = await self._before_fault()
        started = time.monotonic()
        await self._ask_for_failover(started + within)
        await self.settled(master=new, within=within, what="the Sentinel failover", replicas=False)
        return time.monotonic() - started

    async def _ask_for_failover(self, deadline: float) -> None:
        """A sentinel refuses with NOGOODSLAVE until its own view of the replica (refreshed every second or so)
        says it is in sync, which can lag behind the replica's INFO that :meth:`settled` read: ask again."""
        while True:
            try:
                await ask(self.sentinels[0], "SENTINEL", "FAILOVER", SENTINEL_MASTER)
                return
            except aioredis.ResponseError as exc:
                if "NOGOODSLAVE" not in str(exc) or time.monotonic() > deadline:
                    raise
            await asyncio.sleep(0.2)

    async def kill_master(self, within: float = 60.0) -> tuple[RedisProcess, float]:
        """SIGKILL the master; returns it (for :meth:`restart`) and the seconds until every sentinel reports the
        promoted replica."""
        old, new = await self._before_fault()
        started = time.monotonic()
        old.kill()
        await self.settled(master=new, within=within, what="the promotion after the kill", replicas=False)
        return old, time.monotonic() - started

    def log_tails(self, lines: int = 8) -> str:
        return "\n".join(
            f"--- {process.workdir.name} ({process.port}) ---\n{process.log_tail(lines)}"
            for process in [*self.data, *self.sentinels]
        )


# --- fixtures ---------------------------------------------------------------------------------------------------


def skip_without_redis_binaries() -> None:
    missing = servers.missing_binaries("redis-server", "redis-cli")
    if missing:
        pytest.skip(f"{' and '.join(missing)} not installed: the Redis Cluster and Sentinel tests start their own")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Cluster]:
    """One cluster for a module's tests (starting one takes seconds). Failovers move masters, so a test asks
    :meth:`Cluster.owner` rather than remembering; a test that kills a node restarts it before it ends."""
    skip_without_redis_binaries()
    async with Cluster(tmp_path_factory.mktemp("cluster")) as cluster:
        yield cluster


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def redis_sentinels(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Sentinels]:
    """One Sentinel set-up for a module's tests; a test asks :meth:`Sentinels.master` rather than remembering."""
    skip_without_redis_binaries()
    async with Sentinels(tmp_path_factory.mktemp("sentinel")) as setup:
        yield setup
