"""The fake feeds speak each dialect as the providers document it (checked with a bare aiohttp client)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import aiohttp
import pytest

from producer.simulation.fake_feeds import FakeFeeds, blocks_of
from producer.simulation.scenarios import ScenarioBuilder

MAKER = "0x80bcb7855595980d4a20f0c8454039762a6d6a28"


def cascade(n: int) -> list[list[tuple[str, dict[str, Any]]]]:
    """``n`` market liquidations absorbed by :data:`MAKER`, as blocks of (address, fill)."""
    builder = ScenarioBuilder(seed=3)
    for i in range(n):
        builder.market_liquidation(coin=("BTC", "ETH", "SOL")[i % 3], side="long", makers=[MAKER])
    return blocks_of(builder.build())


async def receive(ws: aiohttp.ClientWebSocketResponse) -> Any:
    return json.loads(await ws.receive_str(timeout=2))


async def test_public_subscribe_gets_an_ack_a_snapshot_then_pushes(session: aiohttp.ClientSession) -> None:
    first, second = cascade(2)
    async with FakeFeeds() as fake:
        await fake.push(first)
        async with session.ws_connect(fake.public_url) as ws:
            await ws.send_json({"method": "subscribe", "subscription": {"type": "userFills", "user": MAKER}})
            assert (await receive(ws))["channel"] == "subscriptionResponse"
            snapshot = await receive(ws)
            assert snapshot["data"]["isSnapshot"] is True
            assert [f["tid"] for f in snapshot["data"]["fills"]] == [f["tid"] for a, f in first if a == MAKER]
            await fake.push(second)
            push = await receive(ws)
            assert "isSnapshot" not in push["data"] and push["data"]["user"] == MAKER
            await ws.send_json({"method": "ping"})
            assert await receive(ws) == {"channel": "pong"}


async def test_public_refuses_a_bad_subscription_and_an_eleventh_user(session: aiohttp.ClientSession) -> None:
    async with FakeFeeds(max_users=2) as fake, session.ws_connect(fake.public_url) as ws:
        await ws.send_json({"method": "subscribe", "subscription": {"type": "userFills"}})
        assert (await receive(ws))["channel"] == "error"
        for user in ("0x01", "0x02"):
            await ws.send_json({"method": "subscribe", "subscription": {"type": "userFills", "user": user}})
            await receive(ws), await receive(ws)
        await ws.send_json({"method": "subscribe", "subscription": {"type": "userFills", "user": "0x03"}})
        assert await receive(ws) == {"channel": "error", "data": "Cannot track more than 2 total users."}


@pytest.mark.parametrize("dialect", ["hydromancer", "goldrush"])
async def test_a_wrong_key_is_refused_at_the_upgrade(session: aiohttp.ClientSession, dialect: str) -> None:
    async with FakeFeeds() as fake:
        url = fake.hydromancer_url("wrong") if dialect == "hydromancer" else fake.goldrush_url("wrong")
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await session.ws_connect(url)
        assert refused.value.status == 401


async def test_hydromancer_numbers_blocks_and_replays_what_a_session_missed(session: aiohttp.ClientSession) -> None:
    blocks = cascade(5)
    async with FakeFeeds() as fake:
        async with session.ws_connect(fake.hydromancer_url()) as ws:
            session_id = (await receive(ws))["sessionId"]
            await ws.send_json({"type": "subscribe", "subscription": {"type": "liquidationFills"}})
            await eventually(lambda: fake.sessions[session_id].subscribed)
            for block in blocks[:2]:
                await fake.push(block)
            live = [await receive(ws), await receive(ws)]
        assert [m["seq"] for m in live] == [1, 2] and live[0]["cursor"].startswith("758800641:")
        for block in blocks[2:]:
            await fake.push(block)
        async with session.ws_connect(fake.hydromancer_url() + f"&sessionId={session_id}") as ws:
            assert (await receive(ws))["sessionId"] == session_id
            replay = [await receive(ws) for _ in range(4)]
        assert [m["seq"] for m in replay] == [1, 2, 3, 4]  # seq restarts on every connection
        assert replay[0]["cursor"] == live[1]["cursor"]  # one block of overlap, as the provider warns


async def eventually(condition: Callable[[], bool], within: float = 2.0) -> None:
    """Wait until the server has acted on what the client sent (it reads on its own schedule)."""
    async with asyncio.timeout(within):
        while not condition():  # noqa: ASYNC110 - the condition is the server's state, no event to wait on
            await asyncio.sleep(0.01)


async def test_goldrush_pushes_only_liquidation_fills_live(session: aiohttp.ClientSession) -> None:
    (block,) = cascade(1)
    async with FakeFeeds() as fake:
        await fake.push(block)  # before anyone subscribed: live only, never shown
        async with session.ws_connect(fake.goldrush_url()) as ws:
            await ws.send_json({"method": "subscribe", "subscription": {"type": "liquidationFills"}})
            assert (await receive(ws))["channel"] == "subscriptionResponse"
            await fake.push([(MAKER, {**block[0][1], "liquidation": None, "tid": 1})])
            await fake.push(block)
            message = await receive(ws)
        assert message["channel"] == "liquidationFills"
        assert {f["tid"] for _, f in message["data"]["fills"]} == {f["tid"] for _, f in block}


async def test_refused_upgrades_answer_the_status_then_recover(session: aiohttp.ClientSession) -> None:
    async with FakeFeeds() as fake:
        fake.refuse(times=2, status=503)
        for _ in range(2):
            with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                await session.ws_connect(fake.public_url)
            assert refused.value.status == 503
        async with session.ws_connect(fake.public_url):
            assert fake.accepted == 1 and fake.refused == 2
