"""One scenario's world: its redis-server, the fake exchange, and our processes, torn down whatever happens.

    async with Rig(tmp_path) as rig:
        feed = Feed(seed=3, events=40)
        stats = await rig.start_stats("stats-1")
        producer = await rig.start_producer("producer-1", feed.watchlist)
        feed.release(rig.exchange, 10)
        ...
        await rig.stop_all()            # SIGTERM; every process must exit 0
        assert not rig.crashes()

The settings are shrunk for tests (short blocks, claims after 3 s, polls every 0.2 s) but are passed exactly as a
user passes them: environment variables of a real ``python -m ...`` process.
"""

from __future__ import annotations

import signal
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType

import redis.asyncio as aioredis

from plumbing.stream_keys import stream_key
from tests.faults.chaos import ChaosExchange
from tests.faults.procs import Proc, crashes
from tests.faults.redis_proc import RedisProcess

STREAM = "hyperliquid:liquidations"
TEN_YEARS_S = str(10 * 365 * 24 * 3600)


class Rig:
    def __init__(
        self,
        tmp_path: Path,
        *,
        redis: RedisProcess | None = None,
        stream: str = STREAM,
        start_redis: bool = True,
        connection_env: Mapping[str, str] | None = None,
    ) -> None:
        """``connection_env``: a Redis the test set up itself (a cluster, Sentinel) and reads with its own client;
        the rig neither starts nor stops it, and the processes get these variables instead of a REDIS_URL."""
        self.tmp = tmp_path
        self.redis = redis or RedisProcess(tmp_path / "redis")
        self.exchange = ChaosExchange()
        self.stream = stream
        self.logdir = tmp_path / "logs"
        self.logdir.mkdir(parents=True, exist_ok=True)
        self.procs: list[Proc] = []
        self.own_redis = not connection_env
        self.start_redis = start_redis and self.own_redis
        self.db: aioredis.Redis = None  # type: ignore[assignment]  # set on entry
        self.connection_env = dict(connection_env or {})
        self.redis_url: str = ""
        """The URL our processes get (the admin's unless a scenario says otherwise)."""

    async def __aenter__(self) -> Rig:
        if self.redis.proc is None and self.start_redis:
            await self.redis.start()
        await self.exchange.start()
        if self.own_redis:
            self.db = self.redis.client()
            self.redis_url = self.redis_url or self.redis.url()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        for proc in self.procs:
            await proc.kill_and_reap()
        await self.exchange.stop()
        if self.own_redis:
            await self.db.aclose()
            await self.redis.stop()
        if exc_type is not None:  # the logs are the first thing one wants when a scenario fails
            for proc in self.procs:
                print(proc.tail(40))
            if self.own_redis:
                print("--- redis.log ---\n" + self.redis.log_tail())

    # --- processes -------------------------------------------------------------------------------------------

    def redis_env(self) -> dict[str, str]:
        return self.connection_env or {"REDIS_URL": self.redis_url}

    def producer_env(self, watchlist: Sequence[str], **overrides: str) -> dict[str, str]:
        env = {
            **self.redis_env(),
            "HL_API_URL": self.exchange.url,
            "HL_SOURCE": "fills",
            "HL_COMPLETE": "false",  # the invariants compare with the watched legs (tests/test_completion.py)
            "LIQ_STREAM": self.stream,
            "HL_WATCHLIST": ",".join(watchlist),
            "HL_LOOKBACK": TEN_YEARS_S,
            "HL_WEIGHT_PER_MINUTE": "1000000",
            "HL_POLL_INTERVAL": "0.2",
            "HL_HTTP_TIMEOUT": "2",
            "HL_HTTP_ATTEMPTS": "3",
            "LOG_LEVEL": "INFO",
        }
        env.update(overrides)
        return env

    def consumer_env(self, name: str, group: str, **overrides: str) -> dict[str, str]:
        env = {
            **self.redis_env(),
            "LIQ_STREAM": self.stream,
            "LIQ_GROUP": group,
            "LIQ_CONSUMER": name,
            "LIQ_BLOCK_MS": "500",
            "LIQ_CLAIM_IDLE_MS": "3000",
            "LIQ_RETRY_DELAY_MS": "200",
            "LIQ_GROUP_START": "0",
            "LIQ_COUNT": "50",
            "LOG_LEVEL": "INFO",
        }
        env.update(overrides)
        return env

    async def start(self, name: str, module: str, env: dict[str, str], *args: str) -> Proc:
        proc = Proc(name, module, env, self.logdir, args)
        self.procs.append(proc)
        return await proc.start()

    async def start_producer(self, name: str, watchlist: Sequence[str], **overrides: str) -> Proc:
        return await self.start(name, "producer", self.producer_env(watchlist, **overrides))

    async def start_stats(self, name: str, group: str = "stats", **overrides: str) -> Proc:
        env = self.consumer_env(name, group, STATS_INTERVAL_S="0.5")
        env.update(overrides)
        return await self.start(name, "consumers.stats", env)

    async def start_alerter(self, name: str, group: str = "alerter", **overrides: str) -> Proc:
        env = self.consumer_env(
            name,
            group,
            ALERT_THRESHOLD_USD="0",
            ALERT_BURST="1000000",
            ALERT_COOLDOWN_S="1",
            ALERT_SINKS="stdout",
            ALERT_SINK_ATTEMPTS="2",
            ALERT_SINK_BACKOFF_MS="100",
            ALERT_SINK_TIMEOUT_S="2",
        )
        env.update(overrides)
        return await self.start(name, "consumers.alerter", env)

    def stats_key(self, consumer: str, group: str = "stats") -> str:
        return stream_key(self.stream, f"stats:{group}:{consumer}")

    async def stop_all(self, within: float = 30.0) -> dict[str, int]:
        """SIGTERM every live process, as a supervisor does; returns the exit codes (all must be 0)."""
        alive = [p for p in self.procs if p.alive]
        for proc in alive:
            proc.signal(signal.SIGTERM)
        codes = {proc.name: await proc.wait(within) for proc in alive}
        bad = {name: code for name, code in codes.items() if code != 0}
        assert not bad, f"processes exited non-zero after SIGTERM: {bad}\n" + "\n".join(
            p.tail() for p in alive if p.name in bad
        )
        return codes

    def crashes(self) -> list[str]:
        return crashes(self.procs)

    def logs(self, prefix: str) -> str:
        """The stderr of every life of the processes whose names start with ``prefix``."""
        return "\n".join(p.stderr() for p in self.procs if p.name.startswith(prefix))
