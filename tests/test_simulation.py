"""Tests of the test-support code itself: the fake info API and the scenario builder's ground truth.

Why: every producer test trusts these two. If the fake paged differently from mainnet, or the truth disagreed
with the fills it describes, producer tests would pass or fail for the wrong reasons. So the fake is driven
through a plain aiohttp client (real sockets, real faults), and the truth is re-derived from the served fills by
a tiny reference consumer written only from the documented rules.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import AsyncIterator, Iterable, Mapping
from decimal import Decimal
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
    FakeHyperliquid,
    Fault,
    _serve,
    running_fake,
)
from producer.simulation.scenarios import (
    ADL_DIR,
    DEMO_BUSY,
    DEMO_MAKERS,
    DEMO_WATCHLIST,
    HLP_LIQUIDATOR,
    LIQUIDATOR_2,
    LIQUIDATOR_VAULTS,
    ZERO_HASH,
    ExpectedLiquidation,
    Scenario,
    ScenarioBuilder,
    demo_scenario,
)
from tests.support.truth import visible_from

ADDRESS_RE = re.compile(r"^0x[0-9a-f]{40}$")
HASH_RE = re.compile(r"^0x[0-9a-f]{64}$")
DECIMAL_RE = re.compile(r"^-?\d+\.\d+$")
ALICE = "0x4a8a68b2ec7c67cbb79060d98157b68c47eba0e6"
BOB = "0x654086857e1fad6dcf05cf6695cce51ea3984268"

# Key order of a real mainnet fill / trade (real-samples.json), optional keys excluded.
REAL_FILL_KEYS = [
    "coin",
    "px",
    "sz",
    "side",
    "time",
    "startPosition",
    "dir",
    "closedPnl",
    "hash",
    "oid",
    "crossed",
    "fee",
    "tid",
    "feeToken",
]
OPTIONAL_FILL_KEYS = {"cloid", "liquidation", "builderFee", "twapId"}
REAL_TRADE_KEYS = ["coin", "side", "px", "sz", "time", "hash", "tid", "users"]


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


def derive(fills_by_address: Mapping[str, Iterable[dict[str, Any]]]) -> dict[tuple[str, str, str], dict[str, Any]]:
    """Reference consumer, from the documented rules only: liquidation events keyed (hash, coin, liquidated user)."""
    events: dict[tuple[str, str, str], dict[str, Any]] = {}
    for address, fills in fills_by_address.items():
        for fill in fills:
            liq = fill.get("liquidation")
            if liq is None or fill["dir"] == ADL_DIR:
                continue
            own = address == liq["liquidatedUser"]
            is_long = (fill["side"] == "A") if own else (fill["side"] == "B")
            event = events.setdefault(
                (fill["hash"], fill["coin"], liq["liquidatedUser"]),
                {"side": set(), "method": set(), "time": set(), "trades": {}},
            )
            event["side"].add("long" if is_long else "short")
            event["method"].add(liq["method"])
            event["time"].add(fill["time"])
            event["trades"][fill["tid"]] = (Decimal(fill["px"]), Decimal(fill["sz"]))
    return events


def assert_matches_truth(derived: dict[tuple[str, str, str], dict[str, Any]], truth: list[ExpectedLiquidation]) -> None:
    assert set(derived) == {liq.key for liq in truth}
    for liq in truth:
        event = derived[liq.key]
        assert event["side"] == {liq.side}, liq.key
        assert event["method"] == {liq.method}, liq.key
        assert event["time"] == {liq.timestamp}, liq.key
        assert set(event["trades"]) == liq.tids, liq.key
        assert sum((sz for _, sz in event["trades"].values()), Decimal(0)) == liq.size
        assert sum((px * sz for px, sz in event["trades"].values()), Decimal(0)) == liq.value_usd


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


# ---------------------------------------------------------------------------------------------------- scenarios
def fills_with_tid(scenario: Scenario, tid: int) -> dict[str, dict[str, Any]]:
    """address -> the fill of that trade on that address."""
    return {addr: fill for addr, fills in scenario.fills.items() for fill in fills if fill["tid"] == tid}


def test_market_liquidation_legs_share_tid_hash_time_and_follow_side_rules() -> None:
    builder = ScenarioBuilder(seed=7)
    makers = [builder.address() for _ in range(3)]
    long_liq = builder.market_liquidation(coin="BTC", side="long", makers=makers)
    short_liq = builder.market_liquidation(coin="ETH", side="short", makers=makers[:1])
    scenario = builder.build()

    assert len(long_liq.tids) == 3
    for liq, user_side, maker_side, user_dir in (
        (long_liq, "A", "B", "Close Long"),
        (short_liq, "B", "A", "Close Short"),
    ):
        for tid in liq.tids:
            legs = fills_with_tid(scenario, tid)
            assert len(legs) == 2 and liq.liquidated_user in legs
            (maker,) = set(legs) - {liq.liquidated_user}
            own, other = legs[liq.liquidated_user], legs[maker]
            assert own["hash"] == other["hash"] == liq.tx_hash
            assert own["time"] == other["time"] == liq.timestamp
            assert (own["px"], own["sz"]) == (other["px"], other["sz"])
            assert (own["side"], own["crossed"], own["dir"]) == (user_side, True, user_dir)
            assert (other["side"], other["crossed"]) == (maker_side, False)
            assert other["dir"] in {
                "Open Long",
                "Close Short",
                "Short > Long",
                "Open Short",
                "Close Long",
                "Long > Short",
            }
            expected_liq = {"liquidatedUser": liq.liquidated_user, "markPx": liq.mark_price, "method": "market"}
            assert own["liquidation"] == other["liquidation"] == expected_liq
    assert_matches_truth(derive(scenario.fills), scenario.liquidations)


def test_truth_values_are_exact_decimals() -> None:
    """0.1 + 0.2 must be 0.3 exactly; a float-summing consumer fails against this truth."""
    builder = ScenarioBuilder()
    liq = builder.market_liquidation(
        coin="BTC", makers=[ALICE, BOB], sizes=["0.1", "0.2"], prices=["64159.0", "64158.5"]
    )
    assert liq.size == Decimal("0.3")
    assert liq.value_usd == Decimal("64159.0") * Decimal("0.1") + Decimal("64158.5") * Decimal("0.2")
    assert liq.value_usd == Decimal("19247.60")
    one_px = builder.market_liquidation(coin="SOL", makers=[ALICE], sizes=["28.33"], px="67.5499")
    assert one_px.value_usd == Decimal("1913.688667") and one_px.size == Decimal("28.33")


def test_backstop_vault_leg_names_the_liquidated_side() -> None:
    builder = ScenarioBuilder(seed=2)
    long_liq = builder.backstop_liquidation(coin="SOL", side="long", size="28.33", px="67.5499", mark_px=68.2)
    short_liq = builder.backstop_liquidation(coin="ETH", side="short", vault=LIQUIDATOR_2, isolated=True)
    scenario = builder.build()
    for liq, vault, vault_side, vault_dir in (
        (long_liq, HLP_LIQUIDATOR, "B", "Liquidated Cross Long"),
        (short_liq, LIQUIDATOR_2, "A", "Liquidated Isolated Short"),
    ):
        (tid,) = liq.tids
        legs = fills_with_tid(scenario, tid)
        assert set(legs) == {vault, liq.liquidated_user}
        assert (legs[vault]["side"], legs[vault]["dir"]) == (vault_side, vault_dir)
        assert legs[liq.liquidated_user]["side"] == ("A" if vault_side == "B" else "B")
        assert legs[vault]["liquidation"]["method"] == legs[liq.liquidated_user]["liquidation"]["method"] == "backstop"
    assert scenario.fills[HLP_LIQUIDATOR][0]["liquidation"]["markPx"] == 68.2  # a JSON number
    assert long_liq.mark_price == "68.2"
    assert isinstance(scenario.fills[LIQUIDATOR_2][0]["liquidation"]["markPx"], str)
    assert_matches_truth(derive(scenario.fills), scenario.liquidations)
    trade_users = {tuple(t["users"]) for trades in scenario.trades.values() for t in trades}
    assert (HLP_LIQUIDATOR, long_liq.liquidated_user) in trade_users  # vault buys a long
    assert (short_liq.liquidated_user, LIQUIDATOR_2) in trade_users  # vault sells a short


def test_adl_fills_carry_a_liquidation_object_but_are_not_truth() -> None:
    builder = ScenarioBuilder()
    builder.adl(coin="AVAX", user=ALICE, size="28.53", px="22.075")
    scenario = builder.build()
    (fill,) = scenario.fills[ALICE]
    assert fill["dir"] == ADL_DIR and fill["side"] == "B" and fill["startPosition"] == "-28.53"
    assert fill["liquidation"]["liquidatedUser"] == HLP_LIQUIDATOR and fill["liquidation"]["method"] == "backstop"
    assert scenario.liquidations == [] and scenario.adl_fill_count == 1
    assert visible_from(scenario, [ALICE]) == []


def test_one_hash_with_several_users_and_coins() -> None:
    builder = ScenarioBuilder(seed=5)
    tx_hash = builder.new_hash()
    maker, u1, u2 = builder.address(), builder.address(), builder.address()
    a = builder.market_liquidation(coin="BTC", user=u1, makers=[maker], tx_hash=tx_hash)
    builder.ordinary_fills(maker, 3)  # the clock moves on; the hash keeps its block time
    b = builder.market_liquidation(coin="BTC", user=u2, makers=[maker], tx_hash=tx_hash)
    c = builder.market_liquidation(coin="ETH", side="short", user=u2, makers=[maker], tx_hash=tx_hash)
    again = builder.market_liquidation(coin="ETH", side="short", user=u2, makers=[maker], tx_hash=tx_hash)
    scenario = builder.build()
    assert {liq.key for liq in scenario.liquidations} == {a.key, b.key, c.key}
    assert a.timestamp == b.timestamp == c.timestamp
    merged = scenario.by_key()[c.key]
    assert merged == again and merged.tids > c.tids and merged.size == again.size
    maker_btc = [f for f in scenario.fills[maker] if f["hash"] == tx_hash and f["coin"] == "BTC"]
    assert len({f["oid"] for f in maker_btc}) == 1  # one resting order absorbed both users
    assert {f["liquidation"]["liquidatedUser"] for f in maker_btc} == {u1, u2}
    assert_matches_truth(derive(scenario.fills), scenario.liquidations)
    with pytest.raises(ValueError):
        builder.market_liquidation(coin="BTC", side="short", user=u1, makers=[maker], tx_hash=tx_hash)


def test_visible_from_restricts_to_watched_legs() -> None:
    builder = ScenarioBuilder(seed=11)
    makers = [builder.address() for _ in range(3)]
    liq = builder.market_liquidation(
        coin="BTC", makers=makers, sizes=["0.1", "0.25", "0.5"], prices=["64000.0", "63999.0", "63998.0"]
    )
    scenario = builder.build()

    (only_second,) = visible_from(scenario, [makers[1].upper().replace("0X", "0x")])
    (second_fill,) = scenario.fills[makers[1]]
    assert only_second.tids == frozenset({second_fill["tid"]})
    assert only_second.size == Decimal("0.25") and only_second.value_usd == Decimal("15999.75")
    assert (only_second.key, only_second.side, only_second.method) == (liq.key, "long", "market")

    (two,) = visible_from(scenario, makers[:2])
    assert two.size == Decimal("0.35") and len(two.tids) == 2
    assert visible_from(scenario, [liq.liquidated_user]) == [liq]
    assert visible_from(scenario, [*makers, liq.liquidated_user]) == [liq]
    assert visible_from(scenario, [ALICE]) == []


def test_ordinary_fills_look_real_and_are_never_liquidations() -> None:
    builder = ScenarioBuilder(seed=4)
    fills = builder.ordinary_fills(ALICE, 400, coin="ETH")
    assert all("liquidation" not in f for f in fills)
    zero = [f for f in fills if f["hash"] == ZERO_HASH]
    assert 0.18 < len(zero) / len(fills) < 0.38
    assert all(not f["crossed"] for f in zero)
    assert any("cloid" in f for f in fills) and any("builderFee" in f for f in fills)
    assert all(f["twapId"] is None for f in fills)
    times = [f["time"] for f in fills]
    assert times == sorted(times) and len(set(times)) < len(times)  # some same-block fills
    assert len({f["tid"] for f in fills}) == len(fills)


def test_formats_match_mainnet() -> None:
    """Every generated fill/trade uses the real key order and string formats (checked on the demo scenario)."""
    scenario = demo_scenario()
    for address, fills in scenario.fills.items():
        assert ADDRESS_RE.fullmatch(address)
        for fill in fills:
            assert [k for k in fill if k not in OPTIONAL_FILL_KEYS] == REAL_FILL_KEYS
            assert set(fill) - set(REAL_FILL_KEYS) <= OPTIONAL_FILL_KEYS
            for key in ("px", "sz", "startPosition", "closedPnl", "fee"):
                assert DECIMAL_RE.fullmatch(fill[key]), (key, fill[key])
            assert HASH_RE.fullmatch(fill["hash"]) and fill["side"] in ("A", "B")
            assert 10**14 <= fill["tid"] < 1.1 * 10**15
            if "liquidation" in fill:
                assert ADDRESS_RE.fullmatch(fill["liquidation"]["liquidatedUser"])
    for coin, trades in scenario.trades.items():
        assert [t["time"] for t in trades] == sorted((t["time"] for t in trades), reverse=True)
        for trade in trades:
            assert list(trade) == REAL_TRADE_KEYS and trade["coin"] == coin
            assert DECIMAL_RE.fullmatch(trade["px"]) and DECIMAL_RE.fullmatch(trade["sz"])
            assert all(ADDRESS_RE.fullmatch(user) for user in trade["users"])


def test_builder_is_deterministic() -> None:
    assert demo_scenario(seed=9) == demo_scenario(seed=9)
    assert demo_scenario(seed=9).liquidations != demo_scenario(seed=10).liquidations


def test_demo_scenario_has_the_promised_mix() -> None:
    scenario = demo_scenario()
    liqs = scenario.liquidations
    assert sum(liq.method == "backstop" for liq in liqs) == 2
    assert scenario.adl_fill_count == 3
    assert len(scenario.fills[DEMO_BUSY]) > 4_000
    by_hash: dict[str, set[tuple[str, str]]] = {}
    for liq in liqs:
        by_hash.setdefault(liq.tx_hash, set()).add((liq.coin, liq.liquidated_user))
    assert any(len({c for c, _ in v}) >= 2 and len({u for _, u in v}) >= 2 for v in by_hash.values())
    visible = visible_from(scenario, DEMO_WATCHLIST)
    assert 0 < len(visible) < len(liqs)  # one liquidation is seen by no watched address
    assert any(v.tids < scenario.by_key()[v.key].tids for v in visible)  # partially seen ones
    assert sum(liq.method == "market" for liq in visible_from(scenario, DEMO_MAKERS)) >= 5
    assert any(f["hash"] == ZERO_HASH for m in DEMO_MAKERS for f in scenario.fills[m])
    for coin in ("BTC", "ETH", "SOL"):
        assert len(scenario.trades[coin]) > 10
    newest = {coin: scenario.trades[coin][:10] for coin in ("BTC", "ETH", "SOL")}
    assert any(t["users"][0] in LIQUIDATOR_VAULTS for ts in newest.values() for t in ts)
    assert any(t["users"][1] in LIQUIDATOR_VAULTS for ts in newest.values() for t in ts)
    assert_matches_truth(derive(scenario.fills), liqs)


async def test_demo_served_and_paged_matches_visible_truth(session: aiohttp.ClientSession) -> None:
    """End to end: what a correct poller of the watchlist derives through HTTP equals ``visible_from``."""
    scenario = demo_scenario()
    async with running_fake(scenario) as fake:
        served = {address: await all_fills(session, fake, address) for address in DEMO_WATCHLIST}
        assert len(fake.requests_of("userFillsByTime")) >= len(DEMO_WATCHLIST) + 2  # the busy address paged
    assert served[DEMO_BUSY] == scenario.fills[DEMO_BUSY]
    assert_matches_truth(derive(served), visible_from(scenario, DEMO_WATCHLIST))
