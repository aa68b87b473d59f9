"""Where a process's Redis is (one server, a Redis Cluster, or a master watched by Sentinel) and the one way every
process connects to it.

Three settings say it, and exactly one of them may be given: ``REDIS_URL`` (a server; the default), or
``REDIS_CLUSTER_NODES`` (seed nodes of a cluster), or ``REDIS_SENTINELS`` with ``REDIS_SENTINEL_MASTER`` (the
sentinels and the name they know the master by). The client this module builds follows the topology by itself:
redis-py's cluster client re-routes on MOVED and ASK and retries TRYAGAIN and CLUSTERDOWN, and its Sentinel client
asks the sentinels for the master whenever it opens a connection. What still reaches a caller during a failover is
an outage (:func:`plumbing.redis_errors.redis_unavailable`), held and retried like a dropped connection.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from redis.asyncio import Redis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.connection import parse_url
from redis.asyncio.sentinel import Sentinel

from plumbing.errors import ConfigError
from plumbing.options import DEFAULT_REDIS_URL, REDIS_SCHEMES, Option, csv, non_empty, redact_url, redis_url_option

RedisClient = Redis | RedisCluster
"""What :func:`connect_redis` returns: a Sentinel-managed master is a plain ``Redis`` whose pool asks the sentinels."""

RedisKind = Literal["server", "cluster", "sentinel"]

_CONNECTION_KEYS = ("username", "password", "ssl", "ssl_ca_certs", "ssl_cert_reqs", "ssl_certfile", "ssl_keyfile")
"""What a node URL may carry for every connection besides its address: credentials and TLS."""


def redis_address(value: str) -> str:
    """One node: ``host:port``, or a ``redis://`` / ``rediss://`` URL when the nodes want a password or TLS."""
    entry = non_empty(value)
    if entry.lower().startswith(REDIS_SCHEMES):
        try:
            parsed = parse_url(entry)
        except ValueError as exc:
            raise ValueError(f"{entry!r} is not a Redis URL ({exc})") from None
        if "path" in parsed:
            raise ValueError(f"{entry!r}: a cluster or sentinel node needs a host and port, not a socket")
        return entry
    host, colon, port = entry.rpartition(":")
    if not colon or not host or not port.isdigit() or not 0 < int(port) <= 65535:
        raise ValueError(f"{entry!r} is not host:port (e.g. 10.0.0.1:6379) or a redis:// URL")
    return entry


def redis_addresses(value: str) -> tuple[str, ...]:
    """A comma-separated list of :func:`redis_address`, at least one."""
    entries = tuple(redis_address(entry) for entry in csv(value))
    if not entries:
        raise ValueError("must name at least one host:port")
    return entries


def redis_options(purpose: str) -> tuple[Option, ...]:
    """The connection settings every process shares; ``purpose`` says what this process does with the Redis."""
    return (
        redis_url_option(purpose),
        Option(
            "redis_cluster_nodes",
            "--redis-cluster-nodes",
            "REDIS_CLUSTER_NODES",
            redis_addresses,
            None,
            "A Redis Cluster instead: some of its nodes, host:port,host:port (redis://user:password@host:port or "
            "rediss:// for credentials and TLS, which apply to every node).",
        ),
        Option(
            "redis_sentinels",
            "--redis-sentinels",
            "REDIS_SENTINELS",
            redis_addresses,
            None,
            "A master watched by Sentinel instead: the sentinels, host:port,... (credentials in a redis:// entry are "
            "the master's; the sentinels are asked without any).",
        ),
        Option(
            "redis_sentinel_master",
            "--redis-sentinel-master",
            "REDIS_SENTINEL_MASTER",
            non_empty,
            None,
            "The name the sentinels know the master by (with --redis-sentinels).",
        ),
    )


REDIS_OPTION_NAMES: tuple[str, ...] = tuple(option.name for option in redis_options(""))
"""The names of :func:`redis_options`, for a process that lists its options by name."""


@dataclass(frozen=True, kw_only=True)
class RedisSettings:
    """The connection settings, as part of a process's configuration (its config class derives from this)."""

    redis_url: str = DEFAULT_REDIS_URL
    redis_cluster_nodes: tuple[str, ...] | None = None
    redis_sentinels: tuple[str, ...] | None = None
    redis_sentinel_master: str | None = None

    def __post_init__(self) -> None:
        problem = redis_settings_problem(self)
        if problem is not None:
            raise ConfigError(problem)

    @property
    def redis_kind(self) -> RedisKind:
        if self.redis_cluster_nodes:
            return "cluster"
        if self.redis_sentinels:
            return "sentinel"
        return "server"

    def redis_where(self) -> str:
        """Where the Redis is, for a log line: no password."""
        if self.redis_cluster_nodes:
            return "Redis Cluster " + ",".join(_shown(node) for node in self.redis_cluster_nodes)
        if self.redis_sentinels:
            sentinels = ",".join(_shown(node) for node in self.redis_sentinels)
            return f"Sentinel master {self.redis_sentinel_master!r} (sentinels {sentinels})"
        return redact_url(self.redis_url)

    def redis_env(self) -> dict[str, str]:
        """The variables that give a child process the same Redis."""
        env = {"REDIS_URL": self.redis_url}
        if self.redis_cluster_nodes:
            env["REDIS_CLUSTER_NODES"] = ",".join(self.redis_cluster_nodes)
        if self.redis_sentinels:
            env["REDIS_SENTINELS"] = ",".join(self.redis_sentinels)
        if self.redis_sentinel_master:
            env["REDIS_SENTINEL_MASTER"] = self.redis_sentinel_master
        return env


