"""Time going wrong for the producer: a long catch-up of the node's files, and a fill stamped days ahead.

A catch-up reads tens of thousands of blocks from disk and asks the exchange nothing: it must not be paced by the
exchange's request budget, or a liquidation that follows it waits for a minute or more. A fill the exchange stamps
in the future (a clock gone wrong, on either side) must not move its address's watermark past now, or the address
is never read again and its legs of every later liquidation are lost without one error.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

from producer.simulation.sample import blocks_from
from producer.simulation.scenarios import DEMO_MAKERS, Scenario, ScenarioBuilder
from schemas import event_key
from tests.faults.feed import Expected
from tests.faults.invariants import Figures, assert_delivered, wait_for, wait_published
from tests.faults.procs import Proc, count_lines
from tests.faults.rig import Rig
from tests.helpers import free_port, scrape
from tests.support.node_writer import write_hours

GROUPS = ("stats",)
DAY_MS = 24 * 3600 * 1000


def expected_of(*scenarios: Scenario) -> dict[str, Expected]:
    """Every liquidation of the scenarios, whole: what the node sees, and what watching all its makers sees."""
    out = {}
    for scenario in scenarios:
        for t in scenario.liquidations:
            key = event_key(t.tx_hash, t.coin, t.liquidated_user, t.timestamp)
            out[key] = Expected(key, "liquidation", t.timestamp, t)
    return out


def polls(producer: Proc) -> int:
    return len(re.findall(r" poll \d+ ", producer.stderr()))


async def test_a_node_catch_up_is_not_paced_by_the_exchange_budget(tmp_path: Path) -> None:
    """1,337 blocks of catch-up at a budget of 60 weight per minute: the old loop charged them 67 weight (items
    / 20) and slept 67 s before the next read; the liquidation appended after the catch-up waited that long."""
    catch_up = ScenarioBuilder(seed=61)
    makers = [catch_up.address() for _ in range(4)]
    for i in range(6):
        catch_up.market_liquidation(coin="ETH", side=("long", "short")[i % 2], makers=makers[i % 3 : i % 3 + 2])
        for maker in makers:
            catch_up.ordinary_fills(maker, 70)
    first = catch_up.build()
    blocks = blocks_from(first)
    assert len(blocks) >= 1_000
    later = ScenarioBuilder(seed=62, start_ms=catch_up.now_ms + 5_000)
    later.market_liquidation(coin="BTC", side="long", makers=makers[:2])
    second = later.build()
    node_dir = tmp_path / "node"
    write_hours(node_dir, blocks)

    async with Rig(tmp_path) as rig:
        await rig.start_stats("stats-1")
        producer = await rig.start_producer(
            "producer-1",
            (),
            HL_SOURCE="node",
            HL_NODE_PATH=str(node_dir),
            HL_NODE_FROM="0",
            HL_POLL_INTERVAL="0.5",
            HL_WEIGHT_PER_MINUTE="60",
        )
        # Published means the catch-up poll has flushed: what is appended now is for the next poll to read.
        caught_up = await wait_published(rig.db, rig.stream, expected_of(first), within=60, what="the catch-up")
        write_hours(node_dir, blocks_from(second, first_block=blocks[-1]["block_number"] + 1))
        appended = time.monotonic()
        await wait_published(rig.db, rig.stream, expected_of(second), within=10, what="the liquidation appended")
        latency = time.monotonic() - appended
        audit = await assert_delivered(
            rig.db, rig.stream, expected_of(first, second), groups=GROUPS, stats_keys=[rig.stats_key("stats-1")]
        )
        await rig.stop_all()
        assert not rig.crashes()
    log = producer.stderr()
    stretched = count_lines(log, "stretching the poll interval")
    Figures.from_audit(
        "node catch-up of 1,337 blocks at 60 weight/min",
        expected_of(first, second),
        audit,
        latency,
        blocks=len(blocks),
        catch_up_s=round(caught_up, 1),
        stretch_warnings=stretched,
    ).emit()
    assert stretched == 0, "the node source calls no API: nothing of its budget to stretch for"


async def test_a_fill_stamped_ten_days_ahead_does_not_blind_its_address(tmp_path: Path) -> None:
    m1, m2 = DEMO_MAKERS[:2]
    now_ms = int(time.time() * 1000)
    early = ScenarioBuilder(seed=71, start_ms=now_ms - 60_000)
    early.ordinary_fills(m1, 3, time_ms=now_ms - 50_000)
    early.ordinary_fills(m2, 3, time_ms=now_ms - 50_000)
    early.ordinary_fills(m1, 1, time_ms=now_ms + 10 * DAY_MS)  # the exchange's clock (or ours) gone wrong
    metrics_port = free_port()
    async with Rig(tmp_path) as rig:
        rig.exchange.show_at_poll_start(m1)  # fills appear between polls: not the mid-poll race here
        rig.exchange.load(early.build())
        await rig.start_stats("stats-1")
        producer = await rig.start_producer(
            "producer-1", (m1, m2), METRICS_PORT=str(metrics_port), METRICS_HOST="127.0.0.1"
        )
        await wait_for(lambda: polls(producer) >= 3, within=30, what="three polls")
        later = ScenarioBuilder(seed=72, start_ms=int(time.time() * 1000))
        later.market_liquidation(coin="SOL", side="short", makers=[m1, m2])
        later.market_liquidation(coin="ETH", side="long", makers=[m1])
        shown = later.build()
        rig.exchange.load(shown)
        shown_at = time.monotonic()
        expected = expected_of(shown)
        await wait_published(rig.db, rig.stream, expected, within=30, what="the liquidations after the bad fill")
        latency = time.monotonic() - shown_at
        audit = await assert_delivered(
            rig.db, rig.stream, expected, groups=GROUPS, stats_keys=[rig.stats_key("stats-1")]
        )
        metrics = await scrape(metrics_port)
        await rig.stop_all()
        assert not rig.crashes()
    log = producer.stderr()
    reported = count_lines(log, "skipped 1 fills stamped more than 60 s ahead of our clock")
    Figures.from_audit(
        "a fill stamped 10 days ahead",
        expected,
        audit,
        latency,
        polls=polls(producer),
        skipped_metric=int(metrics["hl_producer_fills_skipped_total"]),
        log_lines=reported,
    ).emit()
    assert metrics["hl_producer_fills_skipped_total"] == 1
    assert reported == 1, "counted and logged once, not at every poll that reads it again"
    assert "1 skipped (stamped in the future)" in log
