"""What an error from Redis means for a process: an outage to wait out, or a refusal that waiting will not fix.

Every process decides "Redis is unavailable: hold on and try again" with :func:`redis_unavailable`, so that the
producer, the runner and the tail agree on which errors are waited out and which are fatal.
"""

from __future__ import annotations

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

CREDENTIALS_REFUSED = (AuthenticationError, AuthorizationError, NoPermissionError)
"""Redis answered and refused us (password, ACL): waiting will not fix it. redis-py raises the first two as
ConnectionError subclasses, so they are told apart before anything is taken for an outage."""

REFUSED_FOR_NOW = (OutOfMemoryError, ReadOnlyError, MasterDownError, TryAgainError, ClusterDownError)
"""Redis answered but cannot take our commands until something outside us changes: memory full under
``noeviction`` (OOM), a server demoted to replica by a failover (READONLY), a replica cut off from its master,
a cluster mid-resharding or down. Nothing is written when Redis refuses a command (a script is refused at its
first write, before it changed anything), so such an error is retried like a dropped connection."""


def redis_unavailable(exc: BaseException) -> bool:
    """True when ``exc`` means Redis cannot serve us right now and may later: retry with backoff, lose nothing.

    Unreachable (connection refused or dropped, timeouts, TLS failures, still loading its data) and refusing for
    now (:data:`REFUSED_FOR_NOW`) both count; refused credentials and every other error (a bug, a wrong type) do not.
    """
    if isinstance(exc, CREDENTIALS_REFUSED):
        return False
    return isinstance(exc, (RedisConnectionError, RedisTimeoutError, OSError, *REFUSED_FOR_NOW))
