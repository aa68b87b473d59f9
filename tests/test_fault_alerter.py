"""The alerter against faults of its own: a restart under its own name mid-send, a webhook down for a while, a
SIGKILL inside the cooldown window, a webhook that redirects.

Each ends with the suite's invariants (every liquidation alerted once, no dead letter, nothing pending), except
where the fault is meant to keep alerts back (the cooldown's): there, every liquidation must be either alerted or
counted in a summary.
"""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path

import pytest

from tests.faults.feed import Feed
from tests.faults.invariants import Figures, assert_delivered, groups_caught_up, settle, wait_for, wait_published
from tests.faults.procs import count_lines
from tests.faults.rig import Rig
from tests.faults.webhooks import HoldingWebhooks
from tests.helpers import free_port, scrape

GROUPS = ("alerter",)
OUTAGE_S = 20.0


async def test_an_alerter_restarted_under_its_name_sends_the_alert_it_was_sending_at_once(tmp_path: Path) -> None:
    """SIGKILLed while its webhook holds the first alert, restarted under the same name (compose's ``restart:``).

    Its old claim on that alert's marker names the same consumer with another process token: the new process takes
    it over at once instead of waiting for it to expire (it used to outlive the entry's five deliveries, and each
    delivery waited 15 s in line, stalling every other alert meanwhile).
    """
    feed = Feed(seed=131, events=20, shared=False, busy=False)
    hooks = HoldingWebhooks()
    await hooks.start()
    hooks.hold_paths.add("/hook")
    settings = {"ALERT_SINKS": "webhook", "ALERT_WEBHOOK_URL": hooks.url + "/hook", "ALERT_SINK_TIMEOUT_S": "10"}
    try:
        async with Rig(tmp_path) as rig:
            first = await rig.start_alerter("alerter-a", **settings)
            await rig.start_producer("producer-1", feed.watchlist)
            feed.release(rig.exchange)
            await wait_published(rig.db, rig.stream, feed.expected, within=60)
            await wait_for(lambda: len(hooks.held) > 0, within=30, what="the alerter to block in its webhook")
            first.kill()
            assert await first.wait() == -9
            hooks.hold_paths.clear()  # the webhook is fine again; only the process died
            restarted_at = time.monotonic()
            second = await rig.start_alerter("alerter-a", **settings)
            audit = await assert_delivered(
                rig.db, rig.stream, feed.expected, groups=GROUPS, alert_sink="webhook", within=60
            )
            recovery = time.monotonic() - restarted_at
            silence = hooks.longest_silence(restarted_at)
            await rig.stop_all()
            assert not rig.crashes()
    finally:
        await hooks.stop()
    liquidations = {e.key for e in feed.liquidations()}
    assert set(hooks.accepted) == liquidations, "every liquidation alerted"
    assert not [k for k, n in hooks.accepted.items() if n > 1], "no alert repeated"
    assert recovery < 12, f"alerting took {recovery:.1f} s after the restart (the old claim lived 40 s)"
    assert silence < 5, f"alerting stalled for {silence:.1f} s behind one claim"
    assert count_lines(second.stderr(), "claimed by a previous run") >= 1
    Figures.from_audit(
        "alerter SIGKILLed mid-send, restarted under its name",
        feed.expected,
        audit,
        recovery,
        alerts=sum(hooks.accepted.values()),
        longest_alert_silence_s=round(silence, 1),
    ).emit()


@pytest.mark.slow
async def test_a_webhook_outage_is_waited_out_and_every_alert_goes_out_when_it_is_back(tmp_path: Path) -> None:
    """The webhook answers 500 for 20 s while liquidations arrive (two attempts per delivery, 200 ms retries: the
    entries used to reach ``max_deliveries`` and be dead-lettered within that). Alerts must wait for the sink,
    visibly in the metrics, and all go out once it is back."""
    feed = Feed(seed=141, events=8, shared=False, busy=False)
    hooks = HoldingWebhooks()
    await hooks.start()
    hooks.down_status = 500
    port = free_port()
    try:
        async with Rig(tmp_path) as rig:
            await rig.start_alerter(
                "alerter-1", ALERT_SINKS="webhook", ALERT_WEBHOOK_URL=hooks.url + "/hook", METRICS_PORT=str(port)
            )
            await rig.start_producer("producer-1", feed.watchlist)
            feed.release(rig.exchange)
            await wait_for(lambda: hooks.refused > 0, within=30, what="the first refused alert")
            down_at = time.monotonic()
            await wait_published(rig.db, rig.stream, feed.expected, within=60)
            waiting = 0.0
            oldest = 0.0
            while time.monotonic() - down_at < OUTAGE_S:
                metrics = await scrape(port)
                for name, value in metrics.items():
                    if name.startswith("hl_consumer_alerts_waiting{"):
                        waiting = max(waiting, value)
                    if name.startswith("hl_consumer_alert_oldest_wait_seconds{"):
                        oldest = max(oldest, value)
                await asyncio.sleep(0.5)  # the outage lasts a fixed time; sample the metrics through it
            refused = hooks.refused
            hooks.down_status = None
            back_at = time.monotonic()
            audit = await assert_delivered(
                rig.db, rig.stream, feed.expected, groups=GROUPS, alert_sink="webhook", within=60
            )
            recovery = time.monotonic() - back_at
            await rig.stop_all()
            assert not rig.crashes()
    finally:
        await hooks.stop()
    assert set(hooks.accepted) == {e.key for e in feed.liquidations()}
    assert not [k for k, n in hooks.accepted.items() if n > 1], "no alert repeated"
    assert waiting >= 1 and oldest > 3, f"the backlog was not visible: waiting {waiting}, oldest {oldest:.1f} s"
    Figures.from_audit(
        f"webhook down (HTTP 500) for {OUTAGE_S:g} s",
        feed.expected,
        audit,
        recovery,
        refused=refused,
        alerts=sum(hooks.accepted.values()),
        most_waiting=int(waiting),
        oldest_wait_s=round(oldest, 1),
    ).emit()


