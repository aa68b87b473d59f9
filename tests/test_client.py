"""The API client against the fake exchange: decoding, paging inputs, and every failure path."""

from __future__ import annotations

import logging
import random

import msgspec
import pytest

from producer.client import HyperliquidClient, RetryPolicy
from producer.errors import ExchangeRejected, ExchangeUnavailable, MalformedResponse
from producer.exchange_types import Fill
from producer.ratelimit import WeightBudget
from producer.simulation.fake_exchange import (
    DISCONNECT,
    EXTRA_FIELD,
    NOT_JSON,
    RATE_LIMITED,
    SERVER_ERROR,
    TRUNCATED_JSON,
    UNAVAILABLE,
    WRONG_TYPES,
    FakeHyperliquid,
    Fault,
)
from producer.simulation.scenarios import ScenarioBuilder
from tests.faults.poison import NOT_DECIMALS, fill_with

FAST_RETRY = RetryPolicy(attempts=3, base_delay=0.01, max_delay=0.05)


def client_for(fake: FakeHyperliquid, **kwargs: object) -> HyperliquidClient:
    options: dict[str, object] = {"timeout": 2.0, "retry": FAST_RETRY, "rng": random.Random(7)}
    options.update(kwargs)
    return HyperliquidClient(fake.url, **options)  # type: ignore[arg-type]


@pytest.fixture
def maker_fills(fake_hl: FakeHyperliquid) -> str:
    builder = ScenarioBuilder(seed=3)
    maker = builder.address()
    builder.market_liquidation(coin="BTC", side="long", makers=[maker], mark_px=64100.5)
    builder.ordinary_fills(maker, 5)
    fake_hl.load(builder.build())
    return maker


async def test_fills_decode_into_structs_with_exact_strings(fake_hl: FakeHyperliquid, maker_fills: str) -> None:
    async with client_for(fake_hl) as client:
        page = await client.user_fills_by_time(maker_fills, 0)
    assert page.answered == len(page.fills) == 6
    liquidation_fills = [f for f in page.fills if f.liquidation is not None]
    assert len(liquidation_fills) == 1
    raw = next(f for f in fake_hl.fills[maker_fills] if "liquidation" in f)
    assert liquidation_fills[0].px == raw["px"] and liquidation_fills[0].sz == raw["sz"]
    assert str(liquidation_fills[0].liquidation.markPx) == "64100.5"  # type: ignore[union-attr]
    body = fake_hl.requests_of("userFillsByTime")[0]
    assert body == {"type": "userFillsByTime", "user": maker_fills, "startTime": 0, "aggregateByTime": False}


async def test_unknown_fields_do_not_break_decoding(fake_hl: FakeHyperliquid, maker_fills: str) -> None:
    fake_hl.fail_next(EXTRA_FIELD)
    async with client_for(fake_hl) as client:
        page = await client.user_fills_by_time(maker_fills, 0)
    assert len(page.fills) == 6
    assert client.stats.malformed == 0


@pytest.mark.parametrize("fault", [RATE_LIMITED, SERVER_ERROR, UNAVAILABLE, DISCONNECT, Fault.delay(5)])
async def test_transient_failures_are_retried(fake_hl: FakeHyperliquid, maker_fills: str, fault: Fault) -> None:
    fake_hl.fail_next(fault, times=2)
    async with client_for(fake_hl, timeout=0.5) as client:
        page = await client.user_fills_by_time(maker_fills, 0)
    assert len(page.fills) == 6
    assert client.stats.retries == 2
    assert len(fake_hl.requests) == 3


async def test_retries_run_out_with_a_clear_error(
    fake_hl: FakeHyperliquid, maker_fills: str, caplog: pytest.LogCaptureFixture
) -> None:
    fake_hl.fail_next(RATE_LIMITED, times=3)
    caplog.set_level(logging.WARNING)
    async with client_for(fake_hl) as client:
        with pytest.raises(ExchangeUnavailable, match=r"gave up after 3 attempts, last: rate limited \(HTTP 429\)"):
            await client.user_fills_by_time(maker_fills, 0)
    assert client.stats.rate_limited == 3
    assert "retry 1/2" in caplog.text


