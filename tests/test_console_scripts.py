"""Every program has a console script, each usage line names the program the way it was started, and every
consumer's ``--help`` reads well in an ordinary terminal."""

from __future__ import annotations

import importlib
import re
import subprocess
import sys
import tomllib
from collections.abc import Callable
from pathlib import Path

import pytest

from consumers.alerter.config import load_alerter_config
from consumers.stats.config import load_stats_config
from consumers.tail.config import load_tail_config
from plumbing.options import invoked_as

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS: dict[str, str] = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
BIN = Path(sys.executable).parent
PROGRAMS = {
    "hl-liquidation-producer": "producer",
    "hl-liquidation-alerter": "consumers.alerter",
    "hl-liquidation-stats": "consumers.stats",
    "hl-liquidation-tail": "consumers.tail",
}
CONSUMER_HELP: dict[str, Callable[[list[str]], object]] = {
    "alerter": load_alerter_config,
    "stats": load_stats_config,
    "tail": load_tail_config,
}


def test_every_program_has_a_console_script_that_resolves() -> None:
    assert set(SCRIPTS) == {*PROGRAMS, "hl-liquidation-demo"}
    for target in SCRIPTS.values():
        module, _, function = target.partition(":")
        assert callable(getattr(importlib.import_module(module), function)), target


def test_the_usage_name_is_the_script_or_python_m_the_module() -> None:
    assert invoked_as("consumers.tail", "/venv/bin/hl-liquidation-tail") == "hl-liquidation-tail"
    assert invoked_as("consumers.tail", "/src/consumers/tail/__main__.py") == "python -m consumers.tail"
    assert invoked_as("producer", "-c") == "python -m producer"


def usage(command: list[str]) -> str:
    done = subprocess.run([*command, "--help"], capture_output=True, text=True, timeout=30, check=True)
    return done.stdout.splitlines()[0]


@pytest.mark.parametrize(("script", "module"), PROGRAMS.items())
def test_an_installed_script_and_python_m_each_show_how_they_were_started(script: str, module: str) -> None:
    if not (BIN / script).exists():
        pytest.fail(f"{script} is not installed next to {sys.executable}: pip install -e . installs it")
    assert usage([str(BIN / script)]).startswith(f"usage: {script} [-h]")
    assert usage([sys.executable, "-m", module]).startswith(f"usage: python -m {module} [-h]")


@pytest.mark.parametrize("name", CONSUMER_HELP)
@pytest.mark.parametrize("columns", [80, 100])
def test_every_consumer_help_fits_the_terminal_and_closes_its_parentheses(
    name: str, columns: int, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("COLUMNS", str(columns))
    with pytest.raises(SystemExit):
        CONSUMER_HELP[name](["--help"])
    text = capsys.readouterr().out
    too_long = [line for line in text.splitlines() if len(line) > columns]
    assert not too_long, f"{len(too_long)} lines wider than {columns} columns, first: {too_long[0]!r}"
    prose = re.sub(r"'[^'\s]*'", "", " ".join(text.split()))  # a quoted literal such as '(ID' is not prose
    depth = 0
    for char in prose:
        depth += {"(": 1, ")": -1}.get(char, 0)
        assert depth >= 0, "a parenthesis closes that never opened"
    assert depth == 0, "a parenthesis opens that never closes"


@pytest.mark.parametrize("argv0", ["/usr/bin/hl-liquidation-alerter", "/venv/lib/consumers/alerter/__main__.py"])
def test_the_usage_fits_80_columns_whether_started_as_a_script_or_with_python_m(
    argv0: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """``python -m consumers.alerter`` is a long program name: argparse indents the usage under it and cannot break
    ``[--redis-sentinel-master REDIS_SENTINEL_MASTER]``, one column too wide; the options go under ``usage:``."""
    monkeypatch.setenv("COLUMNS", "80")
    monkeypatch.setattr(sys, "argv", [argv0])
    with pytest.raises(SystemExit):
        load_alerter_config(["--help"])
    usage = capsys.readouterr().out.split("\n\n")[0].splitlines()
    assert usage[0].startswith("usage: ") and max(len(line) for line in usage) <= 80
    assert "[--redis-sentinel-master REDIS_SENTINEL_MASTER]" in " ".join(" ".join(usage).split())
