"""The exchange misbehaving every way it can: the producer stays up, invents nothing, says so, and catches up.

429s for a while (a few seconds in the default run, a full minute in the slow one), 500/502/503, answers slower
than the timeout, connections reset, truncated and non-JSON bodies, valid JSON of the wrong shape, wrong types,
huge answers (a huge list of junk; huge unknown fields), unknown fields, hostile strings (control characters,
10,000-character coin names) in the data itself. Every fault must show in the logs and in the metrics, and the
stream must end up with exactly the truth, amounts included.

Liquidations absorbed by two watched makers are the hard case: a fault on one maker at the poll that first sees
the liquidation must not get it published with the other maker's leg only (its key would then keep the complete
event out). The small tests after the scenarios pin that down fault by fault.
"""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path

import aiohttp
import pytest

from producer.simulation.fake_exchange import (
    BAD_GATEWAY,
    DISCONNECT,
    EXTRA_FIELD,
    NOT_JSON,
    RATE_LIMITED,
    SERVER_ERROR,
    TRUNCATED_JSON,
    UNAVAILABLE,
    WRONG_TYPES,
    Fault,
)
from producer.simulation.scenarios import DEMO_MAKERS, ScenarioBuilder
from schemas import event_key
from tests.faults.chaos import for_user, huge_extra_field, huge_junk
from tests.faults.feed import BUSY, HOSTILE_COINS, Expected, Feed
from tests.faults.invariants import Figures, assert_delivered, audit_stream, settle, wait_for, wait_published
from tests.faults.procs import Proc, count_lines
from tests.faults.rig import Rig
from tests.helpers import api_errors, free_port, scrape

GROUPS = ("stats",)


async def health(port: int) -> int:
    async with aiohttp.ClientSession() as session, session.get(f"http://127.0.0.1:{port}/healthz") as resp:
        return resp.status


