"""Which Redis errors every process waits out, and which it stops on: decided in one place."""

from __future__ import annotations

import pytest
from redis.exceptions import (
    AuthenticationError,
    AuthorizationError,
    BusyLoadingError,
    ClusterDownError,
    DataError,
    MasterDownError,
    NoPermissionError,
    NoScriptError,
    OutOfMemoryError,
    ReadOnlyError,
    ResponseError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from plumbing.redis_errors import redis_unavailable


@pytest.mark.parametrize(
    "exc",
    [
        RedisConnectionError("Connection refused"),
        RedisTimeoutError("Timeout reading from socket"),
        BusyLoadingError("Redis is loading the dataset in memory"),
        ConnectionResetError(104, "Connection reset by peer"),
        OutOfMemoryError("command not allowed when used memory > 'maxmemory'."),
        ReadOnlyError("You can't write against a read only replica."),
        MasterDownError("Link with MASTER is down and replica-serve-stale-data is set to 'no'."),
        TryAgainError("Multiple keys request during rehashing of slot"),
        ClusterDownError("The cluster is down"),
    ],
    ids=type,
)
def test_outages_and_refusals_for_now_are_waited_out(exc: Exception) -> None:
    assert redis_unavailable(exc)


@pytest.mark.parametrize(
    "exc",
    [
        AuthenticationError("invalid username-password pair or user is disabled."),
        AuthorizationError("Authorization error"),
        NoPermissionError("this user has no permissions to run the 'xadd' command"),
        ResponseError("WRONGTYPE Operation against a key holding the wrong kind of value"),
        NoScriptError("No matching script."),
        DataError("Invalid input of type: 'NoneType'"),
        ValueError("not Redis at all"),
    ],
    ids=type,
)
def test_refused_credentials_and_other_errors_are_not_outages(exc: Exception) -> None:
    assert not redis_unavailable(exc)
