"""A Redis client fit for blocking reads, and the check that a client handed to us is one.

What an outage is (which errors are waited out) is decided in :mod:`plumbing.redis_errors`, for every process.
"""

from __future__ import annotations

from redis.asyncio import Redis

from consumers.config import ConsumerConfig
from consumers.errors import SocketTimeoutTooShort

SOCKET_TIMEOUT_MARGIN_S = 5.0
"""How much longer than the read block the socket waits: room for a slow network and a busy Redis."""


def connect(config: ConsumerConfig) -> Redis:
    """A client whose socket timeout outlasts the configured block, so an idle stream never looks like a failure."""
    return Redis.from_url(
        config.redis_url,
        socket_timeout=config.settings.block_ms / 1000 + SOCKET_TIMEOUT_MARGIN_S,
        socket_connect_timeout=5.0,
        client_name=_client_name(f"liq-consumer:{config.group}:{config.consumer}"),
    )


def _client_name(name: str) -> str:
    """CLIENT SETNAME refuses spaces and control characters; the name is only a label in CLIENT LIST."""
    return "".join(c if c.isprintable() and not c.isspace() else "_" for c in name)


def check_socket_timeout(redis: Redis, block_ms: int) -> None:
    """Raise :class:`SocketTimeoutTooShort` if ``redis`` would give up on an XREADGROUP blocked for ``block_ms``.

    ``socket_timeout=None`` (redis-py's default) waits forever and passes.
    """
    timeout = redis.connection_pool.connection_kwargs.get("socket_timeout")
    if timeout is not None and float(timeout) * 1000 <= block_ms:
        raise SocketTimeoutTooShort(float(timeout), block_ms)