async def run_exchange_faults(tmp_path: Path, *, rate_limit_s: float, junk_items: int) -> None:
    feed = Feed(seed=404, events=60, shared=True, hostile=True)
    name = f"exchange faults (429 for {rate_limit_s:g} s + every other kind)"
    m1, m2, m3 = feed.makers
    v1, v2 = feed.vaults
    metrics_port = free_port()
    async with Rig(tmp_path) as rig:
        db, stream, exchange = rig.db, rig.stream, rig.exchange
        exchange.show_at_poll_start(feed.watchlist[0])  # see ChaosExchange: not the read-order race here
        await rig.start_stats("stats-1")
        producer = await rig.start_producer(
            "producer-1",
            feed.watchlist,
            HL_HTTP_TIMEOUT="1",
            HL_HTTP_ATTEMPTS="3",
            METRICS_PORT=str(metrics_port),
            METRICS_HOST="127.0.0.1",
            HEALTH_STALE_AFTER=str(max(1.0, rate_limit_s / 3)),
        )
        feed.release_fraction(exchange, 1 / 3)
        await wait_published(db, stream, feed.shown(), within=60)

        # 1. Rate-limited for a while: every request of every address answers 429.
        until = exchange.fail_for(rate_limit_s, RATE_LIMITED)
        feed.release_fraction(exchange, 2 / 3)
        statuses: set[int] = set()
        while time.monotonic() < until - 0.3:  # the margin: right after the 429s the producer may read at once
            statuses.add(await health(metrics_port))
            assert not await _published_all(rig, feed.shown()), "nothing can have been read during the 429s"
            await asyncio.sleep(0.2)  # pacing the samples, not waiting for anything
        await asyncio.sleep(max(0.0, until - time.monotonic()))
        ended = time.monotonic()
        await wait_published(db, stream, feed.shown(), within=60, what="the events shown during the 429s")
        recovery = time.monotonic() - ended
        await wait_for(lambda: _healthy(metrics_port), within=30, what="/healthz back to 200")
        assert 503 in statuses, "/healthz must say the producer is stuck while nothing can be read"

        # 2. Every other kind of fault, one after another, while the rest of the data arrives.
        faults: list[tuple[Fault, str, int]] = [
            (SERVER_ERROR, m1, 2),
            (BAD_GATEWAY, m2, 1),
            (UNAVAILABLE, m3, 1),
            (Fault.delay(3), v1, 2),
            (DISCONNECT, v2, 2),
            (TRUNCATED_JSON, m1, 1),
            (NOT_JSON, m2, 1),
            (Fault.json({"error": "oops"}), m3, 1),
            (Fault.json(None), v1, 1),
            (WRONG_TYPES, v2, 1),
            (huge_junk(junk_items), m1, 1),
            (EXTRA_FIELD, m2, 3),
            (huge_extra_field(256), BUSY, 2),
            (huge_extra_field(256), m3, 1),
        ]
        for fault, address, times in faults:
            exchange.fail_next(fault, times=times, match=for_user(address))
        feed.release(exchange)
        await wait_for(lambda: exchange.pending_faults == 0, within=120, what="every fault to be served")
        audit = await settle(db, stream, feed.expected, groups=GROUPS, stats_keys=[rig.stats_key("stats-1")])
        metrics = await scrape(metrics_port)
        assert producer.alive, "the producer must stay up through all of it"
        await rig.stop_all()
        assert not rig.crashes()

    served = exchange.served
    log = producer.stderr()
    skipped_lines = count_lines(log, "skipped a malformed item")
    Figures.from_audit(
        name,
        feed.expected,
        audit,
        recovery,
        faults_served=sum(served.values()),
        polls=_polls(producer),
        log_lines_skipped_items=skipped_lines,
        health_503_seen=503 in statuses,
    ).emit()
    assert audit.clean, audit.describe()
    expectations = {
        "rate_limited": served["http_429"],
        "server_errors": served["http_500"] + served["http_502"] + served["http_503"],
        "timeouts": served["timeout"],
        "connection_errors": served["disconnect"],
    }
    for kind, count in expectations.items():
        assert api_errors(metrics, kind) == count, f"{kind}: metrics say {api_errors(metrics, kind)}, served {count}"
    malformed_answers = served["raw"] + served["json"] + served["wrong_types"]
    assert api_errors(metrics, "malformed") >= malformed_answers
    assert api_errors(metrics, "skipped_items") >= junk_items
    for needle in (
        "rate limited (HTTP 429)",
        "HTTP 500",
        "no answer within",
        "connection error",
        "answer is not a JSON list",
        "skipped a malformed item",
    ):
        assert needle in log, f"the log never says {needle!r}"
    hostile = [e for e in audit.events if e.coin not in {"BTC", "ETH", "SOL", "AVAX", "HYPE", "xyz:CRWV"}]
    assert len(hostile) == 2, "the liquidations with hostile coin names reach the stream intact"


async def _published_all(rig: Rig, shown: dict[str, Expected]) -> bool:
    audit = await audit_stream(rig.db, rig.stream, shown)
    return not audit.lost


async def _healthy(port: int) -> bool:
    return await health(port) == 200


def _polls(producer: Proc) -> int:
    return len(re.findall(r" poll \d+ ", producer.stderr()))


async def test_exchange_faults_with_a_few_seconds_of_429s(tmp_path: Path) -> None:
    await run_exchange_faults(tmp_path, rate_limit_s=3, junk_items=5_000)


@pytest.mark.slow
@pytest.mark.timeout(300)
async def test_exchange_faults_with_a_minute_of_429s(tmp_path: Path) -> None:
    await run_exchange_faults(tmp_path, rate_limit_s=60, junk_items=100_000)


ONE_MAKER_FAULTS = {
    "truncated-json": (TRUNCATED_JSON, 2),
    "429-until-retries-run-out": (RATE_LIMITED, 6),
    "wrong-types": (WRONG_TYPES, 2),
    "every-item-junk": (huge_junk(50), 2),
}
"""Each fault twice in a row: a fault that outlasts one sweep of the watchlist (the producer sweeps again at once
to confirm what it saw first)."""
DEFAULT_RUN = ("truncated-json", "wrong-types")
"""One fault per way the producer handles it (an error raised; every item skipped) in the default run; the rest
in the slow one."""


