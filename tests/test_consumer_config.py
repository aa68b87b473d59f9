"""Configuration: flag over environment over default, one object per process, clear errors, secrets kept secret."""

from __future__ import annotations

import os
import socket
from decimal import Decimal

import pytest

from consumers import RunnerSettings, load_consumer_config
from consumers.alerter.config import OPTIONS as ALERTER_OPTIONS
from consumers.alerter.config import load_alerter_config
from consumers.stats.config import OPTIONS as STATS_OPTIONS
from consumers.stats.config import load_stats_config
from plumbing.errors import ConfigError
from plumbing.options import Secret, redact_url


def test_defaults() -> None:
    config = load_alerter_config([], {})
    c = config.consumer
    assert (c.redis_url, c.stream, c.group) == ("redis://localhost:6379/0", "hyperliquid:liquidations", "alerter")
    assert c.consumer == f"{socket.gethostname()}-{os.getpid()}"
    assert c.settings == RunnerSettings(
        block_ms=5000, count=100, claim_idle_ms=60_000, max_deliveries=5, group_start="$", retry_delay_ms=1000
    )
    assert c.settings.dead_letter_for(c.stream) == "{hyperliquid:liquidations}:dead"
    assert config.thresholds.default == Decimal(100_000) and config.sinks == ("stdout",)
    assert load_stats_config([], {}).consumer.group == "stats"


def test_a_flag_wins_over_the_environment_which_wins_over_the_default() -> None:
    env = {
        "LIQ_STREAM": "env:stream",
        "LIQ_GROUP": "env-group",
        "LIQ_BLOCK_MS": "2000",
        "LIQ_GROUP_START": "0",
        "STATS_INTERVAL_S": "5",
    }
    config = load_stats_config(["--group", "flag-group", "--count", "500"], env)
    c = config.consumer
    assert (c.stream, c.group, c.settings.block_ms, c.settings.count, c.settings.group_start) == (
        "env:stream",
        "flag-group",
        2000,
        500,
        "0",
    )
    assert config.interval_s == 5 and config.key == f"{{env:stream}}:stats:flag-group:{c.consumer}"
    assert config.ttl_s == 60


def test_coin_thresholds() -> None:
    config = load_alerter_config([], {"ALERT_COIN_THRESHOLDS": "BTC=250000, ETH=150_000,xyz:CRWV=5000"})
    assert config.thresholds.for_coin("BTC") == Decimal(250_000)
    assert config.thresholds.for_coin("ETH") == Decimal(150_000)
    assert config.thresholds.for_coin("xyz:CRWV") == Decimal(5_000)
    assert config.thresholds.for_coin("SOL") == Decimal(100_000)
    with pytest.raises(ConfigError, match=r"--coin-thresholds / ALERT_COIN_THRESHOLDS='BTC': 'BTC' is not COIN=AMOUNT"):
        load_alerter_config([], {"ALERT_COIN_THRESHOLDS": "BTC"})


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"LIQ_BLOCK_MS": "soon"}, r"--block-ms / LIQ_BLOCK_MS='soon'"),
        ({"LIQ_MAX_DELIVERIES": "0"}, r"LIQ_MAX_DELIVERIES='0': must be a whole number greater than 0"),
        ({"LIQ_GROUP_START": "now"}, r"must be 0 .* or \$"),
        ({"ALERT_SINKS": "stdout,pager"}, r"'pager' is not a sink"),
        ({"ALERT_SINKS": "telegram", "TELEGRAM_CHAT_ID": "42"}, r"the telegram sink needs TELEGRAM_BOT_TOKEN"),
        ({"ALERT_SINKS": "slack"}, r"the slack sink needs SLACK_WEBHOOK_URL"),
        ({"ALERT_THRESHOLD_USD": "-1"}, r"must be an amount, 0 or more"),
        ({"TELEGRAM_API_BASE": "ftp://x"}, r"must start with http:// or https://"),
    ],
)
def test_a_bad_setting_is_named(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_alerter_config([], env)


def test_secrets_come_from_the_environment_only_and_never_print() -> None:
    env = {
        "ALERT_SINKS": "telegram,discord,slack,webhook",
        "TELEGRAM_BOT_TOKEN": "123456:SECRET-token",
        "TELEGRAM_CHAT_ID": "-100200300",
        "DISCORD_WEBHOOK_URL": "https://discord.example/api/webhooks/1/SECRET-discord",
        "SLACK_WEBHOOK_URL": "https://hooks.slack.example/services/SECRET-slack",
        "ALERT_WEBHOOK_URL": "https://hooks.example/SECRET-hook",
    }
    config = load_alerter_config([], env)
    assert config.telegram_bot_token == Secret("123456:SECRET-token")
    assert "SECRET" not in repr(config) and "SECRET" not in str(config)
    with pytest.raises(SystemExit):
        load_alerter_config(["--telegram-bot-token", "x"], env)
    with pytest.raises(ConfigError, match=r"^ALERT_WEBHOOK_URL=\*\*\*: must not be empty$"):
        load_alerter_config([], dict(env, ALERT_WEBHOOK_URL=" "))


def test_redis_passwords_are_redacted_in_log_lines() -> None:
    assert redact_url("redis://user:hunter2@cache:6380/1") == "redis://user:***@cache:6380/1"
    assert redact_url("redis://:hunter2@cache/0") == "redis://:***@cache/0"
    assert redact_url("redis://cache:6379/0") == "redis://cache:6379/0"
    config = load_alerter_config([], {"REDIS_URL": "redis://:hunter2@cache/0"})
    assert "hunter2" not in config.consumer.describe()


def test_help_explains_every_option_and_its_variable(capsys: pytest.CaptureFixture[str]) -> None:
    for load, options in ((load_alerter_config, ALERTER_OPTIONS), (load_stats_config, STATS_OPTIONS)):
        with pytest.raises(SystemExit) as exit_info:
            load(["--help"], {})
        assert exit_info.value.code == 0
        text = " ".join(capsys.readouterr().out.split())
        for opt in options:
            assert opt.env in text
            if not opt.secret:
                assert opt.flag in text
                assert f"default: {opt.default_text()}" in text


def test_runner_settings_are_validated() -> None:
    with pytest.raises(ConfigError, match="block_ms"):
        RunnerSettings(block_ms=0)
    with pytest.raises(ConfigError, match="group_start"):
        RunnerSettings(group_start="now")  # type: ignore[arg-type]
    assert RunnerSettings(claim_idle_ms=1000).claim_every_ms == 500
    assert RunnerSettings(claim_idle_ms=10).claim_every_ms == 50


def test_a_downstream_service_loads_the_shared_settings() -> None:
    config = load_consumer_config("my-service", ["--consumer", "web-1"], {"LIQ_CLAIM_IDLE_MS": "30000"})
    assert (config.group, config.consumer, config.settings.claim_idle_ms) == ("my-service", "web-1", 30_000)
