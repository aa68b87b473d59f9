"""What the latency benches share: percentiles of a run, and removing every key a bench stream left in Redis.

Kept apart so each bench computes its figures the same way: a p99 that means one thing in every printed table.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass

from redis.asyncio import Redis

from producer.publisher import hash_tag


def percentile(values: list[float], share: float) -> float:
    """The value below which ``share`` of ``values`` lie (nearest rank: no interpolation between samples)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


@dataclass(frozen=True)
class Latencies:
    """One run's latencies in milliseconds."""

    p50: float
    p99: float
    max: float
    mean: float
    n: int

    @classmethod
    def of(cls, milliseconds: list[float]) -> Latencies:
        return cls(
            p50=percentile(milliseconds, 0.50),
            p99=percentile(milliseconds, 0.99),
            max=max(milliseconds),
            mean=statistics.fmean(milliseconds),
            n=len(milliseconds),
        )

    def line(self) -> str:
        return (
            f"p50 {self.p50:8.2f} ms  p99 {self.p99:8.2f} ms  max {self.max:8.2f} ms  "
            f"mean {self.mean:8.2f} ms  (n={self.n})"
        )


async def delete_stream_keys(redis: Redis, stream: str) -> int:
    """Delete ``stream`` and every key the publisher made beside it (dedup keys, checkpoint: ``{stream}:...``)."""
    keys = [key async for key in redis.scan_iter(match=f"*{hash_tag(stream)}*", count=10_000)]
    deleted = 0
    for i in range(0, len(keys), 10_000):
        deleted += await redis.delete(*keys[i : i + 10_000])
    return deleted
