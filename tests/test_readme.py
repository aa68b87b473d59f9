"""The README is part of the product: its commands, configuration table and contract must stay true."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import subprocess
import sys
import time
import tomllib
from decimal import Decimal
from pathlib import Path

import pytest
from redis.asyncio import Redis

from producer.config import OPTIONS, PROTOCOL_VAULTS
from producer.simulation.fake_exchange import FakeHyperliquid, Fault
from producer.simulation.scenarios import HLP_LIQUIDATOR, ScenarioBuilder
from schemas import AdlEvent, LiquidationEvent, encode_entry
from tests.helpers import REDIS_URL, free_port, make_event, terminate

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
INSTALL_AND_RUN = "pip install -e . && python -m producer"
INSTALL_AND_TEST = "pip install -e '.[test]' && pytest"
DEFAULT_STREAM = "hyperliquid:liquidations"

PYTHON_BLOCK = re.compile(r"(?:<!-- readme-test: (?P<mode>[a-z]+) -->\n)?```python\n(?P<code>.*?\n)```", re.S)
BLOCKS = [(m.group("mode") or "run", m.group("code")) for m in PYTHON_BLOCK.finditer(README)]
"""Every Python block of the README with how the test runs it (the README explains the comment convention)."""


def blocks(mode: str) -> list[str]:
    return [code for kind, code in BLOCKS if kind == mode]


def block_id(code: str) -> str:
    """The block's place in the README, for the test's name."""
    return f"block-{[c for _, c in BLOCKS].index(code) + 1}"


def test_the_two_setup_commands_are_stated_and_ci_runs_the_test_one() -> None:
    setup = README.split("## Set-up", 1)[1].split("\n## ", 1)[0]
    commands = re.findall(r"```sh\n(.*?)\n```", setup, re.S)
    assert commands == [INSTALL_AND_RUN, INSTALL_AND_TEST]
    ci = (ROOT / ".ci" / "run").read_text()
    assert INSTALL_AND_TEST in ci.splitlines()


def test_the_configuration_table_lists_every_setting_with_its_default() -> None:
    rows = {m.group(1): m for m in re.finditer(r"^\| `([A-Z_]+)` \| `(--[a-z-]+)` \| (.*?) \|", README, re.M)}
    assert set(rows) == {opt.env for opt in OPTIONS if not opt.secret}
    for opt in OPTIONS:
        if opt.secret:  # no flag, so no row: the README names it with the rule that it comes from the environment
            assert f"`{opt.env}`" in README, opt.env
            continue
        row = rows[opt.env]
        assert row.group(2) == opt.flag
        if opt.default_help is None:
            assert row.group(3) == (f"`{opt.default}`" if opt.default else "(none)"), opt.env
    for address in (PROTOCOL_VAULTS[0], PROTOCOL_VAULTS[-1]):
        assert address in README


def test_the_contract_table_lists_every_event_field() -> None:
    documented = set(re.findall(r"^\| `([a-z_]+)` \|", README.split("| `data` field |", 1)[1], re.M))
    assert set(LiquidationEvent.__struct_fields__) | {"type"} <= documented


def test_the_consumer_tables_list_every_consumer_setting() -> None:
    from consumers.alerter.config import OPTIONS as ALERTER
    from consumers.config import runner_options
    from consumers.stats.config import OPTIONS as STATS

    section = README.split("## Consumers", 1)[1].split("\n## ", 1)[0]
    documented = set(re.findall(r"^\| (?:`--[a-z-]+`|—) \| `([A-Z_]+)` \|", section, re.M))
    expected = {opt.env for opt in (*runner_options(default_group="g"), *ALERTER, *STATS)}
    assert documented == expected


def test_every_python_block_of_the_readme_is_run_by_a_test() -> None:
    assert len(BLOCKS) == README.count("```python") >= 3
    assert {mode for mode, _ in BLOCKS} == {"run", "service", "exchange"}


def readme_env(stream: str) -> dict[str, str]:
    """The environment a block runs in: the test's Redis and stream, output unbuffered so it can be watched."""
    return {
        **os.environ,
        "REDIS_URL": REDIS_URL,
        "LIQ_STREAM": stream,
        "LIQ_GROUP_START": "0",
        "LIQ_BLOCK_MS": "200",
        "PYTHONUNBUFFERED": "1",
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }


@pytest.fixture
async def events(redis_client: Redis, stream: str) -> list[LiquidationEvent | AdlEvent]:
    """A liquidation, an ADL and an entry of a type the README's readers do not know, on the test's stream."""
    liquidation = make_event(coin="BTC", liquidation_side="long", value_usd=Decimal("194001"))
    adl = AdlEvent(
        tx_hash="0x" + "ab" * 32,
        coin="ETH",
        price=Decimal(3000),
        size=Decimal(2),
        value_usd=Decimal(6000),
        timestamp=int(time.time() * 1000),
        deleveraged_user="0x" + "11" * 20,
        position_side="short",
        liquidated_user="0x" + "22" * 20,
    )
    await redis_client.xadd(stream, encode_entry(liquidation))  # type: ignore[arg-type]
    await redis_client.xadd(stream, encode_entry(adl))  # type: ignore[arg-type]
    await redis_client.xadd(stream, {"type": "funding", "v": "1", "key": "funding|x", "data": "{}"})
    return [liquidation, adl]


