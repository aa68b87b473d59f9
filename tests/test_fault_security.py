"""Redis with a password, an ACL user limited to our keys, and TLS: everything works; bad credentials fail fast.

The ACL below is the least our three processes need (found by running them under ``-@all`` and adding what
``ACL LOG`` reported, plus PING for the producer's idle health check and MULTI/EXEC for dead letters, which this
test exercises with a poison entry). RELIABILITY.md documents it.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import redis.asyncio as aioredis
import redis.exceptions

from tests.faults.feed import Feed
from tests.faults.invariants import (
    Figures,
    StreamAudit,
    assert_delivered,
    dead_letters,
    groups_caught_up,
    wait_for,
    wait_published,
)
from tests.faults.procs import Proc
from tests.faults.redis_proc import RedisProcess, make_tls_files
from tests.faults.rig import STREAM, Rig

KEYS = (f"~{STREAM}", f"~{STREAM}:*", "~{" + STREAM + "}:*")
"""The stream; its dead letters, alert markers and stats snapshots (``<stream>:*``); dedup keys and the
checkpoint (``{<stream>}:*``, the stream's hash tag)."""
COMMANDS = (
    "+ping",
    "+client|setname",
    "+evalsha",
    "+script|load",
    "+script|exists",
    "+hgetall",
    "+hset",
    "+set",
    "+get",
    "+mget",
    "+del",
    "+xadd",
    "+xrange",
    "+xreadgroup",
    "+xack",
    "+xautoclaim",
    "+xpending",
    "+xgroup|create",
    "+xgroup|delconsumer",
    "+xinfo|groups",
    "+xinfo|consumers",
    "+multi",
    "+exec",
    "+wait",
    "+info",
)
GROUPS = ("stats", "alerter")
HANG = 6.0
"""Seconds within which a process given bad credentials must have exited: more is a hang."""


async def add_user(db: aioredis.Redis, name: str, password: str, commands: tuple[str, ...] = COMMANDS) -> None:
    # redis-py leaves execute_command unannotated.
    await db.execute_command(  # type: ignore[no-untyped-call]
        "ACL", "SETUSER", name, "reset", "on", f">{password}", *KEYS, "resetchannels", "-@all", *commands
    )


async def run_flow(rig: Rig, feed: Feed) -> StreamAudit:
    """The three processes, the whole feed, and the invariants."""
    await rig.start_stats("stats-1")
    await rig.start_alerter("alerter-1")
    await rig.start_producer("producer-1", feed.watchlist)
    feed.release(rig.exchange)
    return await assert_delivered(
        rig.db, rig.stream, feed.expected, groups=GROUPS, stats_keys=[rig.stats_key("stats-1")], alert_sink="stdout"
    )


async def test_an_acl_user_limited_to_our_keys_and_commands_runs_everything(tmp_path: Path) -> None:
    feed = Feed(seed=505, events=20, busy=False)
    redis_server = RedisProcess(tmp_path / "redis", password="admin-pw")
    async with Rig(tmp_path, redis=redis_server) as rig:
        await add_user(rig.db, "liq", "liq-pw")
        rig.redis_url = redis_server.url("liq", "liq-pw")
        audit = await run_flow(rig, feed)

        # A poison entry goes to the dead-letter stream of each group (XADD + XACK in MULTI/EXEC).
        await rig.db.xadd(rig.stream, {"type": "liquidation", "v": "1", "key": "poison", "data": "{not json"})
        await wait_for(lambda: _dead_letters_are(rig, 2), within=30, what="the poison entry dead-lettered per group")
        await wait_for(lambda: groups_caught_up(rig.db, rig.stream, GROUPS), within=30, what="groups caught up")

        # The user really is confined: other keys and dangerous commands are refused.
        confined = aioredis.Redis.from_url(rig.redis_url)
        try:
            with pytest.raises(redis.exceptions.NoPermissionError):
                await confined.set("someone-else:key", "1")
            with pytest.raises(redis.exceptions.NoPermissionError):
                await confined.flushall()
        finally:
            await confined.aclose()
        await rig.stop_all()
        assert not rig.crashes()
    Figures.from_audit(
        f"ACL user ({len(COMMANDS)} commands, 3 key patterns)", feed.expected, audit, poison_dead_lettered_per_group=1
    ).emit()


async def _dead_letters_are(rig: Rig, n: int) -> bool:
    return await dead_letters(rig.db, rig.stream) == n


async def test_wrong_credentials_exit_non_zero_with_a_clear_error_never_a_hang(tmp_path: Path) -> None:
    """Every process, given a wrong password, exits 1 within a few seconds saying the credentials were refused."""
    redis_server = RedisProcess(tmp_path / "redis", password="admin-pw")
    async with Rig(tmp_path, redis=redis_server) as rig:
        await add_user(rig.db, "liq", "liq-pw")
        rig.redis_url = redis_server.url("liq", "not-the-password")
        feed = Feed(seed=1, events=1, busy=False)
        procs = [
            await rig.start_producer("producer", feed.watchlist),
            await rig.start_stats("stats"),
            await rig.start_stats("stats-no-rebuild", STATS_REBUILD="false"),
            await rig.start_alerter("alerter"),
        ]
        outcomes = await asyncio.gather(*(_exit_within(p, HANG) for p in procs))
    problems = [f"{p.name}: {outcome}" for p, outcome in zip(procs, outcomes, strict=True) if outcome]
    assert not problems, "\n".join(problems)


async def _exit_within(proc: Proc, seconds: float) -> str:
    """ "" if the process exited 1 in time with a clear message, else what went wrong."""
    try:
        code = await asyncio.wait_for(asyncio.shield(proc.proc.wait()), seconds)  # type: ignore[union-attr]
    except TimeoutError:
        await proc.kill_and_reap()
        return f"still running after {seconds:g} s (a hang); last log line: {proc.stderr().splitlines()[-1:]}"
    err = proc.stderr()
    if code != 1:
        return f"exit code {code}"
    if "invalid username-password pair" not in err:
        return "the error does not say the credentials were refused"
    if "Traceback" in err:
        return "a traceback instead of a clear error"
    return ""


async def test_an_acl_user_missing_a_command_gets_a_clear_error(tmp_path: Path) -> None:
    """A user whose ACL lacks a command the publish script runs (HSET, for the checkpoint) is a configuration
    error: the producer must exit 1 with a message saying Redis refused it, not a traceback."""
    redis_server = RedisProcess(tmp_path / "redis", password="admin-pw")
    async with Rig(tmp_path, redis=redis_server) as rig:
        await add_user(rig.db, "liq", "liq-pw", tuple(c for c in COMMANDS if c != "+hset"))
        rig.redis_url = redis_server.url("liq", "liq-pw")
        feed = Feed(seed=2, events=3, busy=False)
        feed.release(rig.exchange)
        producer = await rig.start_producer("producer", feed.watchlist)
        code = await producer.wait(30)
    err = producer.stderr()
    assert code == 1
    assert "Redis refused us" in err and "Traceback" not in err, err[-1500:]


async def test_tls_with_a_ca_file_runs_everything_and_a_bad_certificate_is_refused(tmp_path: Path) -> None:
    """``rediss://...?ssl_ca_certs=<ca.pem>`` verifies the server; ``?ssl_cert_reqs=none`` skips verification."""
    tls = make_tls_files(tmp_path / "tls")
    feed = Feed(seed=606, events=15, busy=False)
    redis_server = RedisProcess(tmp_path / "redis", password="admin-pw", tls=tls)
    async with Rig(tmp_path, redis=redis_server) as rig:
        assert rig.redis_url.startswith("rediss://") and "ssl_ca_certs=" in rig.redis_url
        audit = await run_flow(rig, feed)
        insecure = f"rediss://:admin-pw@127.0.0.1:{redis_server.port}/0?ssl_cert_reqs=none"
        once = await rig.start(
            "producer-insecure-once",
            "producer",
            rig.producer_env(feed.watchlist, REDIS_URL=insecure, LIQ_STREAM="tls:insecure"),
            "--once",
        )
        assert await once.wait(30) == 0, once.tail()
        await wait_published(rig.db, "tls:insecure", feed.expected, within=10)
        unverified = f"rediss://:admin-pw@127.0.0.1:{redis_server.port}/0"  # no CA: the self-signed chain fails
        refused = await rig.start(
            "producer-no-ca",
            "producer",
            rig.producer_env(feed.watchlist, REDIS_URL=unverified, LIQ_STREAM="tls:refused"),
            "--once",
        )
        assert await refused.wait(30) == 1
        assert "CERTIFICATE_VERIFY_FAILED" in refused.stderr()
        await rig.stop_all()
        assert not rig.crashes()
    Figures.from_audit(
        "TLS (rediss:// with ssl_ca_certs)",
        feed.expected,
        audit,
        cert_reqs_none="ok",
        no_ca="CERTIFICATE_VERIFY_FAILED, exit 1 with --once",
    ).emit()