@pytest.mark.parametrize(
    "fault_name",
    [name if name in DEFAULT_RUN else pytest.param(name, marks=pytest.mark.slow) for name in ONE_MAKER_FAULTS],
)
async def test_a_fault_on_one_watched_maker_does_not_publish_half_a_liquidation(
    tmp_path: Path, fault_name: str
) -> None:
    """Two watched makers absorbed one liquidation; at the poll that first sees it, one maker's answer is broken.

    The event must still be published with both legs (as the truth has it), not with the leg that happened to be
    readable: once published, its key is taken, and the missing leg is never added. An answer whose every item
    is malformed (wrong types, junk) is as unreadable as one that is not JSON at all.
    """
    fault, times = ONE_MAKER_FAULTS[fault_name]
    m1, m2 = DEMO_MAKERS[:2]
    builder = ScenarioBuilder(seed=5)
    truth = builder.market_liquidation(coin="ETH", side="short", makers=[m1, m2])
    key = event_key(truth.tx_hash, truth.coin, truth.liquidated_user, truth.timestamp)
    expected = {key: Expected(key, "liquidation", truth.timestamp, truth)}
    async with Rig(tmp_path) as rig:
        producer = await rig.start_producer("producer-1", (m1, m2), HL_POLL_INTERVAL="0.3")
        await wait_for(lambda: _polls(producer) >= 1, within=30, what="a first poll")
        seen = _polls(producer)
        await wait_for(lambda: _polls(producer) > seen, within=30, interval=0.005, what="a poll to end")
        # The loop now sleeps 0.3 s: the next poll reads m1 (with the new fills), then m2, which is broken.
        rig.exchange.fail_next(fault, times=times, match=for_user(m2))
        rig.exchange.load(builder.build())
        await wait_published(rig.db, rig.stream, expected, within=30)
        done = _polls(producer)
        await wait_for(lambda: _polls(producer) >= done + 2, within=30, what="two more polls (m2 read again)")
        audit = await audit_stream(rig.db, rig.stream, expected)
        await rig.stop_all()
    assert rig.exchange.pending_faults == 0
    assert not audit.mismatched, "published with one leg missing: " + "; ".join(audit.mismatched)


async def test_after_an_outage_of_every_address_a_liquidation_still_waits_for_its_last_maker(tmp_path: Path) -> None:
    """Every address rate-limited for a while (the exchange's 429s hit all of them), then one maker a poll longer.

    While every address fails, no address is failing on its own, so none may use up its allowance of held polls
    (after which a failing address stops holding the others back): when the others come back, a liquidation the
    still-failing maker shares must wait for it, not be published with half its legs.
    """
    m1, m2 = DEMO_MAKERS[:2]
    builder = ScenarioBuilder(seed=6)
    truth = builder.market_liquidation(coin="BTC", side="long", makers=[m1, m2])
    key = event_key(truth.tx_hash, truth.coin, truth.liquidated_user, truth.timestamp)
    expected = {key: Expected(key, "liquidation", truth.timestamp, truth)}
    async with Rig(tmp_path) as rig:
        producer = await rig.start_producer("producer-1", (m1, m2), HL_HTTP_ATTEMPTS="1", HL_POLL_INTERVAL="0.2")
        await wait_for(lambda: _polls(producer) >= 1, within=30, what="a first poll")
        # About ten polls with every address failing, then two or three with m1 failing alone: fewer than the
        # allowance of held polls (six), after which m1 would be given up on by design.
        rig.exchange.fail_for(2.0, RATE_LIMITED)
        m1_until = rig.exchange.fail_for(2.5, RATE_LIMITED, match=for_user(m1))
        rig.exchange.load(builder.build())
        await wait_published(rig.db, rig.stream, expected, within=30)
        await wait_for(lambda: time.monotonic() > m1_until, within=30, what="m1 back", interval=0.1)
        done = _polls(producer)
        await wait_for(lambda: _polls(producer) >= done + 2, within=30, what="two more polls (m1 read again)")
        audit = await audit_stream(rig.db, rig.stream, expected)
        await rig.stop_all()
    failed_polls = len(re.findall(r" 2 errors", producer.stderr()))
    assert failed_polls > 6, "every address failed for more polls than a failing address may hold the others"
    assert not audit.mismatched, "published with one leg missing: " + "; ".join(audit.mismatched)


RECORD = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (DEBUG|INFO|WARNING|ERROR|CRITICAL) ")
"""How every line our processes log begins (``%(asctime)s %(levelname)s``)."""


