"""The README is part of the product: its commands, configuration table and contract must stay true."""

from __future__ import annotations

import re
from pathlib import Path

from producer.config import OPTIONS, PROTOCOL_VAULTS
from schemas import LiquidationEvent

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
INSTALL_AND_RUN = "pip install -e . && python -m producer"
INSTALL_AND_TEST = "pip install -e '.[test]' && pytest"


def test_the_two_setup_commands_are_stated_and_ci_runs_the_test_one() -> None:
    setup = README.split("## Set-up", 1)[1].split("\n## ", 1)[0]
    commands = re.findall(r"```sh\n(.*?)\n```", setup, re.S)
    assert commands == [INSTALL_AND_RUN, INSTALL_AND_TEST]
    ci = (ROOT / ".ci" / "run").read_text()
    assert INSTALL_AND_TEST in ci.splitlines()


def test_the_configuration_table_lists_every_setting_with_its_default() -> None:
    rows = {m.group(1): m for m in re.finditer(r"^\| `([A-Z_]+)` \| `(--[a-z-]+)` \| (.*?) \|", README, re.M)}
    assert set(rows) == {opt.env for opt in OPTIONS}
    for opt in OPTIONS:
        row = rows[opt.env]
        assert row.group(2) == opt.flag
        if opt.env != "HL_WATCHLIST":
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
