"""A Redis client fit for blocking reads, and the check that a client handed to us is one.

What an outage is (which errors are waited out) is decided in :mod:`plumbing.redis_errors`, for every process;
which client (one server, a cluster, a Sentinel-managed master) in :mod:`plumbing.redis_connect`.
"""

from __future__ import annotations

from consumers.config import ConsumerConfig
from consumers.errors import SocketTimeoutTooShort
from plumbing.redis_connect import RedisClient, connect_redis, socket_timeout_of

SOCKET_TIMEOUT_MARGIN_S = 5.0
"""How much longer than the read block the socket waits: room for a slow network and a busy Redis."""


def connect(config: ConsumerConfig) -> RedisClient:
    """A client whose socket timeout outlasts the configured block, so an idle stream never looks like a failure."""
    return connect_redis(
        config,
        socket_timeout=config.settings.block_ms / 1000 + SOCKET_TIMEOUT_MARGIN_S,
        socket_connect_timeout=5.0,
        client_name=_client_name(f"liq-consumer:{config.group}:{config.consumer}"),
    )


def _client_name(name: str) -> str:
    """CLIENT SETNAME refuses spaces and control characters; the name is only a label in CLIENT LIST."""
    return "".join(c if c.isprintable() and not c.isspace() else "_" for c in name)


def check_socket_timeout(redis: RedisClient, block_ms: int) -> None:
    """Raise :class:`SocketTimeoutTooShort` if ``redis`` would give up on an XREADGROUP blocked for ``block_ms``.

    ``socket_timeout=None`` (redis-py's default) waits forever and passes.
    """
    timeout = socket_timeout_of(redis)
    if timeout is not None and timeout * 1000 <= block_ms:
        raise SocketTimeoutTooShort(timeout, block_ms)
