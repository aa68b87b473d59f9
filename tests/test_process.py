"""The process runner every program shares: exit codes, one line per error, and the stop signals."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Iterator

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from plumbing.errors import ConfigError, ProcessError
from plumbing.process import EXIT_CONFIG, EXIT_FAILED, install_signal_handlers, run_process


@pytest.fixture
def restored_signals() -> Iterator[None]:
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    yield
    for sig, handler in saved.items():
        signal.signal(sig, handler)


def bad_setting() -> str:
    raise ConfigError("--thing / THING='x': must be a number")


def test_a_bad_setting_at_start_is_one_line_and_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    async def never(config: str) -> int:
        raise AssertionError("must not run")

    assert run_process(bad_setting, lambda c: "INFO", never, logger="test") == EXIT_CONFIG
    assert capsys.readouterr().err == "configuration error: --thing / THING='x': must be a number\n"


@pytest.mark.parametrize(
    ("error", "code", "line"),
    [
        (ConfigError("Redis may evict our keys: set maxmemory-policy noeviction"), EXIT_CONFIG, "may evict"),
        (ProcessError("cannot serve metrics on 127.0.0.1:9100"), EXIT_FAILED, "cannot serve metrics"),
        (RedisConnectionError("refused"), EXIT_FAILED, "Redis failed: refused (check REDIS_URL"),
    ],
)
def test_an_error_at_run_time_is_one_logged_line_with_its_exit_code(
    error: Exception, code: int, line: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A bad setting found only once running (Redis's eviction policy) is still a bad setting: exit 2."""

    async def fail(config: str) -> int:
        raise error

    assert run_process(lambda: "config", lambda c: "INFO", fail, logger="test") == code
    [record] = [r for r in caplog.records if r.name == "test"]
    assert record.levelname == "ERROR" and line in record.getMessage()


async def test_a_signal_calls_every_stop_and_after_removal_signals_are_ignored(restored_signals: None) -> None:
    """A second SIGTERM while the process exits must not turn a clean exit into a death by signal."""
    stopped: list[str] = []
    remove = install_signal_handlers(lambda: stopped.append("runner"), lambda: stopped.append("service"))
    os.kill(os.getpid(), signal.SIGTERM)
    await asyncio.sleep(0.05)
    assert stopped == ["runner", "service"]
    remove()
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_IGN
    assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    os.kill(os.getpid(), signal.SIGTERM)  # ignored: the test process lives on
