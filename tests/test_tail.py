"""The tail: what a row and a JSON line say, where reading starts, and the command as a person or a script runs it."""

from __future__ import annotations

import asyncio
import io
import json
import os
import signal
import sys
from decimal import Decimal
from pathlib import Path

import msgspec
import pytest
from redis.asyncio import Redis

from consumers.tail.cli import follow, reader_gone, run_tail
from consumers.tail.config import TailConfig, load_tail_config, read_after
from consumers.tail.format import COLUMNS, format_entry, table_header
from plumbing.errors import ConfigError
from schemas import AdlEvent, LiquidationEvent, MalformedEntry, decode_entry, encode_entry
from tests.faults.poison import UNUSABLE_AMOUNTS, UNUSABLE_TIMES, with_field
from tests.helpers import REDIS_URL, make_event, wait_until

ROOT = Path(__file__).resolve().parent.parent
TX = "0x" + "ab" * 32
USER = "0x" + "12" * 20


def liquidation() -> dict[str, bytes]:
    event = make_event(
        tx_hash=TX,
        coin="BTC",
        liquidation_side="long",
        size=Decimal("12.50"),
        price=Decimal("97123.4"),
        value_usd=Decimal("1214042.5"),
        liquidated_user=USER,
        timestamp=1_732_495_402_000,
    )
    return encode_entry(event)


def cells(row: str) -> list[str]:
    return row.split()


# --- formatting ------------------------------------------------------------------------------------------------


def test_a_liquidation_row_reads_at_a_glance_under_its_header() -> None:
    row = format_entry(b"1732495402001-0", liquidation())
    assert cells(row) == [
        "2024-11-25",
        "00:43:22",
        "UTC",
        "liquidation",
        "BTC",
        "long",
        "12.5",
        "97,123.4",
        "$1,214,043",
        USER,
        "0xabab…abab",
    ]
    header = table_header()
    assert cells(header) == [name for name, _, _ in COLUMNS]
    assert row.index(USER) == header.index("user"), "columns line up"


def test_an_adl_row_shows_the_deleveraged_position() -> None:
    event = AdlEvent(
        tx_hash=TX,
        coin="ETH",
        price=Decimal(3000),
        size=Decimal("1.5"),
        value_usd=Decimal(4500),
        timestamp=1_732_495_402_000,
        deleveraged_user=USER,
        position_side="short",
        liquidated_user="0x" + "99" * 20,
    )
    assert cells(format_entry("1-0", encode_entry(event)))[3:] == [
        "adl",
        "ETH",
        "short",
        "1.5",
        "3,000",
        "$4,500",
        USER,
        "0xabab…abab",
    ]


def test_a_json_line_is_the_id_plus_the_event_as_decode_gives_it_with_amounts_as_strings() -> None:
    fields = liquidation()
    line = format_entry(b"1732495402001-0", fields, as_json=True)
    assert "\n" not in line
    parsed = json.loads(line)
    expected = json.loads(msgspec.json.encode(decode_entry(fields)))
    assert parsed == {"id": "1732495402001-0", **expected}
    assert list(parsed)[:2] == ["id", "type"]
    assert (parsed["size"], parsed["price"], parsed["value_usd"]) == ("12.50", "97123.4", "1214042.5")


def test_an_unknown_type_is_shown_generically_and_as_its_raw_data() -> None:
    data = '{\n  "type": "funding", "coin": "SOL", "value_usd": "12.5", "rate": 1.10,\n  "user": "0xabc"\n}'
    fields = {b"type": b"funding", b"v": b"1", b"key": b"k", b"data": data.encode()}
    row = cells(format_entry("5-1", fields))
    assert row == ["-", "funding", "SOL", "-", "-", "-", "$12.50", "0xabc", "-"]
    line = format_entry("5-1", fields, as_json=True)
    assert line == '{"id":"5-1","type":"funding","coin":"SOL","value_usd":"12.5","rate":1.10,"user":"0xabc"}'
    newer = {b"type": b"liquidation", b"v": b"99", b"key": b"k", b"data": b"{}"}
    assert format_entry("5-2", newer, as_json=True) == '{"id":"5-2"}'