SUMMARY = re.compile(r"… and (\d+) more ")


@pytest.mark.slow
async def test_alerts_held_back_when_the_alerter_is_killed_are_summarised_after_its_restart(tmp_path: Path) -> None:
    """One alert per coin per 8 s: the rest are held back for a summary, their entries acknowledged. A SIGKILL
    inside the window used to lose them (neither alerted nor summarised); the restarted process must send the
    summary from what it kept in Redis."""
    feed = Feed(seed=151, events=16, shared=False, busy=False)
    liquidations = feed.liquidations()
    settings = {"ALERT_BURST": "1", "ALERT_COOLDOWN_S": "8"}
    async with Rig(tmp_path) as rig:
        first = await rig.start_alerter("alerter-a", **settings)
        await rig.start_producer("producer-1", feed.watchlist)
        feed.release(rig.exchange)
        await wait_published(rig.db, rig.stream, feed.expected, within=60)
        await wait_for(lambda: groups_caught_up(rig.db, rig.stream, GROUPS), within=30, what="every entry handled")
        before = first.stdout()  # both lives write to one file: the restarted one's lines come after these
        alerted = len(before.splitlines())
        held = len(liquidations) - alerted
        assert held > 0 and not SUMMARY.search(before), "the kill must land inside the window"
        first.kill()
        assert await first.wait() == -9
        restarted_at = time.monotonic()
        second = await rig.start_alerter("alerter-a", **settings)

        def summarised() -> int:
            return sum(int(m.group(1)) for m in SUMMARY.finditer(second.stdout()[len(before) :]))

        await wait_for(lambda: summarised() >= held, within=30, what=f"summaries of the {held} held-back alerts")
        recovery = time.monotonic() - restarted_at
        audit = await settle(rig.db, rig.stream, feed.expected, groups=GROUPS)
        await rig.stop_all()
        assert not rig.crashes()
    assert audit.clean, audit.describe()
    assert summarised() == held, "each held-back liquidation summarised once"
    after = second.stdout()[len(before) :].splitlines()
    assert after and all(SUMMARY.search(line) for line in after), "summaries only: nothing alerted twice"
    Figures.from_audit(
        "alerter SIGKILLed inside the cooldown window",
        feed.expected,
        audit,
        recovery,
        alerted=alerted,
        held_back=held,
        summarised=summarised(),
    ).emit()


@pytest.mark.slow
async def test_a_webhook_that_redirects_is_not_followed_and_not_taken_for_success(tmp_path: Path) -> None:
    """The webhook answers 307 (then 302) pointing at another origin. A 307 used to re-post every alert there and a
    302 to become a GET without the alert, counted as sent. Neither may reach the other origin or count as sent;
    the log must say where it pointed. Once the webhook answers again, every alert goes out once."""
    feed = Feed(seed=161, events=10, shared=False, busy=False)
    hooks, elsewhere = HoldingWebhooks(), HoldingWebhooks()
    await hooks.start()
    await elsewhere.start()
    try:
        async with Rig(tmp_path) as rig:
            alerter = await rig.start_alerter("alerter-1", ALERT_SINKS="webhook", ALERT_WEBHOOK_URL=hooks.url + "/hook")
            await rig.start_producer("producer-1", feed.watchlist)
            for status in (307, 302):
                hooks.redirect = (status, f"{elsewhere.url}/collect")
                enough = hooks.redirected + 3
                if status == 307:
                    feed.release(rig.exchange)
                    await wait_published(rig.db, rig.stream, feed.expected, within=60)
                await wait_for(lambda: hooks.redirected >= enough, within=30, what=f"alerts answered {status}")  # noqa: B023
            redirected = hooks.redirected
            hooks.redirect = None
            back_at = time.monotonic()
            audit = await assert_delivered(
                rig.db, rig.stream, feed.expected, groups=GROUPS, alert_sink="webhook", within=60
            )
            recovery = time.monotonic() - back_at
            await rig.stop_all()
            assert not rig.crashes()
    finally:
        await hooks.stop()
        await elsewhere.stop()
    assert elsewhere.requests == [], "a redirect was followed to another origin"
    assert set(hooks.accepted) == {e.key for e in feed.liquidations()}
    assert not [k for k, n in hooks.accepted.items() if n > 1], "no alert repeated"
    log = alerter.stderr()
    assert count_lines(log, f"HTTP 307 redirecting to {elsewhere.url}/collect") >= 1
    assert count_lines(log, f"HTTP 302 redirecting to {elsewhere.url}/collect") >= 1
    Figures.from_audit(
        "webhook redirecting (307, then 302) to another origin",
        feed.expected,
        audit,
        recovery,
        redirects_answered=redirected,
        followed=len(elsewhere.requests),
        alerts=sum(hooks.accepted.values()),
    ).emit()