async def test_a_rejected_request_is_not_retried(fake_hl: FakeHyperliquid) -> None:
    fake_hl.fail_next(Fault.http(422, "Failed to deserialize the JSON body"))
    async with client_for(fake_hl) as client:
        with pytest.raises(ExchangeRejected, match="HTTP 422"):
            await client.recent_trades("BTC")
    assert len(fake_hl.requests) == 1


@pytest.mark.parametrize("fault", [TRUNCATED_JSON, NOT_JSON, Fault.json({"error": "not a list"})])
async def test_malformed_answers_raise_and_are_counted(
    fake_hl: FakeHyperliquid, maker_fills: str, fault: Fault
) -> None:
    fake_hl.fail_next(fault)
    async with client_for(fake_hl) as client:
        with pytest.raises(MalformedResponse):
            await client.user_fills_by_time(maker_fills, 0)
        assert client.stats.malformed == 1
        # The next answer is fine again: nothing sticks.
        assert len((await client.user_fills_by_time(maker_fills, 0)).fills) == 6


async def test_wrong_types_in_every_item_leave_nothing_to_publish(fake_hl: FakeHyperliquid, maker_fills: str) -> None:
    fake_hl.fail_next(WRONG_TYPES)
    async with client_for(fake_hl) as client:
        page = await client.user_fills_by_time(maker_fills, 0)
    assert page.fills == []
    assert page.answered == 6  # paging still knows how many items the exchange sent
    assert client.stats.skipped_items == 6 and client.stats.malformed == 1


async def test_one_bad_item_does_not_hide_the_good_ones(
    fake_hl: FakeHyperliquid, maker_fills: str, caplog: pytest.LogCaptureFixture
) -> None:
    good = sorted(fake_hl.fills[maker_fills], key=lambda f: f["time"])
    fake_hl.fail_next(Fault.json([*good[:3], {"coin": "BTC", "px": 1}, *good[3:]]))
    async with client_for(fake_hl) as client:
        page = await client.user_fills_by_time(maker_fills, 0)
    assert len(page.fills) == 6 and page.answered == 7
    assert client.stats.skipped_items == 1
    assert "skipped a malformed item" in caplog.text


async def test_trades_decode(fake_hl: FakeHyperliquid) -> None:
    builder = ScenarioBuilder(seed=4)
    builder.trade("ETH", buyer=builder.address(), seller=builder.address(), px="2500.5", sz="1.2")
    fake_hl.load(builder.build())
    async with client_for(fake_hl) as client:
        [trade] = await client.recent_trades("ETH")
    assert (trade.coin, trade.px, trade.sz) == ("ETH", "2500.5", "1.2")


async def test_the_budget_charges_for_items_returned(fake_hl: FakeHyperliquid, maker_fills: str) -> None:
    clock = [0.0]
    budget = WeightBudget(1200, clock=lambda: clock[0])
    builder = ScenarioBuilder(seed=5)
    builder.ordinary_fills(maker_fills, 400)
    fake_hl.load(builder.build())
    async with client_for(fake_hl, budget=budget) as client:
        await client.user_fills_by_time(maker_fills, 0)
    # 200 tokens at start, 20 for the request, 406 // 20 = 20 for the items.
    assert budget.available == pytest.approx(200 - 20 - 20)


async def test_fills_with_unusable_amounts_or_times_are_skipped_counted_and_logged_boundedly(
    fake_hl: FakeHyperliquid, maker_fills: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Each of these raised in the detector on every poll and every restart; now they are malformed items."""
    good = sorted(fake_hl.fills[maker_fills], key=lambda f: f["time"])
    poison = [fill_with(good[0], px=value) for value in NOT_DECIMALS] + [fill_with(good[0], time=10**15)]
    fake_hl.fail_next(Fault.json([*good, *poison]))
    async with client_for(fake_hl) as client:
        page = await client.user_fills_by_time(maker_fills, 0)
    assert page.fills == good_fills(good) and page.answered == len(good) + len(poison)
    assert client.stats.skipped_items == len(poison)
    assert caplog.text.count("skipped a malformed item") <= 3
    assert f"skipped {len(poison)} malformed items" in caplog.text


def good_fills(raw: list[dict[str, object]]) -> list[Fill]:
    return [msgspec.json.decode(msgspec.json.encode(f), type=Fill) for f in raw]