def test_control_characters_from_the_stream_never_reach_the_terminal() -> None:
    data = json.dumps({"type": "x", "coin": "BTC\x1b[2J", "user": "a\nb"}).encode()
    row = format_entry("1-0", {b"type": b"x", b"v": b"1", b"data": data})
    assert "\x1b" not in row and "\n" not in row and "BTC?[2J" in row


@pytest.mark.parametrize(
    "fields",
    [
        {b"type": b"liquidation", b"v": b"1", b"data": b"{broken"},
        {b"type": b"funding", b"v": b"1", b"data": b"[1, 2]"},
        {b"type": b"funding", b"v": b"1"},
        {b"v": b"1", b"data": b"{}"},
    ],
)
def test_a_malformed_entry_raises_for_the_caller_to_skip(fields: dict[bytes, bytes]) -> None:
    for as_json in (False, True):
        with pytest.raises(MalformedEntry):
            format_entry("1-0", fields, as_json=as_json)


# --- settings --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("start", "after"),
    [
        ("$", "$"),
        ("0", "0-0"),
        ("1732495402000-3", "1732495402000-2"),
        ("1732495402000-0", "1732495401999-" + str(2**64 - 1)),
        ("1732495402000", "1732495401999-" + str(2**64 - 1)),
        ("(1732495402000-3", "1732495402000-3"),
    ],
)
def test_from_reads_from_an_entry_on_inclusive_unless_asked_otherwise(start: str, after: str) -> None:
    assert read_after(start) == after


def test_settings_come_from_the_shared_variables_and_the_tails_own_flags() -> None:
    config = load_tail_config(["--json", "--count", "3", "--from", "0"], {"LIQ_STREAM": "s", "REDIS_URL": "redis://x"})
    assert config == TailConfig(redis_url="redis://x", stream="s", start="0", count=3, as_json=True)
    assert load_tail_config([], {}) == TailConfig()
    with pytest.raises(ConfigError, match=r"--from='yesterday': must be \$"):
        load_tail_config(["--from", "yesterday"], {})
    with pytest.raises(ConfigError, match=r"--count='0'"):
        load_tail_config(["--count", "0"], {})


def test_a_pipe_whose_reader_left_is_noticed() -> None:
    read_end, write_end = os.pipe()
    with os.fdopen(write_end, "w") as out:
        assert not reader_gone(out)
        os.close(read_end)
        assert reader_gone(out)
    assert not reader_gone(io.StringIO())


# --- against Redis ---------------------------------------------------------------------------------------------


async def test_it_reads_from_the_start_skips_malformed_entries_and_disturbs_no_group(
    redis_client: Redis, stream: str
) -> None:
    events = [make_event() for _ in range(3)]
    await redis_client.xadd(stream, encode_entry(events[0]))  # type: ignore[arg-type]
    await redis_client.xadd(stream, {"type": "liquidation", "v": "1", "data": "{broken"})
    for event in events[1:]:
        await redis_client.xadd(stream, encode_entry(event))  # type: ignore[arg-type]
    await redis_client.xgroup_create(stream, "alerter", id="0")
    out = io.StringIO()
    shown = await follow(
        redis_client, TailConfig(redis_url=REDIS_URL, stream=stream, start="0", count=3, as_json=True), out
    )
    assert shown == 3
    assert [json.loads(line)["tx_hash"] for line in out.getvalue().splitlines()] == [e.tx_hash for e in events]
    (group,) = await redis_client.xinfo_groups(stream)
    assert (group["pending"], group["last-delivered-id"], group["consumers"]) == (0, b"0-0", 0)


