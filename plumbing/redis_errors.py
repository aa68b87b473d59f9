"""What an error from Redis means for a process: an outage to wait out, or a refusal that waiting will not fix.

Every process decides "Redis is unavailable: hold on and try again" with :func:`redis_unavailable`, so that the
producer, the runner and the tail agree on which errors are waited out and which are fatal.
"""

from __future__ import annotations

from redis.exceptions import (
    AskError,
    AuthenticationError,
    AuthorizationError,
    ClusterDownError,
    ClusterError,
    MasterDownError,
    NoPermissionError,
    OutOfMemoryError,
    ReadOnlyError,
    RedisClusterException,
    RedisError,
    ResponseError,
    SlotNotCoveredError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

CREDENTIALS_REFUSED = (AuthenticationError, AuthorizationError, NoPermissionError)
"""Redis answered and refused us (password, ACL): waiting will not fix it. redis-py raises the first two as
ConnectionError subclasses, so they are told apart before anything is taken for an outage."""

REFUSED_FOR_NOW = (
    OutOfMemoryError,
    ReadOnlyError,
    MasterDownError,
    TryAgainError,
    ClusterDownError,
    ClusterError,
    AskError,
    SlotNotCoveredError,
)
"""Redis answered but cannot take our commands until something outside us changes: memory full under
``noeviction`` (OOM), a server demoted to replica by a failover (READONLY), a replica cut off from its master,
a cluster mid-resharding or down, or a cluster client that ran out of redirections (MOVED and ASK, which
:class:`AskError` covers, and a slot no live node serves) while the cluster was still electing a new master.
Nothing is written when Redis refuses a command (a script is refused at its first write, before it changed
anything), so such an error is retried like a dropped connection."""


DEMOTED_WHILE_BLOCKED = "instance state changed"
"""How a blocked read (XREAD, XREADGROUP with BLOCK) ends when its server is demoted to replica mid-read
(``UNBLOCKED force unblock from blocking operation, instance state changed (master -> replica?)``): the read is
to be sent again, to the new master. (An UNBLOCKED for a stream deleted under the read is no outage.)"""

REDIS_ERRORS = (RedisError, RedisClusterException, OSError)
"""Everything a Redis call can raise that is about Redis: the cluster client's own exceptions are no RedisError."""


def redis_unavailable(exc: BaseException) -> bool:
    """True when ``exc`` means Redis cannot serve us right now and may later: retry with backoff, lose nothing.

    Unreachable (connection refused or dropped, timeouts, TLS failures, still loading its data) and refusing for
    now (:data:`REFUSED_FOR_NOW`) both count; refused credentials and every other error (a bug, a wrong type) do not.
    """
    if isinstance(exc, CREDENTIALS_REFUSED):
        return False
    if isinstance(exc, ResponseError) and DEMOTED_WHILE_BLOCKED in str(exc):
        return True
    return isinstance(exc, (RedisConnectionError, RedisTimeoutError, OSError, *REFUSED_FOR_NOW))
