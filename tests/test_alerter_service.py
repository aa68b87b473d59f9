"""The alerter's handler, alone and behind the runner: thresholds, cooldown, once per event across redelivery."""

from __future__ import annotations

import asyncio
import io
import logging
import time
from collections.abc import Callable
from decimal import Decimal

import aiohttp
import pytest
from redis.asyncio import Redis

from consumers import Runner, RunnerSettings
from consumers.alerter import Alerter, Cooldown, Delivery, StdoutSink, TelegramSink, Thresholds, WebhookSink
from consumers.alerter.held import HeldStore
from consumers.alerter.sinks import Sink
from consumers.errors import AlertNotDelivered
from plumbing.options import Secret
from plumbing.stream_keys import stream_key
from schemas import AdlEvent, Event, encode_entry
from tests.faults.invariants import raw_entries
from tests.helpers import FakeWebhooks, ManualClock, make_event, wait_until

TOKEN = "987654:SECRET-bot-token"
RUNNER = RunnerSettings(block_ms=100, count=10, claim_idle_ms=5_000, retry_delay_ms=50, group_start="0")


def make_alerter(
    redis: Redis,
    stream: str,
    sinks: list[Sink],
    *,
    clock: Callable[[], float] | None = None,
    burst: int = 100,
    thresholds: Thresholds | None = None,
    attempts: int = 3,
) -> Alerter:
    delivery = Delivery(
        redis, prefix=stream_key(stream, "alerted"), attempts=attempts, backoff_s=0.01, outage_max_s=0, claim_ttl_s=5
    )
    return Alerter(
        sinks=sinks,
        delivery=delivery,
        thresholds=thresholds or Thresholds(),
        cooldown=Cooldown(60, burst),
        clock=time.time if clock is None else clock,
    )


def big(**overrides: object) -> Event:
    return make_event(value_usd=Decimal(250_000), **overrides)


async def test_behind_the_runner_a_failing_webhook_is_retried_and_no_event_alerts_twice(
    redis: Redis, stream: str, hooks: FakeWebhooks, session: aiohttp.ClientSession
) -> None:
    events = [big(), make_event(value_usd=Decimal(5_000)), big(), big(), make_event(value_usd=Decimal(99_999)), big()]
    for event in events:
        await redis.xadd(stream, encode_entry(event))  # type: ignore[arg-type]
    hooks.fail_next(4)  # two attempts each for the first two big events: they stay pending and come back
    alerter = make_alerter(redis, stream, [WebhookSink(session, Secret(f"{hooks.url}/hook"), timeout_s=2)], attempts=2)
    crashed: list[str] = []

    async def crash_after_sending_once(event: Event) -> None:
        """The third big event is sent, then the consumer "dies" before its ack: it is redelivered."""
        await alerter.handle(event)
        if event.key == events[3].key and not crashed:
            crashed.append(event.key)
            raise RuntimeError("died between sending and acknowledging")

    runner = Runner(
        redis, stream=stream, group="alerter", consumer="a1", handler=crash_after_sending_once, settings=RUNNER
    )
    task = asyncio.create_task(runner.run())
    await wait_until(lambda: runner.counters.processed == 6, message="every entry handled")
    runner.stop()
    await task
    sent = [body["event"]["tx_hash"] for _, body in hooks.accepted]
    assert sorted(sent) == sorted(e.tx_hash for e in events if e.value_usd >= 100_000)
    assert len(hooks.received) == 4 + 4
    assert alerter.counters.already_sent == 1 and alerter.counters.alerted == 4
    assert runner.counters.retried == 3
    assert (await redis.xpending(stream, "alerter"))["pending"] == 0
    for event in events:  # any later redelivery is a no-op too
        await alerter.handle(event)
    assert len(hooks.accepted) == 4


async def test_thresholds_per_coin_and_other_event_types(redis: Redis, stream: str) -> None:
    out = io.StringIO()
    thresholds = Thresholds(Decimal(100_000), {"BTC": Decimal(250_000)})
    alerter = make_alerter(redis, stream, [StdoutSink(out)], thresholds=thresholds)
    cases = {
        "btc-below": make_event(coin="BTC", value_usd=Decimal("249999.99")),
        "btc-at": make_event(coin="BTC", value_usd=Decimal(250_000)),
        "eth-above": make_event(coin="ETH", value_usd=Decimal(120_000)),
        "sol-below": make_event(coin="SOL", value_usd=Decimal("99999.99")),
    }
    for event in cases.values():
        await alerter.handle(event)
    await alerter.handle(
        AdlEvent(
            tx_hash="0x" + "9" * 64,
            coin="BTC",
            price=Decimal(1),
            size=Decimal(1),
            value_usd=Decimal(10**9),
            timestamp=0,
            deleveraged_user="0x" + "1" * 40,
            position_side="short",
            liquidated_user="0x" + "2" * 40,
        )
    )
    lines = out.getvalue().splitlines()
    assert [line.split(":")[0] for line in lines] == ["BTC long liquidated", "ETH long liquidated"]
    assert cases["btc-at"].tx_hash in lines[0] and cases["eth-above"].tx_hash in lines[1]
    assert (alerter.counters.below_threshold, alerter.counters.other_types) == (2, 1)