def redis_settings_problem(settings: RedisSettings) -> str | None:
    """Why the connection settings contradict each other, or None. ``REDIS_URL`` at its default counts as unset:
    a deployment that moves to a cluster need not clear it, one that sets it as well as the cluster must choose."""
    cluster, sentinels, master = settings.redis_cluster_nodes, settings.redis_sentinels, settings.redis_sentinel_master
    url_given = settings.redis_url != DEFAULT_REDIS_URL
    if cluster and sentinels:
        return (
            "--redis-cluster-nodes / REDIS_CLUSTER_NODES and --redis-sentinels / REDIS_SENTINELS are both set: give one"
        )
    if (cluster or sentinels) and url_given:
        other = "--redis-cluster-nodes / REDIS_CLUSTER_NODES" if cluster else "--redis-sentinels / REDIS_SENTINELS"
        return f"--redis-url / REDIS_URL and {other} are both set: give one (credentials and TLS go in the node URLs)"
    if sentinels and not master:
        return "--redis-sentinels / REDIS_SENTINELS needs --redis-sentinel-master / REDIS_SENTINEL_MASTER, the name"
    if master and not sentinels:
        return "--redis-sentinel-master / REDIS_SENTINEL_MASTER is set without --redis-sentinels / REDIS_SENTINELS"
    return None


def _shown(node: str) -> str:
    return redact_url(node) if "://" in node else node


def _split(node: str) -> tuple[str, int, dict[str, Any]]:
    """A node's host and port, and the connection options its URL carries (none for ``host:port``)."""
    if "://" not in node:
        host, _, port = node.rpartition(":")
        return host, int(port), {}
    parsed = parse_url(node)
    options = {key: value for key, value in parsed.items() if key in _CONNECTION_KEYS}
    return str(parsed.get("host", "localhost")), int(parsed.get("port", 6379)), options


def connect_redis(
    settings: RedisSettings,
    *,
    socket_timeout: float | None,
    socket_connect_timeout: float = 5.0,
    client_name: str | None = None,
    health_check_interval: float = 0,
) -> RedisClient:
    """The client every process uses: a plain one, a cluster one from the seed nodes, or the Sentinel-managed master.

    Nothing is connected yet (the first command does), so a Redis that is down is the caller's outage to wait out,
    not a start-up failure.
    """
    common: dict[str, Any] = {
        "socket_timeout": socket_timeout,
        "socket_connect_timeout": socket_connect_timeout,
        "health_check_interval": health_check_interval,
    }
    if client_name is not None:
        common["client_name"] = client_name
    if settings.redis_cluster_nodes:
        nodes = [_split(node) for node in settings.redis_cluster_nodes]
        return RedisCluster(
            startup_nodes=[ClusterNode(host, port) for host, port, _ in nodes],
            **nodes[0][2],
            **common,
        )
    if settings.redis_sentinels:
        sentinels = [_split(node) for node in settings.redis_sentinels]
        timeouts = {"socket_timeout": socket_timeout, "socket_connect_timeout": socket_connect_timeout}
        sentinel = Sentinel(  # type: ignore[no-untyped-call]  # unannotated in redis-py
            [(host, port) for host, port, _ in sentinels], sentinel_kwargs=timeouts
        )
        assert settings.redis_sentinel_master is not None  # checked with the settings
        master: Redis = sentinel.master_for(settings.redis_sentinel_master, **sentinels[0][2], **common)
        return master
    client: Redis = Redis.from_url(settings.redis_url, **common)
    return client


def socket_timeout_of(client: RedisClient) -> float | None:
    """The socket timeout the client's connections use (None: they wait for ever)."""
    kwargs: Mapping[str, Any] = (
        client.nodes_manager.connection_kwargs
        if isinstance(client, RedisCluster)
        else client.connection_pool.connection_kwargs
    )
    timeout = kwargs.get("socket_timeout")
    return None if timeout is None else float(timeout)


async def drop_connections(client: RedisClient) -> None:
    """Close the client's connections, so that the next command connects afresh: to the master the sentinels
    name now, or along a cluster map read again. A connection opened before a Sentinel failover keeps talking
    to the old master until the sentinels demote it, which can take seconds; what it wrote there is lost."""
    if isinstance(client, RedisCluster):
        await client.aclose()  # the cluster client reconnects, and re-reads the slot map, on its next command
    else:
        await client.connection_pool.disconnect()
