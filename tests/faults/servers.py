"""What every ``redis-server`` a test starts needs: the binary, a port nobody holds, and waiting until it answers.

One home for it because a single server (:mod:`tests.faults.redis_proc`), a cluster and a Sentinel set-up
(:mod:`tests.faults.redis_cluster`) all start servers the same way and must fail the same way: one line saying
which server did not come up, and the tail of its log.
"""

from __future__ import annotations

import asyncio
import random
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Collection
from pathlib import Path

import pytest
import redis.asyncio as aioredis
import redis.exceptions

NOT_YET = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError)
"""What a server that is not listening yet, or still loading its data, answers (BusyLoadingError is a
ConnectionError)."""

CLUSTER_BUS_OFFSET = 10_000
"""A cluster node also listens on its port + 10000 (the cluster bus), so that port must be free too."""

HIGHEST_CLUSTER_PORT = 65_535 - CLUSTER_BUS_OFFSET


def binary(name: str = "redis-server") -> str:
    """The path of a Redis binary; fails the test if it is missing (CI installs it)."""
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed; .ci/run installs it")
    return path


def missing_binaries(*names: str) -> list[str]:
    """The names among ``names`` that are not on PATH (for a skip that says which)."""
    return [name for name in names if shutil.which(name) is None]


def port_is_free(port: int) -> bool:
    """Whether a server could bind ``port`` on loopback right now."""
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def ephemeral_low(path: Path = Path("/proc/sys/net/ipv4/ip_local_port_range")) -> int:
    """The lowest port the kernel hands out to outgoing connections and to ``bind(0)`` (32768 if unknown)."""
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32_768


def cluster_port_range(low_ephemeral: int) -> range:
    """Ports for cluster nodes: the node's port and its bus port (+10000) both below the ephemeral range.

    Why below it: any outgoing connection on the machine (and every ``free_port()`` of other tests) takes its port
    from the ephemeral range, so a bus port chosen there may be taken between the check and the node's bind.
    """
    high = min(low_ephemeral - CLUSTER_BUS_OFFSET, HIGHEST_CLUSTER_PORT + 1)
    low = min(15_000, high - 1_000)
    return range(max(low, 1_024), high)


def free_cluster_ports(
    count: int,
    *,
    avoid: Collection[int] = (),
    is_free: Callable[[int], bool] = port_is_free,
    choose: Callable[[range], int] | None = None,
) -> list[int]:
    """``count`` distinct ports whose bus ports are free too. Random, so parallel test runs rarely pick the same;
    a run that loses the race anyway sees its server fail to bind and picks again (see ``bind_failed``)."""
    pick = choose or (lambda span: random.randrange(span.start, span.stop))
    span = cluster_port_range(ephemeral_low())
    ports: list[int] = []
    for _ in range(10_000):
        port = pick(span)
        taken = {*avoid, *ports}
        if port in taken or port + CLUSTER_BUS_OFFSET in taken:
            continue
        if is_free(port) and is_free(port + CLUSTER_BUS_OFFSET):
            ports.append(port)
            if len(ports) == count:
                return ports
    raise RuntimeError(f"found only {len(ports)} of {count} free port pairs in {span}")


def bind_failed(log: str) -> bool:
    """Whether a server's log says it lost the race for its port (another process bound it first)."""
    return "Address already in use" in log or "Could not create server TCP listening socket" in log


def log_tail(path: Path, lines: int = 20) -> str:
    if not path.exists():
        return f"(no {path.name})"
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


class ServerDidNotStart(RuntimeError):
    """A server exited, or did not answer in time; the message ends with the tail of its log."""

    def __init__(self, what: str, log: str) -> None:
        super().__init__(f"{what} did not start:\n{log}")
        self.lost_port_race = bind_failed(log)
        """True if another process bound the port first: start again on other ports rather than fail."""


async def wait_answering(
    client: aioredis.Redis, proc: subprocess.Popen[bytes], *, within: float, what: str, log: Path
) -> float:
    """Poll PING until the server answers; returns the seconds that took. Raises :class:`ServerDidNotStart` if the
    process exits or ``within`` passes first (the caller kills what it started)."""
    started = time.monotonic()
    while True:
        try:
            if await client.ping():
                return time.monotonic() - started
        except NOT_YET:
            pass
        if proc.poll() is not None or time.monotonic() - started > within:
            raise ServerDidNotStart(what, log_tail(log))
        await asyncio.sleep(0.05)