async def test_by_default_only_new_entries_are_shown(redis_client: Redis, stream: str) -> None:
    await redis_client.xadd(stream, encode_entry(make_event(coin="OLD")))  # type: ignore[arg-type]
    out = io.StringIO()
    task = asyncio.create_task(follow(redis_client, TailConfig(redis_url=REDIS_URL, stream=stream, count=1), out))
    await wait_until(lambda: out.getvalue().startswith("time"), message="the header, once the start is resolved")
    await redis_client.xadd(stream, encode_entry(make_event(coin="NEW")))  # type: ignore[arg-type]
    assert await asyncio.wait_for(task, 5) == 1
    _, row = out.getvalue().splitlines()
    assert cells(row)[4] == "NEW"


class ClosedPipe(io.StringIO):
    def write(self, text: str) -> int:
        raise BrokenPipeError(32, "Broken pipe")


async def test_a_broken_pipe_ends_it_cleanly(redis_client: Redis, stream: str) -> None:
    await redis_client.xadd(stream, encode_entry(make_event()))  # type: ignore[arg-type]
    assert await run_tail(TailConfig(redis_url=REDIS_URL, stream=stream, start="0"), out=ClosedPipe()) == 0


# --- the command -----------------------------------------------------------------------------------------------


def tail_env(stream: str) -> dict[str, str]:
    return {**os.environ, "REDIS_URL": REDIS_URL, "LIQ_STREAM": stream}


async def test_the_command_prints_json_lines_for_scripts(redis_client: Redis, stream: str) -> None:
    events = [make_event(value_usd=Decimal(1000 + i)) for i in range(3)]
    for event in events:
        await redis_client.xadd(stream, encode_entry(event))  # type: ignore[arg-type]
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "consumers.tail",
        "--from",
        "0",
        "--count",
        "2",
        "--json",
        cwd=ROOT,
        env=tail_env(stream),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 10)
    assert proc.returncode == 0, err.decode()
    assert [json.loads(line)["value_usd"] for line in out.decode().splitlines()] == ["1000", "1001"]


async def test_piping_into_head_exits_cleanly(redis_client: Redis, stream: str) -> None:
    for _ in range(3):
        await redis_client.xadd(stream, encode_entry(make_event()))  # type: ignore[arg-type]
    proc = await asyncio.create_subprocess_exec(
        "bash",
        "-c",
        f"set -o pipefail; {sys.executable} -m consumers.tail --json --from 0 | head -1",
        cwd=ROOT,
        env=tail_env(stream),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 10)
    assert proc.returncode == 0, err.decode()
    assert "Traceback" not in err.decode()
    assert len(out.decode().splitlines()) == 1


async def test_sigint_stops_a_live_tail_with_exit_0(stream: str) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "consumers.tail",
        cwd=ROOT,
        env=tail_env(stream),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None
    header = await asyncio.wait_for(proc.stdout.readline(), 10)  # following now
    assert header.startswith(b"time")
    proc.send_signal(signal.SIGINT)
    _, err = await asyncio.wait_for(proc.communicate(), 10)
    assert proc.returncode == 0, err.decode()
    assert "Traceback" not in err.decode()


def test_huge_amounts_show_and_unusable_ones_are_reported_not_raised() -> None:
    """``1e30`` and ``1e500000`` broke the tail's formatting; a time of ``2**63 - 1`` ms raised ValueError."""
    event = msgspec.json.decode(liquidation()["data"], type=LiquidationEvent)
    huge = format_entry(b"1-0", with_field(event, "value_usd", "1e30"))
    assert "$1.0e+30" in cells(huge)
    for value in UNUSABLE_AMOUNTS:
        with pytest.raises(MalformedEntry):
            format_entry(b"1-0", with_field(event, "size", value))
    for timestamp in UNUSABLE_TIMES:
        with pytest.raises(MalformedEntry):
            format_entry(b"1-0", with_field(event, "timestamp", timestamp))
    # A type this reader does not know is shown from its raw data, which nothing validated: still no raise.
    unknown = {**with_field(event, "size", "1e999999999"), "type": b"funding"}
    assert "1.000000e+999999999" in format_entry(b"1-0", unknown)
    newer = {**with_field(event, "timestamp", 2**63 - 1), "v": b"99"}
    assert format_entry(b"1-0", newer).startswith(f"{2**63 - 1} ms")
