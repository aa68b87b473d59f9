"""Sinks and delivery against a local HTTP server: retries with backoff, once per event, secrets never shown."""

from __future__ import annotations

import asyncio
import io
import logging

import aiohttp
import pytest
from redis.asyncio import Redis

from consumers.alerter.delivery import Delivery
from consumers.alerter.format import Message, format_alert
from consumers.alerter.sinks import DiscordSink, SlackSink, StdoutSink, TelegramSink, WebhookSink
from consumers.errors import AlertInFlight, AlertNotDelivered
from consumers.options import Secret
from consumers.testing import FakeWebhooks, make_event

TOKEN = "123456:SECRET-token"


class Sleeps:
    """An injected sleep that records the waits instead of waiting."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


def make_delivery(redis: Redis, stream: str, *, attempts: int = 5, sleep: Sleeps | None = None) -> Delivery:
    return Delivery(
        redis,
        prefix=f"{stream}:alerted",
        attempts=attempts,
        backoff_s=0.01,
        sent_ttl_s=3600,
        claim_ttl_s=5,
        wait_in_flight_s=0.3,
        sleep=asyncio.sleep if sleep is None else sleep,
    )


def telegram(session: aiohttp.ClientSession, hooks: FakeWebhooks) -> TelegramSink:
    return TelegramSink(session, Secret(TOKEN), "-100200", api_base=hooks.url, timeout_s=2)


MESSAGE = format_alert(make_event())


async def test_a_failing_sink_is_retried_with_backoff_and_sends_once(
    redis: Redis, stream: str, hooks: FakeWebhooks, session: aiohttp.ClientSession
) -> None:
    hooks.fail_next(2)
    sleeps = Sleeps()
    delivery = make_delivery(redis, stream, sleep=sleeps)
    sink = telegram(session, hooks)
    assert await delivery.send_once("k1", sink, MESSAGE) is True
    assert sleeps.waits == [0.01, 0.02]
    assert len(hooks.received) == 3
    [(path, body)] = hooks.accepted
    assert path == f"/bot{TOKEN}/sendMessage"
    assert body == {"chat_id": "-100200", "text": MESSAGE.text, "disable_web_page_preview": True}
    marker = delivery.marker("k1", sink)
    assert await redis.get(marker) == b"sent" and 3500 < await redis.ttl(marker) <= 3600
    assert await delivery.send_once("k1", sink, MESSAGE) is False, "sent once, never again"
    assert len(hooks.received) == 3


async def test_when_every_attempt_fails_the_claim_is_released_for_a_later_delivery(
    redis: Redis, stream: str, hooks: FakeWebhooks, session: aiohttp.ClientSession
) -> None:
    hooks.fail_next(3, status=503)
    delivery = make_delivery(redis, stream, attempts=3, sleep=Sleeps())
    sink = telegram(session, hooks)
    with pytest.raises(AlertNotDelivered, match="telegram: gave up after 3 attempt"):
        await delivery.send_once("k2", sink, MESSAGE)
    assert await redis.get(delivery.marker("k2", sink)) is None
    assert await delivery.send_once("k2", sink, MESSAGE) is True
    assert len(hooks.accepted) == 1


async def test_a_request_the_service_rejects_is_not_retried(
    redis: Redis, stream: str, hooks: FakeWebhooks, session: aiohttp.ClientSession
) -> None:
    hooks.fail_next(1, status=400, body={"ok": False, "description": "Bad Request: chat not found"})
    delivery = make_delivery(redis, stream, sleep=Sleeps())
    with pytest.raises(AlertNotDelivered, match=r"after 1 attempt.*HTTP 400.*chat not found"):
        await delivery.send_once("k3", telegram(session, hooks), MESSAGE)
    assert len(hooks.received) == 1


async def test_the_wait_a_rate_limited_service_asks_for_is_honoured(
    redis: Redis, stream: str, hooks: FakeWebhooks, session: aiohttp.ClientSession
) -> None:
    hooks.fail_next(1, status=429, body={"ok": False, "parameters": {"retry_after": 7}})
    hooks.fail_next(1, status=429, body={"message": "slow down"}, headers={"Retry-After": "2"})
    sleeps = Sleeps()
    delivery = make_delivery(redis, stream, sleep=sleeps)
    await delivery.send_once("k4", telegram(session, hooks), MESSAGE)
    assert sleeps.waits == [7.0, 2.0]


async def test_an_alert_another_delivery_is_sending_is_waited_for_not_repeated(
    redis: Redis, stream: str, hooks: FakeWebhooks, session: aiohttp.ClientSession
) -> None:
    delivery = make_delivery(redis, stream)
    sink = telegram(session, hooks)
    marker = delivery.marker("k5", sink)
    await redis.set(marker, b"sending:someone-else", ex=5)
    with pytest.raises(AlertInFlight, match="another delivery has been sending"):
        await delivery.send_once("k5", sink, MESSAGE)

    async def finish_elsewhere() -> None:
        await asyncio.sleep(0.1)
        await redis.set(marker, b"sent")

    other = asyncio.create_task(finish_elsewhere())
    assert await delivery.send_once("k5", sink, MESSAGE) is False
    await other
    assert hooks.received == []


async def test_secrets_never_reach_logs_or_errors(
    redis: Redis, stream: str, hooks: FakeWebhooks, session: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    discord_url = Secret(f"{hooks.url}/api/webhooks/1/SECRET-discord")
    hooks.fail_next(6)  # the failure bodies echo the request path, secrets included
    delivery = make_delivery(redis, stream, attempts=3, sleep=Sleeps())
    errors: list[str] = []
    for sink in (telegram(session, hooks), DiscordSink(session, discord_url, timeout_s=2)):
        with pytest.raises(AlertNotDelivered) as info:
            await delivery.send_once("k6", sink, MESSAGE)
        errors.append(str(info.value))
    closed = TelegramSink(session, Secret(TOKEN), "1", api_base="http://127.0.0.1:9", timeout_s=2)
    with pytest.raises(AlertNotDelivered) as info:
        await delivery.send_once("k7", closed, MESSAGE)
    errors.append(str(info.value))
    assert "HTTP 500" in errors[0] and "failing ***" in errors[0]
    for text in (*errors, caplog.text):
        assert "SECRET" not in text


async def test_each_sink_posts_its_own_shape(hooks: FakeWebhooks, session: aiohttp.ClientSession) -> None:
    message = Message(title="t", lines=("a", "b"), link="https://x/tx/1", payload={"kind": "liquidation", "n": 1})
    await WebhookSink(session, Secret(f"{hooks.url}/hook"), timeout_s=2).send(message)
    await DiscordSink(session, Secret(f"{hooks.url}/discord"), timeout_s=2).send(message)
    await SlackSink(session, Secret(f"{hooks.url}/slack"), timeout_s=2).send(message)
    assert hooks.accepted == [
        ("/hook", {"kind": "liquidation", "n": 1}),
        ("/discord", {"content": "t\na\nb\nhttps://x/tx/1"}),
        ("/slack", {"text": "t\na\nb\nhttps://x/tx/1"}),
    ]
    out = io.StringIO()
    await StdoutSink(out).send(message)
    assert out.getvalue() == "t | a | b | https://x/tx/1\n"