async def spawn_block(code: str, stream: str, prelude: str = "") -> asyncio.subprocess.Process:
    source = prelude + code.replace(f'"{DEFAULT_STREAM}"', f'"{stream}"')
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        source,
        env=readme_env(stream),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def read_until(proc: asyncio.subprocess.Process, done: re.Pattern[str], within: float = 15) -> str:
    """What the process printed up to the line matching ``done``."""
    assert proc.stdout is not None
    seen = ""
    deadline = time.monotonic() + within
    while not done.search(seen):
        line = await asyncio.wait_for(proc.stdout.readline(), max(0.1, deadline - time.monotonic()))
        assert line, f"the block ended before printing {done.pattern!r}; it printed {seen!r}"
        seen += line.decode()
    return seen


@pytest.mark.parametrize("code", blocks("run"), ids=block_id)
async def test_a_plain_block_reads_the_events_and_skips_an_unknown_type(
    code: str, stream: str, events: list[LiquidationEvent | AdlEvent]
) -> None:
    proc = await spawn_block(code, stream)
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, err.decode()
    lines = out.decode().splitlines()
    assert [line.split(" ", 1)[1] for line in lines] == ["BTC long 194001", "ADL ETH short 6000"]


@pytest.mark.parametrize("code", blocks("service"), ids=block_id)
async def test_a_service_block_handles_the_events_and_stops_on_sigterm(
    code: str, stream: str, events: list[LiquidationEvent | AdlEvent]
) -> None:
    proc = await spawn_block(code, stream)
    try:
        seen = await read_until(proc, re.compile(r"^ADL ", re.M))
    finally:
        _, err = await terminate(proc)
    assert seen.splitlines() == ["BTC long $194001", "ADL ETH short $6000"]
    assert proc.returncode == 0, err.decode()
    assert "Traceback" not in err.decode()


POINT_THE_TRACKER_AT = """import producer.tracker
producer.tracker.LiquidationTracker.__init__.__defaults__ = ({url!r},)  # the fake exchange, not mainnet
"""


@pytest.mark.parametrize("code", blocks("exchange"), ids=block_id)
async def test_the_tracker_block_reports_a_liquidation_and_catches_the_exchange_being_unavailable(
    code: str, stream: str, fake_hl: FakeHyperliquid
) -> None:
    builder = ScenarioBuilder(seed=5, start_ms=int(time.time() * 1000) - 60_000)
    user = builder.address()
    builder.trade("BTC", buyer=HLP_LIQUIDATOR, seller=user, px="64011.0", sz="0.0412")
    fake_hl.load(builder.build())
    prelude = POINT_THE_TRACKER_AT.format(url=fake_hl.url)
    proc = await spawn_block(code, stream, prelude)
    try:
        seen = await read_until(proc, re.compile(r"^\{.*'count': 1\b", re.M))
    finally:
        await terminate(proc)  # it monitors for ever, as the original tracker did
    scan = seen.splitlines()[0]
    assert scan.startswith("[LiquidationEvent(") and f"liquidated_user='{user}'" in scan

    fake_hl.fail_next(Fault.http(400), times=3)  # BTC, ETH and SOL all refused
    proc = await spawn_block(code, stream, prelude)
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, err.decode()
    assert out.decode().startswith("no answer from the exchange: every request of the scan failed")


def metrics_snippet() -> str:
    snippets: list[str] = re.findall(r"```sh\n(.*?)\n```", README, re.S)
    [snippet] = [s for s in snippets if "METRICS_PORT=9464" in s]
    return snippet


def test_the_metrics_snippet_waits_for_the_server_and_prints_the_lag(stream: str) -> None:
    port = str(free_port())
    proc = subprocess.Popen(
        ["bash", "-c", metrics_snippet().replace("9464", port)],
        env=readme_env(stream),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=30)
    finally:
        with contextlib.suppress(ProcessLookupError):  # the snippet's background aggregator, if it outlived it
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert proc.returncode == 0, err
    assert re.search(rf'^hl_consumer_lag\{{.*stream="{re.escape(stream)}".*\}} 0\.0$', out, re.M), out


def test_the_trades_source_and_the_tracker_are_described_without_project_history() -> None:
    """ "The seed" meant the first version of this tracker, which a reader of the README never saw."""
    assert "seed" not in README.lower()
    assert "**the original tracker's method**" in README


def test_the_readme_names_every_console_script() -> None:
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    setup = README.split("## Set-up", 1)[1].split("\n## ", 1)[0]
    assert set(re.findall(r"`(hl-liquidation-[a-z]+)`", setup)) == set(scripts)
