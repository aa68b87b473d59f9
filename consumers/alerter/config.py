"""The alerter's one configuration object: the runner's settings plus thresholds, cooldown, sinks and secrets."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Literal, cast

from consumers.alerter.format import EXPLORER_TX_URL
from consumers.config import ConsumerConfig, consumer_config, runner_options
from plumbing.errors import ConfigError
from plumbing.options import (
    Option,
    Secret,
    csv,
    invoked_as,
    non_empty,
    non_negative_decimal,
    positive_float,
    positive_int,
    read_options,
    secret,
)

SinkName = Literal["stdout", "webhook", "telegram", "discord", "slack"]
SINK_NAMES: tuple[SinkName, ...] = ("stdout", "webhook", "telegram", "discord", "slack")
TELEGRAM_API_BASE = "https://api.telegram.org"


def coin_thresholds(value: str) -> dict[str, Decimal]:
    """``BTC=250000,ETH=150000`` as a mapping; coin names are kept as the exchange spells them."""
    thresholds: dict[str, Decimal] = {}
    for part in csv(value):
        coin, sep, amount = part.partition("=")
        if not sep or not coin.strip():
            raise ValueError(f"{part!r} is not COIN=AMOUNT (e.g. BTC=250000)")
        thresholds[coin.strip()] = non_negative_decimal(amount)
    return thresholds


def sink_names(value: str) -> tuple[SinkName, ...]:
    names = csv(value)
    if not names:
        raise ValueError(f"name at least one sink of {', '.join(SINK_NAMES)}")
    for name in names:
        if name not in SINK_NAMES:
            raise ValueError(f"{name!r} is not a sink; choose from {', '.join(SINK_NAMES)}")
    return cast(tuple[SinkName, ...], tuple(dict.fromkeys(names)))


def http_url(value: str) -> str:
    url = non_empty(value)
    if not url.startswith(("http://", "https://")):
        raise ValueError("must start with http:// or https://")
    return url


OPTIONS: tuple[Option, ...] = (
    *runner_options(default_group="alerter"),
    Option(
        "threshold_usd",
        "--threshold-usd",
        "ALERT_THRESHOLD_USD",
        non_negative_decimal,
        "100000",
        "Alert on liquidations worth at least this many USD.",
    ),
    Option(
        "coin_thresholds",
        "--coin-thresholds",
        "ALERT_COIN_THRESHOLDS",
        coin_thresholds,
        "",
        "Per-coin thresholds overriding the default, e.g. BTC=250000,ETH=150000.",
        default_help="none",
    ),
    Option(
        "cooldown_s",
        "--cooldown-s",
        "ALERT_COOLDOWN_S",
        positive_float,
        "60",
        "Cooldown window per coin, in seconds: past --burst alerts in it, the rest are summarised.",
    ),
    Option(
        "burst",
        "--burst",
        "ALERT_BURST",
        positive_int,
        "3",
        "Alerts per coin per cooldown window before the rest are held back for one summary line.",
    ),
    Option(
        "sinks",
        "--sinks",
        "ALERT_SINKS",
        sink_names,
        "stdout",
        "Where alerts go, comma-separated: stdout, webhook, telegram, discord, slack.",
    ),
    Option(
        "telegram_chat_id",
        "--telegram-chat-id",
        "TELEGRAM_CHAT_ID",
        non_empty,
        None,
        "Telegram chat to post to (with the telegram sink).",
    ),
    Option(
        "telegram_api_base",
        "--telegram-api-base",
        "TELEGRAM_API_BASE",
        http_url,
        TELEGRAM_API_BASE,
        "Telegram Bot API base URL (a local Bot API server, or a test double).",
    ),
    Option(
        "sink_attempts",
        "--sink-attempts",
        "ALERT_SINK_ATTEMPTS",
        positive_int,
        "5",
        "Attempts in a row before a sink is reported down; the alert then waits for it (see --sink-outage-s).",
    ),
    Option(
        "sink_outage_s",
        "--sink-outage-s",
        "ALERT_SINK_OUTAGE_S",
        positive_float,
        "3600",
        "Seconds an alert waits for a sink that is down (5xx, 429, timeouts) before its entry is left to the "
        "consumer's retries and dead letters.",
    ),
    Option(
        "sink_backoff_ms",
        "--sink-backoff-ms",
        "ALERT_SINK_BACKOFF_MS",
        positive_int,
        "500",
        "First wait between attempts, in ms; doubles per attempt (at most 30 s).",
    ),
    Option(
        "sink_timeout_s",
        "--sink-timeout-s",
        "ALERT_SINK_TIMEOUT_S",
        positive_float,
        "10",
        "Seconds one HTTP request to a sink may take.",
    ),
    Option(
        "sent_ttl_s",
        "--sent-ttl-s",
        "ALERT_SENT_TTL_S",
        positive_int,
        "604800",
        "Seconds an alert is remembered as sent (so a redelivery never repeats it); longer than any redelivery.",
    ),
    Option(
        "explorer_url",
        "--explorer-url",
        "ALERT_EXPLORER_URL",
        http_url,
        EXPLORER_TX_URL,
        "Explorer URL a transaction hash is appended to.",
    ),
    Option(
        "webhook_url",
        "--webhook-url",
        "ALERT_WEBHOOK_URL",
        secret,
        None,
        "URL the webhook sink POSTs JSON to.",
        secret=True,
    ),
    Option(
        "telegram_bot_token",
        "--telegram-bot-token",
        "TELEGRAM_BOT_TOKEN",
        secret,
        None,
        "Bot token for the telegram sink.",
        secret=True,
    ),
    Option(
        "discord_webhook_url",
        "--discord-webhook-url",
        "DISCORD_WEBHOOK_URL",
        secret,
        None,
        "Webhook URL for the discord sink.",
        secret=True,
    ),
    Option(
        "slack_webhook_url",
        "--slack-webhook-url",
        "SLACK_WEBHOOK_URL",
        secret,
        None,
        "Incoming-webhook URL for the slack sink.",
        secret=True,
    ),
)

_NEEDS: dict[SinkName, tuple[str, ...]] = {
    "webhook": ("webhook_url",),
    "telegram": ("telegram_bot_token", "telegram_chat_id"),
    "discord": ("discord_webhook_url",),
    "slack": ("slack_webhook_url",),
}


@dataclass(frozen=True)
class Thresholds:
    default: Decimal = Decimal(100_000)
    per_coin: Mapping[str, Decimal] = field(default_factory=dict)

    def for_coin(self, coin: str) -> Decimal:
        return self.per_coin.get(coin, self.default)


@dataclass(frozen=True, kw_only=True)
class AlerterConfig:
    """Secrets are :class:`~plumbing.options.Secret`: printing this object never shows them."""

    consumer: ConsumerConfig
    thresholds: Thresholds = field(default_factory=Thresholds)
    cooldown_s: float = 60.0
    burst: int = 3
    sinks: tuple[SinkName, ...] = ("stdout",)
    telegram_chat_id: str | None = None
    telegram_api_base: str = TELEGRAM_API_BASE
    sink_attempts: int = 5
    sink_outage_s: float = 3600.0
    sink_backoff_ms: int = 500
    sink_timeout_s: float = 10.0
    sent_ttl_s: int = 604_800
    explorer_url: str = EXPLORER_TX_URL
    webhook_url: Secret | None = None
    telegram_bot_token: Secret | None = None
    discord_webhook_url: Secret | None = None
    slack_webhook_url: Secret | None = None

    def __post_init__(self) -> None:
        by_name = {opt.name: opt for opt in OPTIONS}
        for sink in self.sinks:
            for name in _NEEDS.get(sink, ()):
                if getattr(self, name) is None:
                    raise ConfigError(f"the {sink} sink needs {by_name[name].env}, which is not set")

    @property
    def backoff_max_s(self) -> float:
        return 30.0

    @property
    def claim_ttl_s(self) -> int:
        """How long one attempt holds an alert's marker: one request's timeout and a margin, no more.

        A claim covers one attempt, not the retries, so a process killed mid-send delays that alert by seconds
        and never for longer than the consumer's own redeliveries take to reach ``max_deliveries``.
        """
        return math.ceil(self.sink_timeout_s) + 2


def load_alerter_config(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> AlerterConfig:
    """Flags over environment over defaults; raises :class:`ConfigError` naming the flag and variable."""
    values = read_options(
        invoked_as("consumers.alerter"),
        "Post large Hyperliquid liquidations from the Redis stream to people (stdout, webhook, Telegram, "
        "Discord, Slack), once per event, with a per-coin cooldown.",
        OPTIONS,
        argv,
        env,
    )
    return AlerterConfig(
        consumer=consumer_config(values),
        thresholds=Thresholds(values["threshold_usd"], values["coin_thresholds"]),
        cooldown_s=values["cooldown_s"],
        burst=values["burst"],
        sinks=values["sinks"],
        telegram_chat_id=values["telegram_chat_id"],
        telegram_api_base=values["telegram_api_base"],
        sink_attempts=values["sink_attempts"],
        sink_outage_s=values["sink_outage_s"],
        sink_backoff_ms=values["sink_backoff_ms"],
        sink_timeout_s=values["sink_timeout_s"],
        sent_ttl_s=values["sent_ttl_s"],
        explorer_url=values["explorer_url"],
        webhook_url=values["webhook_url"],
        telegram_bot_token=values["telegram_bot_token"],
        discord_webhook_url=values["discord_webhook_url"],
        slack_webhook_url=values["slack_webhook_url"],
    )
