"""The cluster bench still runs end to end (tiny counts, no figures judged): a bench that rots is found here, not
the day someone needs its numbers. It starts its own server and 3-master cluster (a few seconds)."""

from __future__ import annotations

import pytest

from bench import cluster_bench
from tests.faults.redis_cluster import skip_without_redis_binaries


def test_the_cluster_bench_prints_both_setups_side_by_side(capsys: pytest.CaptureFixture[str]) -> None:
    skip_without_redis_binaries()
    cluster_bench.main(["--events", "300", "--anchor-rounds", "20", "--batch-size", "50"])
    lines = [line.strip() for line in capsys.readouterr().out.splitlines()]
    assert any(line.startswith("anchor: PING round trip") for line in lines)
    for phase in ("publish:", "consume:"):
        at = lines.index(phase)
        assert lines[at + 1].startswith("1 server, 1 stream") and "events/s" in lines[at + 1]
        assert lines[at + 2].startswith("cluster, 3 masters, 3 shards") and "events/s" in lines[at + 2]
        assert lines[at + 3].startswith("cluster / single:")
    assert sum(line.startswith("where the time goes, cluster") for line in lines) == 2
