"""``python -m consumers.alerter``: large liquidations, posted once each, with a per-coin cooldown.

Modules: ``config`` (settings), ``format`` (what an alert says), ``cooldown`` (rate limit and summaries),
``sinks`` (stdout, webhook, Telegram, Discord, Slack), ``delivery`` (once per event, retries), ``service``
(the handler), ``cli`` (the process).
"""

from consumers.alerter.config import AlerterConfig, Thresholds, load_alerter_config
from consumers.alerter.cooldown import Cooldown, HeldBack
from consumers.alerter.delivery import Delivery
from consumers.alerter.format import Message, format_alert, format_summary
from consumers.alerter.service import Alerter, AlerterCounters
from consumers.alerter.sinks import DiscordSink, Sink, SlackSink, StdoutSink, TelegramSink, WebhookSink, build_sinks

__all__ = [
    "Alerter",
    "AlerterConfig",
    "AlerterCounters",
    "Cooldown",
    "Delivery",
    "DiscordSink",
    "HeldBack",
    "Message",
    "Sink",
    "SlackSink",
    "StdoutSink",
    "TelegramSink",
    "Thresholds",
    "WebhookSink",
    "build_sinks",
    "format_alert",
    "format_summary",
    "load_alerter_config",
]
