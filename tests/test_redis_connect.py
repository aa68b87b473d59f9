"""One connection factory for every process: which client each setting gives, and the stream's keys in its slot."""

from __future__ import annotations

import pytest
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.sentinel import SentinelConnectionPool
from redis.crc import key_slot
from redis.exceptions import ClusterError, MovedError, ResponseError

from plumbing.errors import ConfigError
from plumbing.redis_connect import RedisSettings, connect_redis, redis_addresses, socket_timeout_of
from plumbing.redis_errors import redis_unavailable
from plumbing.stream_keys import UnslottableStreamName, key_namespace, stream_key


def test_nodes_are_host_port_or_urls_and_anything_else_is_refused() -> None:
    assert redis_addresses(" 10.0.0.1:7000, redis://u:pw@10.0.0.2:7001 ,") == (
        "10.0.0.1:7000",
        "redis://u:pw@10.0.0.2:7001",
    )
    for bad in ("", ",", "10.0.0.1", "host:port", "h:70000", "unix:///tmp/r.sock"):
        with pytest.raises(ValueError):
            redis_addresses(bad)


async def test_each_setting_gives_its_client_with_the_timeouts_asked_for() -> None:
    server = connect_redis(RedisSettings(redis_url="redis://127.0.0.1:1/0"), socket_timeout=7)
    cluster = connect_redis(
        RedisSettings(redis_cluster_nodes=("redis://liq:pw@127.0.0.1:1", "127.0.0.1:2")), socket_timeout=8
    )
    sentinel = connect_redis(
        RedisSettings(redis_sentinels=("127.0.0.1:3",), redis_sentinel_master="liq"), socket_timeout=9
    )
    try:
        assert isinstance(server, Redis) and socket_timeout_of(server) == 7
        assert isinstance(cluster, RedisCluster) and socket_timeout_of(cluster) == 8
        assert cluster.nodes_manager.connection_kwargs["password"] == "pw"  # the first node's credentials, for all
        assert [node.port for node in cluster.nodes_manager.startup_nodes.values()] == [1, 2]
        assert isinstance(sentinel, Redis) and isinstance(sentinel.connection_pool, SentinelConnectionPool)
        assert socket_timeout_of(sentinel) == 9
    finally:
        for client in (server, cluster, sentinel):
            await client.aclose()


def test_where_redis_is_is_logged_without_a_password() -> None:
    cluster = RedisSettings(redis_cluster_nodes=("redis://liq:secret@10.0.0.1:7000", "10.0.0.2:7000"))
    assert "secret" not in cluster.redis_where() and "10.0.0.2:7000" in cluster.redis_where()
    assert cluster.redis_env()["REDIS_CLUSTER_NODES"] == "redis://liq:secret@10.0.0.1:7000,10.0.0.2:7000"
    with pytest.raises(ConfigError, match="REDIS_SENTINEL_MASTER is set without"):
        RedisSettings(redis_sentinel_master="liq")


def test_a_failover_in_progress_is_an_outage_and_a_cross_slot_command_is_not() -> None:
    assert redis_unavailable(MovedError("3999 127.0.0.1:6381"))
    assert redis_unavailable(ClusterError("TTL exhausted."))
    assert redis_unavailable(
        ResponseError("UNBLOCKED force unblock from blocking operation, instance state changed (master -> replica?)")
    )
    assert not redis_unavailable(ResponseError("UNBLOCKED the stream key no longer exists"))
    assert not redis_unavailable(ResponseError("CROSSSLOT Keys in request don't hash to the same slot"))


@pytest.mark.parametrize("stream", ["hyperliquid:liquidations", "{hl}:liqs", "prod:{hl}:liqs", "a{b"])
def test_every_key_derived_from_a_stream_is_in_its_slot(stream: str) -> None:
    keys = [stream_key(stream, suffix) for suffix in ("dead", "alerted:k:log", "held:g:c", "stats:g:c")]
    keys.append(key_namespace(stream) + "checkpoint")
    assert {key_slot(key.encode()) for key in keys} == {key_slot(stream.encode())}


def test_tagged_streams_keep_their_key_names_and_untagged_ones_get_braces() -> None:
    assert stream_key("{hl}:liqs", "dead") == "{hl}:liqs:dead"
    assert stream_key("hyperliquid:liquidations", "dead") == "{hyperliquid:liquidations}:dead"
    with pytest.raises(UnslottableStreamName):
        stream_key("x}y", "dead")
