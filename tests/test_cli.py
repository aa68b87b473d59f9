"""``python -m producer`` as a user runs it: a real process, the fake exchange, a real Redis."""

from __future__ import annotations

import asyncio
import re
import socket
from pathlib import Path

import pytest
import redis.asyncio

from producer.config import OPTIONS
from producer.simulation.fake_exchange import SERVER_ERROR, FakeHyperliquid
from producer.simulation.scenarios import DEMO_WATCHLIST, Scenario, demo_scenario
from tests.helpers import (
    RedisServer,
    producer_env,
    start_producer,
    stream_events,
    stream_liquidations,
    terminate,
    wait_until,
)
from tests.support.truth import adl_truth, assert_matches_truth, visible_from


async def run_producer(*args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    proc = await start_producer(*args, env=env)
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode()


@pytest.fixture
def scenario(fake_hl: FakeHyperliquid) -> Scenario:
    built = demo_scenario(seed=21)
    fake_hl.load(built)
    return built


async def test_help_names_every_flag_and_environment_variable() -> None:
    code, out = await run_producer("--help")
    assert code == 0
    for opt in OPTIONS:
        assert opt.flag in out and opt.env in out
    assert "--once" in out


async def test_a_bad_setting_is_named_with_its_variable() -> None:
    code, out = await run_producer(env={"HL_POLL_INTERVAL": "soon"})
    assert code == 2
    assert "--interval / HL_POLL_INTERVAL='soon'" in out
    code, out = await run_producer("--watchlist", "0x123")
    assert code == 2 and "not an address" in out


async def test_once_publishes_and_a_rerun_adds_nothing(
    fake_hl: FakeHyperliquid, scenario: Scenario, stream: str
) -> None:
    env = producer_env(fake_hl, stream)
    code, out = await run_producer("--once", env=env)
    assert code == 0, out
    truth = visible_from(scenario, DEMO_WATCHLIST)
    assert_matches_truth(await stream_events(stream), truth)
    assert out.count(" liquidation ") == len(truth)  # one log line per published liquidation
    adl = len(adl_truth(scenario, DEMO_WATCHLIST))
    assert out.count(" adl ") == adl
    assert f"{len(truth) + adl} events found, {len(truth) + adl} published" in out

    code, out = await run_producer("--once", env=env)
    assert code == 0, out
    assert_matches_truth(await stream_events(stream), truth)
    assert "0 published" in out


async def test_flags_override_the_environment(fake_hl: FakeHyperliquid, scenario: Scenario, stream: str) -> None:
    env = producer_env(fake_hl, f"{stream}:ignored")
    code, out = await run_producer("--once", "--stream", stream, env=env)
    assert code == 0, out
    assert len(await stream_liquidations(stream)) == len(visible_from(scenario, DEMO_WATCHLIST))
    assert await stream_events(f"{stream}:ignored") == []


async def test_two_processes_side_by_side_publish_each_once(
    fake_hl: FakeHyperliquid, scenario: Scenario, stream: str
) -> None:
    env = producer_env(fake_hl, stream)
    results = await asyncio.gather(run_producer("--once", env=env), run_producer("--once", env=env))
    assert [code for code, _ in results] == [0, 0]
    assert_matches_truth(await stream_events(stream), visible_from(scenario, DEMO_WATCHLIST))


async def test_sigterm_stops_a_running_producer_cleanly(
    fake_hl: FakeHyperliquid, scenario: Scenario, stream: str
) -> None:
    proc = await start_producer(env=producer_env(fake_hl, stream))
    expected = len(visible_from(scenario, DEMO_WATCHLIST))

    async def published() -> bool:
        return len(await stream_liquidations(stream)) == expected

    try:
        await wait_until(published, within=15, message="the producer to publish the scenario")
    finally:
        out, _ = await terminate(proc)
    assert proc.returncode == 0, out.decode()
    assert "stopped after" in out.decode()


async def test_once_with_redis_unreachable_fails_loudly(
    fake_hl: FakeHyperliquid, scenario: Scenario, redis_server: RedisServer
) -> None:
    redis_server.kill()
    code, out = await run_producer("--once", env=producer_env(fake_hl, "liq", redis_server.url))
    assert code == 1
    assert "Redis unreachable" in out
    assert "not published" in out


async def test_a_taken_metrics_port_is_one_line_naming_the_setting(fake_hl: FakeHyperliquid, stream: str) -> None:
    """The same line the consumers give, not a traceback from deep inside asyncio."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {**producer_env(fake_hl, stream), "METRICS_PORT": str(port), "METRICS_HOST": "127.0.0.1"}
        code, out = await run_producer("--once", env=env)
    assert code == 1, out
    assert f"ERROR producer: cannot serve metrics on 127.0.0.1:{port} (" in out
    assert "--metrics-port / METRICS_PORT" in out
    assert "Traceback" not in out


def test_an_empty_variable_counts_as_unset() -> None:
    from producer.config import PROTOCOL_VAULTS, load_config

    config = load_config([], {"HL_WATCHLIST": "", "HL_POLL_INTERVAL": ""})
    assert config.watchlist == PROTOCOL_VAULTS and config.poll_interval == 10.0


async def test_help_lists_the_default_watchlist_once_and_groups_options_by_source() -> None:
    from producer.config import PROTOCOL_VAULTS, VAULT_NAMES

    code, out = await run_producer("--help", env={"COLUMNS": "80"})
    assert code == 0
    for vault in PROTOCOL_VAULTS:
        # Whole, once, beside its name: an address wrapped over two lines cannot be copied.
        assert out.count(vault) == 1, vault
        assert re.search(rf"{vault}\s+{re.escape(VAULT_NAMES[vault])}\n", out)
    sections = dict(re.findall(r"^(\S[^\n]*):\n(.*?)(?=^\S|\Z)", out, re.M | re.S))
    assert "--coins" in sections["trades source"] and "BTC,ETH,SOL" not in sections["node source"]
    assert all(flag in sections["node source"] for flag in ("--node-path", "--node-from", "--node-follow"))
    assert "--watchlist" in sections["ws and fills sources"] and "--ws-quiet" in sections["ws and fills sources"]
    assert max(len(line) for line in out.splitlines()) <= 80
    # The trades source is described by what it is, not by a name from the project's history.
    assert re.search(r"original\s+tracker's\s+heuristic", sections["trades source"]) and "seed" not in out


def test_the_start_up_line_names_what_the_source_reads() -> None:
    from producer.cli import source_scope
    from producer.config import ProducerConfig

    assert source_scope(ProducerConfig(source="node", node_paths=(Path("/data/fills"),))) == "/data/fills"
    assert source_scope(ProducerConfig(source="trades")) == "BTC,ETH,SOL"
    assert source_scope(ProducerConfig(source="fills")) == "9 addresses"
    assert source_scope(ProducerConfig()) == "9 addresses at wss://api.hyperliquid.xyz/ws"
    assert source_scope(ProducerConfig(adaptive=True)) == (
        "9 pinned addresses and the biggest makers, 10 on the WebSocket at wss://api.hyperliquid.xyz/ws and 20 read "
        "over REST"
    )


async def test_once_tells_an_exchange_outage_from_a_quiet_hour(fake_hl: FakeHyperliquid, stream: str) -> None:
    env = {**producer_env(fake_hl, stream), "HL_HTTP_ATTEMPTS": "1"}
    code, out = await run_producer("--once", env=env)  # a quiet hour: nothing to find
    assert code == 0, out
    fake_hl.fail_next(SERVER_ERROR, times=1000)
    code, out = await run_producer("--once", env=env)
    assert code == 1, out
    assert out.count(f"the exchange could not be read: all {len(DEMO_WATCHLIST)} reads of the poll failed") == 1
    assert "Traceback" not in out


async def test_once_exits_1_when_redis_took_nothing_even_on_a_quiet_market(
    fake_hl: FakeHyperliquid, redis_server: RedisServer
) -> None:
    redis_server.kill()
    code, out = await run_producer("--once", env=producer_env(fake_hl, "liq", redis_server.url))
    assert code == 1, out
    assert "Redis was unreachable: the poll's positions were not recorded" in out


@pytest.mark.parametrize("policy", ["volatile-lru", "allkeys-lru"])
async def test_a_redis_that_may_evict_our_keys_is_refused_as_a_bad_setting(
    fake_hl: FakeHyperliquid, scenario: Scenario, redis_server: RedisServer, policy: str
) -> None:
    """Under ``volatile-lru`` dedup keys (they have a TTL) get evicted and a restart publishes an event twice;
    under ``allkeys-lru`` the stream and the checkpoint go too. Refused before anything is published."""
    admin = redis.asyncio.Redis.from_url(redis_server.url)
    await admin.config_set("maxmemory-policy", policy)
    await admin.config_set("maxmemory", 100 << 20)
    env = producer_env(fake_hl, "liq", redis_server.url)
    code, out = await run_producer("--once", env=env)
    assert code == 2, out
    assert f"maxmemory-policy {policy}" in out and "REDIS_ALLOW_EVICTION" in out
    assert len(out.strip().splitlines()) == 2 and "Traceback" not in out, "the start-up line, then one error line"
    assert await admin.exists("liq") == 0

    code, out = await run_producer("--once", env={**env, "REDIS_ALLOW_EVICTION": "1"})
    assert code == 0, out
    assert "exactly once is not guaranteed" in out
    assert await admin.xlen("liq") == len(visible_from(scenario, DEMO_WATCHLIST)) + len(
        adl_truth(scenario, DEMO_WATCHLIST)
    )
    await admin.aclose()


async def test_an_evicting_policy_without_maxmemory_evicts_nothing_and_runs(
    fake_hl: FakeHyperliquid, scenario: Scenario, redis_server: RedisServer
) -> None:
    admin = redis.asyncio.Redis.from_url(redis_server.url)
    await admin.config_set("maxmemory-policy", "volatile-lru")  # maxmemory stays 0: no limit, no eviction
    await admin.aclose()
    code, out = await run_producer("--once", env=producer_env(fake_hl, "liq", redis_server.url))
    assert code == 0, out
    assert "maxmemory-policy" not in out
