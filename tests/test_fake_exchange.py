"""The fake info API the producer's tests and the fills demo run against, driven through a plain aiohttp client.

Why: every producer test trusts it. If the fake paged differently from mainnet, producer tests would pass or fail
for the wrong reasons; so it is exercised through real sockets and real faults, and what a correct poller pages
out of it is re-derived by a tiny reference consumer (:func:`tests.support.truth.derive`).
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from producer.simulation.fake_exchange import (
    BAD_GATEWAY,
    DISCONNECT,
    EXTRA_FIELD,
    NOT_JSON,
    RATE_LIMITED,
    SCENARIOS,
    SERVER_ERROR,
    TRUNCATED_JSON,
    UNAVAILABLE,
    WRONG_TYPES,
    Charge,
    FakeHyperliquid,
    Fault,
    _serve,
    heaviest_minute,
    request_weight,
    running_fake,
)
from producer.simulation.scenarios import (
    DEMO_BUSY,
    DEMO_WATCHLIST,
    ZERO_HASH,
    ScenarioBuilder,
    demo_scenario,
)
from tests.support.mainnet import ALICE, BOB, REAL_TRADE_KEYS
from tests.support.truth import assert_derived_matches_truth, derive, visible_from


# ---------------------------------------------------------------------------------------------------- helpers
def make_fill(time_ms: int, tid: int, coin: str = "BTC") -> dict[str, Any]:
    """A minimal ordinary fill; paging tests only care about time and tid."""
    return {
        "coin": coin,
        "px": "64142.0",
        "sz": "0.00052",
        "side": "A",
        "time": time_ms,
        "startPosition": "-5.11888",
        "dir": "Open Short",
        "closedPnl": "0.0",
        "hash": ZERO_HASH,
        "oid": 518865150801,
        "crossed": False,
        "fee": "-0.001",
        "tid": tid,
        "feeToken": "USDC",
        "twapId": None,
    }


def make_trade(time_ms: int, tid: int, coin: str = "BTC") -> dict[str, Any]:
    return {
        "coin": coin,
        "side": "B",
        "px": "64160.0",
        "sz": "0.00587",
        "time": time_ms,
        "hash": ZERO_HASH,
        "tid": tid,
        "users": [ALICE, BOB],
    }


@pytest.fixture
async def fake() -> AsyncIterator[FakeHyperliquid]:
    async with running_fake() as running:
        yield running


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as client:
        yield client


async def post(session: aiohttp.ClientSession, fake: FakeHyperliquid, body: Any) -> tuple[int, Any]:
    """POST a body; (status, decoded JSON or text)."""
    async with session.post(fake.url + "/info", json=body) as resp:
        text = await resp.text()
        is_json = resp.content_type == "application/json"
        return resp.status, json.loads(text) if is_json and resp.status == 200 else text


async def fills_page(
    session: aiohttp.ClientSession, fake: FakeHyperliquid, user: str, start: int, end: int | None = None
) -> list[dict[str, Any]]:
    body: dict[str, Any] = {"type": "userFillsByTime", "user": user, "startTime": start, "aggregateByTime": False}
    if end is not None:
        body["endTime"] = end
    status, fills = await post(session, fake, body)
    assert status == 200, fills
    assert isinstance(fills, list)
    return fills


async def all_fills(session: aiohttp.ClientSession, fake: FakeHyperliquid, user: str) -> list[dict[str, Any]]:
    """Page like the producer should: from the last time, inclusive, dedup by tid, stop on a short page."""
    seen: dict[int, dict[str, Any]] = {}
    start = 0
    while True:
        page = await fills_page(session, fake, user, start)
        for fill in page:
            seen.setdefault(fill["tid"], fill)
        if len(page) < fake.max_fills_per_answer:
            return sorted(seen.values(), key=lambda fill: (fill["time"], fill["tid"]))
        start = page[-1]["time"]


# ---------------------------------------------------------------------------------------------------- paging
async def test_paging_caps_at_2000_ascending_with_inclusive_start(
    fake: FakeHyperliquid, session: aiohttp.ClientSession
) -> None:
    """4,500 fills need 3 pages of <= 2000; the last fill of a page comes back first on the next one."""
    fills = [make_fill(1_000 + i * 10, 700_000_000_000_000 + i) for i in range(4_500)]
    fake.add_fills(ALICE, reversed(fills))  # insertion order must not matter

    first = await fills_page(session, fake, ALICE, 0)
    assert len(first) == 2000
    assert [f["time"] for f in first] == sorted(f["time"] for f in first)
    assert first[0] == fills[0]
    second = await fills_page(session, fake, ALICE, first[-1]["time"])
    assert second[0] == first[-1]  # inclusive startTime
    assert len(second) == 2000

    collected = await all_fills(session, fake, ALICE)
    assert [f["tid"] for f in collected] == [f["tid"] for f in fills]
    assert [r["startTime"] for r in fake.requests_of("userFillsByTime")][2:] == [
        0,
        fills[1999]["time"],
        fills[3998]["time"],
    ]


async def test_end_time_bound_is_inclusive_and_optional(fake: FakeHyperliquid, session: aiohttp.ClientSession) -> None:
    fake.add_fills(ALICE, [make_fill(t, t) for t in (100, 200, 300, 400)])
    assert [f["time"] for f in await fills_page(session, fake, ALICE, 200, 300)] == [200, 300]
    assert [f["time"] for f in await fills_page(session, fake, ALICE, 201, 299)] == []
    assert [f["time"] for f in await fills_page(session, fake, ALICE, 250)] == [300, 400]


async def test_equal_times_across_a_page_boundary_are_all_reachable(
    fake: FakeHyperliquid, session: aiohttp.ClientSession
) -> None:
    """Same-block fills straddling a page edge: inclusive paging plus tid dedup still finds every fill."""
    fake.max_fills_per_answer = 5
    fake.add_fills(ALICE, [make_fill(1_000 + i // 4, i) for i in range(23)])
    collected = await all_fills(session, fake, ALICE)
    assert [f["tid"] for f in collected] == list(range(23))


async def test_only_the_newest_10000_fills_are_reachable(fake: FakeHyperliquid, session: aiohttp.ClientSession) -> None:
    fake.add_fills(ALICE, [make_fill(i, i) for i in range(10_050)])
    first = await fills_page(session, fake, ALICE, 0)
    assert first[0]["time"] == 50
    fake.reachable_fills = 3
    assert [f["time"] for f in await fills_page(session, fake, ALICE, 0)] == [10_047, 10_048, 10_049]


async def test_addresses_are_case_insensitive_and_unknown_ones_empty(
    fake: FakeHyperliquid, session: aiohttp.ClientSession
) -> None:
    fake.add_fills(ALICE.upper().replace("0X", "0x"), [make_fill(5, 5)])
    assert len(await fills_page(session, fake, ALICE, 0)) == 1
    assert await fills_page(session, fake, "0x" + "1" * 40, 0) == []


async def test_fills_added_while_running_show_on_the_next_poll(
    fake: FakeHyperliquid, session: aiohttp.ClientSession
) -> None:
    fake.add_fills(ALICE, [make_fill(10, 1)])
    assert len(await fills_page(session, fake, ALICE, 0)) == 1
    fake.add_fills(ALICE, [make_fill(20, 2)])
    assert [f["tid"] for f in await fills_page(session, fake, ALICE, 10)] == [1, 2]


async def test_recent_trades_newest_first_at_most_10(fake: FakeHyperliquid, session: aiohttp.ClientSession) -> None:
    fake.add_trades("BTC", [make_trade(t, t) for t in range(1, 15)])
    fake.add_trades("ETH", [make_trade(7, 7, coin="ETH")])
    status, trades = await post(session, fake, {"type": "recentTrades", "coin": "BTC"})
    assert status == 200
    assert [t["time"] for t in trades] == list(range(14, 4, -1))
    assert list(trades[0]) == REAL_TRADE_KEYS
    assert (await post(session, fake, {"type": "recentTrades", "coin": "DOGE"})) == (200, [])


@pytest.mark.parametrize(
    "body",
    [
        {"type": "clearinghouseState", "user": ALICE},
        {"type": "userFillsByTime", "startTime": 0},
        {"type": "userFillsByTime", "user": ALICE, "startTime": "0"},
        {"type": "recentTrades"},
        {"coin": "BTC"},
        [1, 2],
    ],
)
async def test_bad_bodies_get_422_with_text(fake: FakeHyperliquid, session: aiohttp.ClientSession, body: Any) -> None:
    status, text = await post(session, fake, body)
    assert status == 422
    assert isinstance(text, str) and text.startswith("Failed to deserialize")


async def test_non_json_request_is_recorded_and_rejected(fake: FakeHyperliquid, session: aiohttp.ClientSession) -> None:
    async with session.post(fake.url + "/info", data=b"{nope") as resp:
        assert resp.status == 422
    assert fake.requests == [{"_raw": "{nope"}]


async def test_every_request_is_recorded_in_order(fake: FakeHyperliquid, session: aiohttp.ClientSession) -> None:
    fake.fail_next(RATE_LIMITED)
    bodies = [{"type": "recentTrades", "coin": "BTC"}, {"type": "userFillsByTime", "user": ALICE, "startTime": 3}]
    for body in bodies:
        await post(session, fake, body)
    assert fake.requests == bodies
    assert fake.requests_of("userFillsByTime") == bodies[1:]


# ---------------------------------------------------------------------------------------------------- weight
def test_a_request_weighs_its_base_and_one_more_per_20_fills_or_trades_answered() -> None:
    assert request_weight("userFillsByTime", [{}] * 19) == 20 and request_weight("userFillsByTime", [{}] * 40) == 22
    assert request_weight("recentTrades", [{}] * 2000) == 120
    assert request_weight("perpDexs", [None] * 40) == 20  # a list, but not of items the exchange counts
    assert request_weight("userFillsByTime", None) == request_weight(None, None) == 20  # an error or a fault


def test_the_heaviest_minute_is_the_most_weight_in_any_rolling_60_seconds() -> None:
    assert heaviest_minute([]) == 0
    charges = [Charge(0.0, 100), Charge(30.0, 20), Charge(59.9, 20), Charge(60.0, 50), Charge(89.0, 40)]
    assert heaviest_minute(charges) == 140  # 0 to 59.9; the one at 60 s is a minute after the first
    assert heaviest_minute(charges[::-1]) == 140  # in any order
    assert heaviest_minute(charges, seconds=30) == 110  # 59.9 to 89; 0 and 30 are 30 s apart
    assert heaviest_minute([Charge(5.0, 20)] * 3) == 60  # at one instant


async def test_every_request_is_charged_at_its_arrival_faulted_ones_included(
    fake: FakeHyperliquid, session: aiohttp.ClientSession
) -> None:
    fake.add_fills(ALICE, [make_fill(1_000 + n, n) for n in range(45)])
    fake.fail_next(RATE_LIMITED)
    before = time.monotonic()
    await post(session, fake, {"type": "userFillsByTime", "user": ALICE, "startTime": 0})  # the 429
    await post(session, fake, {"type": "userFillsByTime", "user": ALICE, "startTime": 0})  # 45 fills
    await post(session, fake, {"type": "nonsense"})
    assert [charge.weight for charge in fake.charges] == [20, 22, 20]
    assert before <= fake.charges[0].at <= fake.charges[-1].at <= time.monotonic()
    assert heaviest_minute(fake.charges) == 62


# ---------------------------------------------------------------------------------------------------- faults
TRADES_BODY = {"type": "recentTrades", "coin": "BTC"}


@pytest.mark.parametrize(
    ("fault", "status", "text"),
    [
        (RATE_LIMITED, 429, "Too Many Requests"),
        (SERVER_ERROR, 500, "Internal Server Error"),
        (BAD_GATEWAY, 502, "Bad Gateway"),
        (UNAVAILABLE, 503, "Service Unavailable"),
        (Fault.http(429, "slow down"), 429, "slow down"),
    ],
)
async def test_status_faults_then_normal_answer(
    fake: FakeHyperliquid, session: aiohttp.ClientSession, fault: Fault, status: int, text: str
) -> None:
    fake.fail_next(fault)
    assert await post(session, fake, TRADES_BODY) == (status, text)
    assert await post(session, fake, TRADES_BODY) == (200, [])
    assert fake.pending_faults == 0


async def test_delay_trips_a_client_timeout_then_short_delay_answers(
    fake: FakeHyperliquid, session: aiohttp.ClientSession
) -> None:
    fake.add_trades("BTC", [make_trade(1, 1)])
    fake.fail_next(Fault.delay(2.0))
    with pytest.raises(asyncio.TimeoutError):
        async with session.post(fake.url + "/info", json=TRADES_BODY, timeout=aiohttp.ClientTimeout(total=0.1)):
            pass
    fake.fail_next(Fault.delay(0.1))
    began = time.monotonic()
    status, trades = await post(session, fake, TRADES_BODY)
    assert time.monotonic() - began >= 0.1
    assert status == 200 and len(trades) == 1


@pytest.mark.parametrize("fault", [TRUNCATED_JSON, NOT_JSON, Fault.malformed(b'[{"coin": "BTC", "px": ')])
async def test_malformed_body_is_200_json_that_does_not_parse(
    fake: FakeHyperliquid, session: aiohttp.ClientSession, fault: Fault
) -> None:
    fake.fail_next(fault)
    async with session.post(fake.url + "/info", json=TRADES_BODY) as resp:
        assert resp.status == 200
        assert resp.content_type == "application/json"
        with pytest.raises(ValueError):
            await resp.json()


async def test_wrong_types_and_arbitrary_json(fake: FakeHyperliquid, session: aiohttp.ClientSession) -> None:
    fake.add_fills(ALICE, [make_fill(10, 1)])
    fills_body = {"type": "userFillsByTime", "user": ALICE, "startTime": 0}
    fake.fail_next(WRONG_TYPES)
    fake.fail_next(WRONG_TYPES)
    fake.fail_next(Fault.json([1, 2, 3]))
    _, broken = await post(session, fake, fills_body)
    assert broken[0]["px"] == {"value": "64142.0"} and broken[0]["time"] == "10"
    _, broken_empty = await post(session, fake, TRADES_BODY)  # no trades: still a wrongly typed item
    assert isinstance(broken_empty[0]["px"], dict)
    assert await post(session, fake, fills_body) == (200, [1, 2, 3])


async def test_extra_field_in_every_item(fake: FakeHyperliquid, session: aiohttp.ClientSession) -> None:
    fake.add_fills(ALICE, [make_fill(10, 1), make_fill(11, 2)])
    fake.fail_next(EXTRA_FIELD)
    fake.fail_next(Fault.extra_field("isTwap", False))
    body = {"type": "userFillsByTime", "user": ALICE, "startTime": 0}
    _, fills = await post(session, fake, body)
    assert all(fill["someNewField"] == {"nested": [1, "x"]} for fill in fills) and len(fills) == 2
    _, fills = await post(session, fake, body)
    assert all(fill["isTwap"] is False for fill in fills)
    assert fake.fills[ALICE][0].keys() == make_fill(0, 0).keys()  # stored data untouched


async def test_disconnect_is_a_client_connection_error(fake: FakeHyperliquid, session: aiohttp.ClientSession) -> None:
    fake.fail_next(DISCONNECT)
    with pytest.raises(aiohttp.ServerDisconnectedError) as caught:
        await post(session, fake, TRADES_BODY)
    assert isinstance(caught.value, aiohttp.ClientConnectionError)
    assert await post(session, fake, TRADES_BODY) == (200, [])  # the next connection is fine


async def test_faults_are_fifo_and_only_consume_matching_requests(
    fake: FakeHyperliquid, session: aiohttp.ClientSession
) -> None:
    fills_body = {"type": "userFillsByTime", "user": ALICE, "startTime": 0}
    fake.fail_next(SERVER_ERROR, times=2, match=lambda body: body.get("type") == "userFillsByTime")
    fake.fail_next(RATE_LIMITED)
    assert (await post(session, fake, TRADES_BODY))[0] == 429  # the only fault matching a trades request
    assert (await post(session, fake, fills_body))[0] == 500
    assert (await post(session, fake, TRADES_BODY))[0] == 200
    assert (await post(session, fake, fills_body))[0] == 500
    assert (await post(session, fake, fills_body))[0] == 200
    assert fake.pending_faults == 0


async def test_running_fake_loads_a_scenario_and_stops(session: aiohttp.ClientSession) -> None:
    builder = ScenarioBuilder(seed=3)
    liq = builder.market_liquidation(makers=[ALICE])
    async with running_fake(builder.build()) as fake:
        url = fake.url
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+", url)
        fills = await fills_page(session, fake, ALICE, 0)
        assert [f["tid"] for f in fills] == sorted(liq.tids)
    assert fake.url == ""
    with pytest.raises(aiohttp.ClientConnectionError):
        async with session.post(url + "/info", json=TRADES_BODY):
            pass


async def test_stop_releases_a_pending_delay_quickly() -> None:
    """A test that ends while the client waits on a long delay must not hang the suite."""
    fake = FakeHyperliquid()
    await fake.start()
    fake.fail_next(Fault.delay(30))

    async def call(client: aiohttp.ClientSession) -> int | None:
        try:
            async with client.post(fake.url + "/info", json=TRADES_BODY) as resp:
                await resp.read()
                return resp.status
        except aiohttp.ClientError:
            return None

    async with aiohttp.ClientSession() as client:
        request = asyncio.ensure_future(call(client))
        for _ in range(500):
            if fake.requests:
                break
            await asyncio.sleep(0.01)
        began = time.monotonic()
        await fake.stop()
        assert await request in (200, None)  # answered early or cut off: either way, not after 30 s
        assert time.monotonic() - began < 2


async def test_demo_server_entry_point_serves(capsys: pytest.CaptureFixture[str]) -> None:
    """``python -m producer.simulation.fake_exchange`` runs ``_serve``: it serves the demo and prints its address."""
    server = asyncio.ensure_future(_serve("127.0.0.1", 0, SCENARIOS["demo"](1)))
    try:
        match = None
        for _ in range(200):
            await asyncio.sleep(0.01)
            match = re.search(r"(http://127\.0\.0\.1:\d+)/info", capsys.readouterr().out)
            if match:
                break
        assert match is not None
        async with aiohttp.ClientSession() as client:
            body = {"type": "userFillsByTime", "user": DEMO_BUSY, "startTime": 0}
            async with client.post(match.group(1) + "/info", json=body) as resp:
                assert len(await resp.json()) == 2000
    finally:
        server.cancel()
        with pytest.raises(asyncio.CancelledError):
            await server


async def test_demo_served_and_paged_matches_visible_truth(session: aiohttp.ClientSession) -> None:
    """End to end: what a correct poller of the watchlist derives through HTTP equals ``visible_from``."""
    scenario = demo_scenario()
    async with running_fake(scenario) as fake:
        served = {address: await all_fills(session, fake, address) for address in DEMO_WATCHLIST}
        assert len(fake.requests_of("userFillsByTime")) >= len(DEMO_WATCHLIST) + 2  # the busy address paged
    assert served[DEMO_BUSY] == scenario.fills[DEMO_BUSY]
    assert_derived_matches_truth(derive(served), visible_from(scenario, DEMO_WATCHLIST))
