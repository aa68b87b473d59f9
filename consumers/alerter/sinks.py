"""Where alerts go. Each sink sends one :class:`Message` once, or raises :class:`SinkError`; retries are not its job.

A sink's URL or token is a secret: error messages are built from the status and a scrubbed excerpt of the answer,
never from the request, and the original exception is not chained (its text may contain the URL).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import Any, Protocol, TextIO
from urllib.parse import urlsplit

import aiohttp

from consumers.alerter.config import AlerterConfig, SinkName
from consumers.alerter.format import Message
from consumers.errors import SinkError
from plumbing.options import Secret
from plumbing.text import printable

_EXCERPT = 200


class Sink(Protocol):
    name: str

    async def send(self, message: Message) -> None:
        """Deliver the message or raise :class:`SinkError` (``permanent`` if retrying cannot help)."""


class StdoutSink:
    """One line per message: the default, and what ``docker logs`` shows."""

    name = "stdout"

    def __init__(self, out: TextIO | None = None) -> None:
        self._out = out

    async def send(self, message: Message) -> None:
        out = self._out or sys.stdout
        out.write(message.one_line + "\n")
        out.flush()


def secret_parts(url: str) -> list[str]:
    """What of a secret URL could be echoed back in an error: the URL, its path and query, its token-like segments.

    Webhook URLs carry their token in the path (Discord ``/api/webhooks/<id>/<token>``, Slack
    ``/services/<ids>/<token>``, Telegram ``/bot<token>/...``), and services quote the path in their errors.
    """
    parts = urlsplit(url)
    found = [url, parts.path, parts.query, *(seg for seg in parts.path.split("/") if len(seg) >= 8)]
    return sorted({p for p in found if p and p != "/"}, key=len, reverse=True)


def scrub(text: str, secrets: Sequence[str]) -> str:
    """``text`` with every secret replaced; longest first, so a URL goes before the token inside it."""
    for value in sorted(secrets, key=len, reverse=True):
        if value:
            text = text.replace(value, "***")
    return text


class HttpSink:
    """POST a JSON body; any 2xx is success. Subclasses say where to and what body."""

    name = "webhook"

    def __init__(self, session: aiohttp.ClientSession, url: Secret, *, timeout_s: float) -> None:
        self._session = session
        self._url = url
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._secrets = secret_parts(url.reveal())

    def body(self, message: Message) -> dict[str, Any]:
        return message.payload or {"text": message.text}

    async def send(self, message: Message) -> None:
        """Redirects are not followed: a 307 would re-post the alert (and any token in it) to whatever origin the
        answer names, and a 302 would turn into a GET without the alert that still looks like success."""
        url = self._url.reveal()
        try:
            async with self._session.post(
                url, json=self.body(message), timeout=self._timeout, allow_redirects=False
            ) as resp:
                if 200 <= resp.status < 300:
                    await resp.read()
                    return
                raw = await resp.read()
                detail = scrub(raw[:_EXCERPT].decode(errors="replace"), self._secrets)
                retry_after = _retry_after(resp.headers.get("Retry-After"), raw)
                location = resp.headers.get("Location")
        except aiohttp.ClientError as exc:
            raise SinkError(self.name, scrub(f"{type(exc).__name__}: {exc}", self._secrets)) from None
        except TimeoutError:
            raise SinkError(self.name, f"no answer within {self._timeout.total:g} s") from None
        if 300 <= resp.status < 400:
            raise SinkError(self.name, redirect_detail(resp.status, location, self._secrets))
        permanent = 400 <= resp.status < 500 and resp.status not in (408, 429)
        raise SinkError(
            self.name, f"answered HTTP {resp.status}: {detail.strip()}", retry_after=retry_after, permanent=permanent
        )


class WebhookSink(HttpSink):
    """The generic webhook: the message's payload (text, link, and the event as JSON)."""

    name = "webhook"


class TelegramSink(HttpSink):
    """Bot API ``sendMessage``; the token is part of the URL path, hence a secret."""

    name = "telegram"

    def __init__(
        self, session: aiohttp.ClientSession, token: Secret, chat_id: str, *, api_base: str, timeout_s: float
    ) -> None:
        url = Secret(f"{api_base.rstrip('/')}/bot{token.reveal()}/sendMessage")
        super().__init__(session, url, timeout_s=timeout_s)
        self._secrets.append(token.reveal())
        self._chat_id = chat_id

    def body(self, message: Message) -> dict[str, Any]:
        return {"chat_id": self._chat_id, "text": message.text[:4096], "disable_web_page_preview": True}


class DiscordSink(HttpSink):
    name = "discord"

    def body(self, message: Message) -> dict[str, Any]:
        return {"content": message.text[:2000]}


class SlackSink(HttpSink):
    name = "slack"

    def body(self, message: Message) -> dict[str, Any]:
        return {"text": message.text}


def redirect_detail(status: int, location: str | None, secrets: Sequence[str]) -> str:
    """What to tell the operator about a redirect: where it points (scrubbed, it may echo the token) and the fix.

    Not permanent: the alert is fine, the sink's URL is not; the entry waits until the URL is corrected.
    """
    where = printable(scrub(location, secrets), limit=200) if location else "nowhere (no Location header)"
    return (
        f"answered HTTP {status} redirecting to {where}; redirects are not followed: "
        "set the sink's URL to where it redirects, if that is the service's own address"
    )


def _retry_after(header: str | None, body: bytes) -> float | None:
    """Seconds the service asked us to wait: the Retry-After header, or Telegram/Discord's JSON ``retry_after``."""
    if header:
        try:
            return max(0.0, float(header))
        except ValueError:
            pass
    try:
        data = json.loads(body)
    except ValueError:
        return None
    if isinstance(data, dict):
        value = data.get("retry_after", (data.get("parameters") or {}).get("retry_after"))
        if isinstance(value, int | float):
            return max(0.0, float(value))
    return None


def build_sinks(config: AlerterConfig, session: aiohttp.ClientSession, out: TextIO | None = None) -> list[Sink]:
    """The configured sinks, in the configured order (the config checked that their secrets are set)."""
    timeout = config.sink_timeout_s
    sinks: list[Sink] = []
    for name in config.sinks:
        sinks.append(_build(name, config, session, out, timeout))
    return sinks


def _build(
    name: SinkName, config: AlerterConfig, session: aiohttp.ClientSession, out: TextIO | None, timeout: float
) -> Sink:
    if name == "stdout":
        return StdoutSink(out)
    if name == "webhook":
        assert config.webhook_url is not None
        return WebhookSink(session, config.webhook_url, timeout_s=timeout)
    if name == "telegram":
        assert config.telegram_bot_token is not None and config.telegram_chat_id is not None
        return TelegramSink(
            session,
            config.telegram_bot_token,
            config.telegram_chat_id,
            api_base=config.telegram_api_base,
            timeout_s=timeout,
        )
    if name == "discord":
        assert config.discord_webhook_url is not None
        return DiscordSink(session, config.discord_webhook_url, timeout_s=timeout)
    assert config.slack_webhook_url is not None
    return SlackSink(session, config.slack_webhook_url, timeout_s=timeout)
