"""Sinks and delivery against a local HTTP server: retries with backoff, once per event, secrets never shown."""

from __future__ import annotations

import asyncio
import io
import logging
import time

import aiohttp
import pytest
from redis.asyncio import Redis

from consumers.alerter.delivery import Delivery, claim_value, left_by_previous_life
from consumers.alerter.format import Message, format_alert
from consumers.alerter.sinks import DiscordSink, SlackSink, StdoutSink, TelegramSink, WebhookSink
from consumers.errors import AlertInFlight, AlertNotDelivered, SinkError
from plumbing.options import Secret
from plumbing.stream_keys import stream_key
from tests.helpers import FakeWebhooks, make_event, wait_until

TOKEN = "123456:SECRET-token"


class Sleeps:
    """An injected sleep that records the waits instead of waiting, and the clock they advance."""

    def __init__(self) -> None:
        self.waits: list[float] = []
        self.now = 0.0

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.now += seconds

    def clock(self) -> float:
        return self.now


def make_delivery(
    redis: Redis,
    stream: str,
    *,
    attempts: int = 5,
    sleep: Sleeps | None = None,
    outage_max_s: float = 0.0,
    owner: str = "alerter-1",
) -> Delivery:
    return Delivery(
        redis,
        prefix=stream_key(stream, "alerted"),
        owner=owner,
        attempts=attempts,
        backoff_s=0.01,
        outage_max_s=outage_max_s,
        sent_ttl_s=3600,
        claim_ttl_s=5,
        sleep=sleep,
        clock=time.monotonic if sleep is None else sleep.clock,
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


async def test_an_alert_another_consumer_is_sending_is_left_for_later_at_once_not_repeated(
    redis: Redis, stream: str, hooks: FakeWebhooks, session: aiohttp.ClientSession
) -> None:
    delivery = make_delivery(redis, stream)
    sink = telegram(session, hooks)
    marker = delivery.marker("k5", sink)
    await redis.set(marker, claim_value("0" * 32, "alerter-2"), ex=5)
    started = time.monotonic()
    with pytest.raises(AlertInFlight, match="another consumer is sending"):
        await delivery.send_once("k5", sink, MESSAGE)
    assert time.monotonic() - started < 0.5, "no wait: the rest of the batch goes on"
    await redis.set(marker, b"sent")
    assert await delivery.send_once("k5", sink, MESSAGE) is False
    assert hooks.received == []


async def test_a_claim_left_by_a_dead_run_of_the_same_consumer_name_is_taken_over_at_once(
    redis: Redis, stream: str, hooks: FakeWebhooks, session: aiohttp.ClientSession
) -> None:
    """SIGKILLed mid-send and restarted under its name: the new process must not wait for its own old claim."""
    before = make_delivery(redis, stream)
    sink = telegram(session, hooks)
    marker = before.marker("k8", sink)
    await redis.set(marker, claim_value(before.token, before.owner), ex=60)
    after = make_delivery(redis, stream)
    assert after.token != before.token
    assert await after.send_once("k8", sink, MESSAGE) is True
    assert len(hooks.accepted) == 1 and await redis.get(marker) == b"sent"


async def test_our_own_claim_left_by_an_attempt_redis_went_away_under_is_taken_over(
    redis: Redis, stream: str, hooks: FakeWebhooks, session: aiohttp.ClientSession
) -> None:
    """Redis killed mid-attempt and restarted with its data: the claim of ours survives, neither released nor
    marked sent. Taking it for another consumer's spent every delivery of the entry and dead-lettered it."""
    delivery = make_delivery(redis, stream)
    sink = telegram(session, hooks)
    marker = delivery.marker("k9", sink)
    await redis.set(marker, claim_value(delivery.token, delivery.owner), ex=60)
    assert await delivery.send_once("k9", sink, MESSAGE) is True
    assert len(hooks.accepted) == 1 and await redis.get(marker) == b"sent"


def test_only_a_claim_of_our_name_by_another_process_counts_as_a_previous_life() -> None:
    mine = claim_value("a" * 32, "host:1")
    assert left_by_previous_life(mine, "b" * 32, "host:1")
    assert not left_by_previous_life(mine, "a" * 32, "host:1"), "our own claim"
    assert not left_by_previous_life(mine, "b" * 32, "host:2"), "another consumer's"
    assert not left_by_previous_life(b"sent", "b" * 32, "host:1")


async def test_an_outage_longer_than_the_attempts_is_waited_out_not_given_up(
    redis: Redis, stream: str, hooks: FakeWebhooks, session: aiohttp.ClientSession
) -> None:
    """Sixteen answers of 503 with five attempts: the alert waits for the sink (visible while it waits) and goes."""
    hooks.fail_next(16, status=503)
    sleeps = Sleeps()
    delivery = make_delivery(redis, stream, sleep=sleeps, outage_max_s=3600)
    waiting: list[int] = []

    async def watch(seconds: float) -> None:
        waiting.append(len(delivery.waiting))
        await sleeps(seconds)

    delivery._sleep = watch
    assert await delivery.send_once("k9", telegram(session, hooks), MESSAGE) is True
    assert len(hooks.accepted) == 1 and len(hooks.received) == 17
    assert max(sleeps.waits) == 30.0, "the waits double up to the cap"
    assert waiting[:4] == [0, 0, 0, 0] and waiting[-1] == 1, "reported waiting once the attempts ran out"
    assert delivery.waiting == {}


async def test_an_outage_longer_than_the_limit_gives_up_and_a_stop_ends_the_wait(
    redis: Redis, stream: str, hooks: FakeWebhooks, session: aiohttp.ClientSession
) -> None:
    hooks.fail_next(1000, status=500)
    sleeps = Sleeps()
    delivery = make_delivery(redis, stream, attempts=2, sleep=sleeps, outage_max_s=100)
    with pytest.raises(AlertNotDelivered, match=r"down for 1\d\d s"):
        await delivery.send_once("k10", telegram(session, hooks), MESSAGE)
    assert 100 <= sleeps.now < 140
    live = make_delivery(redis, stream, attempts=1, outage_max_s=3600)
    sending = asyncio.create_task(live.send_once("k11", telegram(session, hooks), MESSAGE))
    await wait_until(lambda: bool(live.waiting), message="the alert waiting for the sink")
    live.stop()
    with pytest.raises(AlertNotDelivered, match="stopping"):
        await asyncio.wait_for(sending, 2)


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


@pytest.mark.parametrize("status", [302, 307, 308])
async def test_a_redirect_is_not_followed_nor_taken_for_success(
    hooks: FakeWebhooks, session: aiohttp.ClientSession, status: int
) -> None:
    """A 307 would re-post the alert to another origin; a 302 would become a GET that "succeeds" without it."""
    async with FakeWebhooks() as elsewhere:
        hooks.fail_next(1, status=status, headers={"Location": f"{elsewhere.url}/stolen"})
        sink = WebhookSink(session, Secret(f"{hooks.url}/hook/SECRET-path-token"), timeout_s=2)
        with pytest.raises(SinkError, match=rf"HTTP {status} redirecting to {elsewhere.url}/stolen") as info:
            await sink.send(MESSAGE)
        assert not info.value.permanent, "the alert is fine; the sink's URL is not"
        assert elsewhere.received == [] and hooks.accepted == []
