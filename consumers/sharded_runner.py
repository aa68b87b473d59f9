"""Read every shard of a sharded stream (``LIQ_SHARDS``) through one group name, as one consumer.

A Redis Cluster refuses one ``XREADGROUP`` over keys of several slots, and the shards are in different slots on
purpose (:mod:`plumbing.shards`), so each shard gets its own :class:`~consumers.runner.Runner`: its own group on
its stream (same group and consumer name on every shard), its own acknowledgements, claims and dead letters, all in
the shard's slot. They share the handler, called for one shard at a time as a single Runner calls it, so a
service's state (the stats aggregator's totals, the alerter's cooldown) sees every shard; the merge is just that,
since every event is in exactly one shard and a consumer that sums per event or acts per key needs no order between
shards. Order holds within a shard only.

With one shard this is one Runner on the stream itself, as before.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import fields
from typing import TypeVar

from consumers.config import ConsumerConfig
from consumers.groups import ConsumerGroup
from consumers.runner import BatchHandler, Handler, Runner, RunnerCounters
from plumbing.redis_connect import RedisClient
from plumbing.shards import shard_streams
from schemas import Event

T = TypeVar("T")


class ShardedRunner:
    """The runners of every shard, stopped, run, counted and health-checked together."""

    def __init__(self, runners: list[Runner], *, stream: str) -> None:
        if not runners:
            raise ValueError("a ShardedRunner needs at least one runner")
        self.runners = runners
        self.stream = stream
        """The stream as configured (shard 0): what logs and metric labels name."""
        self.group = runners[0].group
        self.consumer = runners[0].consumer
        self._listeners: list[Callable[[], None]] = []
        self._announced: float | None = None
        for runner in runners:
            runner.add_read_listener(self._shard_read)

    @classmethod
    def from_config(
        cls,
        redis: RedisClient,
        config: ConsumerConfig,
        *,
        handler: Handler | None = None,
        batch_handler: BatchHandler | None = None,
    ) -> ShardedRunner:
        turn = asyncio.Lock()  # one handler call at a time, as with one Runner: handlers are written for that

        async def one(event: Event) -> None:
            assert handler is not None
            async with turn:
                await handler(event)

        async def batch(events: list[Event]) -> None:
            assert batch_handler is not None
            async with turn:
                await batch_handler(events)

        runners = [
            Runner(
                redis,
                stream=name,
                group=config.group,
                consumer=config.consumer,
                handler=None if handler is None else one,
                batch_handler=None if batch_handler is None else batch,
                settings=config.settings,
            )
            for name in shard_streams(config.stream, config.shards)
        ]
        return cls(runners, stream=config.stream)

    @property
    def groups(self) -> list[ConsumerGroup]:
        return [runner.consumer_group for runner in self.runners]

    def stop(self) -> None:
        """Stop every shard's runner: safe from a signal handler, idempotent."""
        for runner in self.runners:
            runner.stop()

    @property
    def stopping(self) -> bool:
        return self.runners[0].stopping

    async def wait_stopped(self, seconds: float) -> bool:
        return await self.runners[0].wait_stopped(seconds)

    async def when_redis_answers(self, step: Callable[[], Awaitable[T]]) -> T | None:
        return await self.runners[0].when_redis_answers(step)

    async def run(self) -> None:
        """Run every shard's runner until stopped; one that fails stops the others, and its error is raised."""
        tasks = [asyncio.ensure_future(runner.run()) for runner in self.runners]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        finally:
            self.stop()  # a runner returns only when stopped or failing: the others follow it
            results = await asyncio.gather(*tasks, return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result

    @property
    def counters(self) -> RunnerCounters:
        """Every shard's counters, summed."""
        total = RunnerCounters()
        for runner in self.runners:
            for f in fields(RunnerCounters):
                setattr(total, f.name, getattr(total, f.name) + getattr(runner.counters, f.name))
        return total

    @property
    def last_read_ok(self) -> float | None:
        """The oldest of the shards' last successful reads: healthy only while every shard is read."""
        reads = [runner.last_read_ok for runner in self.runners]
        return None if any(read is None for read in reads) else min(read for read in reads if read is not None)

    def add_read_listener(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` each time every shard has been read again (see :meth:`Runner.add_read_listener`)."""
        self._listeners.append(callback)

    def _shard_read(self) -> None:
        oldest = self.last_read_ok
        if oldest is not None and (self._announced is None or oldest > self._announced):
            self._announced = oldest
            for callback in self._listeners:
                callback()

    async def lag(self) -> int | None:
        """Entries not yet delivered to the group, over every shard; None if any shard's is unknown."""
        lags = [await group.lag() for group in self.groups]
        return None if any(lag is None for lag in lags) else sum(lag for lag in lags if lag is not None)

    async def metrics(self) -> dict[str, int | None]:
        values: dict[str, int | None] = dict(self.counters.as_dict())
        values["lag"] = await self.lag()
        return values


AnyRunner = Runner | ShardedRunner
"""What the metrics and health server reads: one stream's runner, or every shard's."""