async def test_a_cascade_is_held_back_by_the_cooldown_and_summarised(redis: Redis, stream: str) -> None:
    out, clock = io.StringIO(), ManualClock()
    alerter = make_alerter(redis, stream, [StdoutSink(out)], clock=clock, burst=2)
    for second in range(10):
        clock.now = second
        await alerter.handle(big(coin="BTC"))
    await alerter.handle(big(coin="ETH"))
    clock.now = 59
    await alerter.send_due_summaries()
    assert len(out.getvalue().splitlines()) == 3
    clock.now = 62
    await alerter.send_due_summaries()
    lines = out.getvalue().splitlines()
    assert len(lines) == 4
    assert lines[-1] == "… and 8 more BTC liquidations worth $2.0M held back in the last 60s (largest $250.0K)"
    assert (alerter.counters.alerted, alerter.counters.held_back, alerter.counters.summaries) == (3, 8, 1)


async def test_a_sink_that_succeeded_is_not_repeated_when_another_is_retried(
    redis: Redis, stream: str, hooks: FakeWebhooks, session: aiohttp.ClientSession
) -> None:
    webhook = WebhookSink(session, Secret(f"{hooks.url}/hook"), timeout_s=2)
    tg = TelegramSink(session, Secret(TOKEN), "42", api_base=f"{hooks.url}/tg", timeout_s=2)
    alerter = make_alerter(redis, stream, [webhook, tg], attempts=1)
    event = big()
    hooks.fail_next(1)  # whichever sink posts first fails; the other succeeds
    with pytest.raises(AlertNotDelivered, match="sinks that succeeded will not repeat it"):
        await alerter.handle(event)
    await alerter.handle(event)
    await alerter.handle(event)
    paths = sorted(path.split("/")[1] for path, _ in hooks.accepted)
    assert paths == ["hook", "tg"]


async def test_secrets_stay_out_of_the_logs_all_the_way_to_the_dead_letter(
    redis: Redis, stream: str, hooks: FakeWebhooks, session: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    hooks.fail_next(100)
    tg = TelegramSink(session, Secret(TOKEN), "42", api_base=hooks.url, timeout_s=2)
    alerter = make_alerter(redis, stream, [tg], attempts=2)
    await redis.xadd(stream, encode_entry(big()))  # type: ignore[arg-type]
    settings = RunnerSettings(block_ms=100, claim_idle_ms=5_000, retry_delay_ms=20, max_deliveries=2, group_start="0")
    runner = Runner(redis, stream=stream, group="alerter", consumer="a1", handler=alerter.handle, settings=settings)
    task = asyncio.create_task(runner.run())
    await wait_until(lambda: runner.counters.dead_lettered == 1, message="the undeliverable alert dead-lettered")
    runner.stop()
    await task
    assert "HTTP 500" in caplog.text
    assert "SECRET" not in caplog.text
    [(_, letter)] = raw_entries(await redis.xrange(stream_key(stream, "dead")))
    assert letter[b"reason"].startswith(b"max_deliveries")


async def test_held_back_alerts_survive_a_crash_and_the_restarted_process_summarises_them(
    redis: Redis, stream: str
) -> None:
    """SIGKILL inside the cooldown window: the held-back events were acknowledged, so only Redis remembers them."""
    out, clock = io.StringIO(), ManualClock()
    key = stream_key(stream, "held:alerter:a1")

    def alerter() -> Alerter:
        made = make_alerter(redis, stream, [StdoutSink(out)], clock=clock, burst=1)
        made.held = HeldStore(redis, key)
        return made

    first = alerter()
    events = [big(coin="BTC") for _ in range(6)]
    for second, event in enumerate(events):
        clock.now = 1_000 + second
        await first.handle(event)
    await first.handle(events[3])  # a redelivery counts once
    assert len(out.getvalue().splitlines()) == 1 and first.counters.held_back == 5
    del first  # the process dies: nothing of its memory is left

    restarted = alerter()
    assert await restarted.restore_held() == 5
    clock.now = 1_061
    await restarted.send_due_summaries()
    lines = out.getvalue().splitlines()
    assert lines[-1].startswith("… and 5 more BTC liquidations worth $1.3M held back in the last 60s")
    assert await redis.hgetall(key) == {}, "forgotten once summarised"
    assert await alerter().restore_held() == 0


async def test_a_summary_that_cannot_be_sent_is_kept_for_the_next_start(
    redis: Redis, stream: str, hooks: FakeWebhooks, session: aiohttp.ClientSession
) -> None:
    key = stream_key(stream, "held:alerter:a1")
    clock = ManualClock()
    alerter = make_alerter(
        redis, stream, [WebhookSink(session, Secret(f"{hooks.url}/hook"), timeout_s=2)], clock=clock, burst=1
    )
    alerter.held = HeldStore(redis, key)
    await alerter.handle(big(coin="ETH"))
    await alerter.handle(big(coin="ETH"))
    hooks.fail_next(10, status=503)
    await alerter.send_due_summaries(final=True)
    assert alerter.counters.summaries == 0
    assert len(await redis.hgetall(key)) == 1, "still on record for the next start"
