"""A Redis client fit for blocking reads, the check that a client handed to us is one, and what an outage is.

Every process decides "Redis is unavailable: hold on and try again" with :func:`redis_unavailable`, so that the
producer, the runner and the tail agree on which errors are waited out and which are fatal.
"""

from __future__ import annotations

from redis.asyncio import Redis
from redis.exceptions import (
    AuthenticationError,
    AuthorizationError,
    ClusterDownError,
    MasterDownError,
    NoPermissionError,
    OutOfMemoryError,
    ReadOnlyError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from consumers.config import ConsumerConfig
from consumers.errors import SocketTimeoutTooShort

CREDENTIALS_REFUSED = (AuthenticationError, AuthorizationError, NoPermissionError)
"""Redis answered and refused us (password, ACL): waiting will not fix it. redis-py raises the first two as
ConnectionError subclasses, so they are told apart before anything is taken for an outage."""

REFUSED_FOR_NOW = (OutOfMemoryError, ReadOnlyError, MasterDownError, TryAgainError, ClusterDownError)
"""Redis answered but cannot take our commands until something outside us changes: memory full under
``noeviction`` (OOM), a server demoted to replica by a failover (READONLY), a replica cut off from its master,
a cluster mid-resharding or down. Nothing is written when Redis refuses a command (a script is refused at its
first write, before it changed anything), so such an error is retried like a dropped connection."""

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


def redis_unavailable(exc: BaseException) -> bool:
    """True when ``exc`` means Redis cannot serve us right now and may later: retry with backoff, lose nothing.

    Unreachable (connection refused or dropped, timeouts, TLS failures, still loading its data) and refusing for
    now (:data:`REFUSED_FOR_NOW`) both count; refused credentials and every other error (a bug, a wrong type) do not.
    """
    if isinstance(exc, CREDENTIALS_REFUSED):
        return False
    return isinstance(exc, (RedisConnectionError, RedisTimeoutError, OSError, *REFUSED_FOR_NOW))