async def test_hostile_coin_names_cannot_forge_log_lines_or_alerts(tmp_path: Path) -> None:
    """A coin name is the exchange's data. A newline in it must not begin a line of our logs (a forged record,
    here ``... ERROR forged log line``), nor split the alerter's one-line-per-alert output."""
    feed = Feed(seed=707, events=12, shared=False, hostile=True, busy=False)
    hostile = [e for e in feed.liquidations() if e.truth is not None and e.truth.coin in HOSTILE_COINS]
    assert len(hostile) == 2
    async with Rig(tmp_path) as rig:
        alerter = await rig.start_alerter("alerter-1")
        producer = await rig.start_producer("producer-1", feed.watchlist)
        feed.release(rig.exchange)
        await assert_delivered(rig.db, rig.stream, feed.expected, groups=("alerter",), alert_sink="stdout")
        await rig.stop_all()
    forged = {
        proc.name: [line[:80] for line in proc.stderr().splitlines() if line and not RECORD.match(line)]
        for proc in (producer, alerter)
    }
    assert not any(forged.values()), f"lines that are not our log records: {forged}"
    alert_lines = alerter.stdout().splitlines()
    assert len(alert_lines) == len(feed.liquidations()), "one line per alert"


async def test_one_huge_malformed_answer_logs_a_bounded_number_of_lines(tmp_path: Path) -> None:
    """An answer of 20,000 junk items is one fault: it must be counted in full (skipped_items) but logged in a
    bounded number of lines, not one ERROR line per item (100,000 items wrote 17 MB of log in one second)."""
    items = 20_000
    metrics_port = free_port()
    feed = Feed(seed=9, events=3, shared=False, busy=False)
    async with Rig(tmp_path) as rig:
        feed.release(rig.exchange)
        rig.exchange.fail_next(huge_junk(items), match=for_user(feed.makers[0]))
        producer = await rig.start_producer(
            "producer-1", feed.watchlist, METRICS_PORT=str(metrics_port), METRICS_HOST="127.0.0.1"
        )
        await wait_published(rig.db, rig.stream, feed.expected, within=30)
        metrics = await scrape(metrics_port)
        await rig.stop_all()
    assert api_errors(metrics, "skipped_items") == items, "every skipped item is counted"
    lines = count_lines(producer.stderr(), "skipped a malformed item")
    assert lines <= 20, f"{lines} log lines for one malformed answer"


async def test_a_liquidation_appearing_between_the_reads_of_its_two_makers_is_published_whole(tmp_path: Path) -> None:
    """No fault at all: a poll reads the watched addresses one after the other, and a block lands in between.

    The poll read maker 1 before the liquidation existed and reads maker 2 after: it sees one leg. Published now,
    the event is half the truth for good (its key keeps the whole one out). It must wait until every watched address
    has been read past its time. On a live exchange blocks land every moment, so this happens without any fault:
    the soak shows it about twice per 1,800 events.
    """
    m1, m2 = DEMO_MAKERS[:2]
    now_ms = int(time.time() * 1000)
    builder = ScenarioBuilder(seed=8, start_ms=now_ms)
    truth = builder.market_liquidation(coin="SOL", side="long", makers=[m1, m2], time_ms=now_ms + 500)
    key = event_key(truth.tx_hash, truth.coin, truth.liquidated_user, truth.timestamp)
    expected = {key: Expected(key, "liquidation", truth.timestamp, truth)}
    async with Rig(tmp_path) as rig:
        producer = await rig.start_producer("producer-1", (m1, m2), HL_POLL_INTERVAL="0.3")
        await wait_for(lambda: _polls(producer) >= 1, within=30, what="a first poll")
        seen = _polls(producer)
        await wait_for(lambda: _polls(producer) > seen, within=30, interval=0.005, what="a poll to end")
        # The next poll reads m1 (nothing new yet); the block lands just before m2 is read.
        rig.exchange.before_answer(for_user(m2), lambda: rig.exchange.load(builder.build()))
        await wait_published(rig.db, rig.stream, expected, within=30)
        done = _polls(producer)
        await wait_for(lambda: _polls(producer) >= done + 2, within=30, what="two more polls")
        audit = await audit_stream(rig.db, rig.stream, expected)
        await rig.stop_all()
    assert not audit.mismatched, "published with one leg missing: " + "; ".join(audit.mismatched)
