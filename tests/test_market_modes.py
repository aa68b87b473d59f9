"""What each mode covers, measured on the simulated market: the README's table (``pytest -s`` prints it).

The market (``producer.simulation.market``: heavy-tailed makers, liquidations absorbed by volume, ground truth) is
replayed block by block through the fake exchange into a producer: a hosted provider's feed, which sees every
liquidation, and the ws source with the fixed watchlist and with the adaptive one, WebSocket slots only and with the
REST tier. Each run's events are checked against the truth: nothing published twice (a partial event at most once,
then its complete one), every complete event exact, nothing published that the watchlist never watched, and the
coverage estimate near the share its makers really absorbed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

from plumbing.options import Secret
from producer.simulation.fake_exchange import FakeHyperliquid
from producer.simulation.fake_feeds import FakeFeeds
from producer.simulation.market import Market, MarketSpec, build_market
from producer.simulation.market_replay import MarketReplay
from producer.simulation.scenarios import LIQUIDATOR_VAULTS
from producer.sources.ws import WsSource
from schemas import LiquidationEvent
from tests.helpers import config_for, make_producer, stream_liquidations, wait_until
from tests.support.market_run import key_of, market_producer, touched

PINNED = LIQUIDATOR_VAULTS
"""The fixed watchlist: the simulated market's liquidator vaults, in every backstop and no market liquidation."""
COVERAGE_EVERY = 0.2


@dataclass
class Run:
    """What one producer published from the market, and what it watched."""

    entries: list[LiquidationEvent]
    watched: set[str]
    """Every address subscribed to or read as a maker at some point."""
    final: list[str]
    """The watchlist at the end, both tiers."""
    estimate: float
    """The coverage estimate of the final watchlist, by USD."""
    weight: int
    """The request weight the exchange counted for the whole run."""


async def _published_by(market: Market, stream: str, *, pinned: Sequence[str], adaptive: bool, polled: int = 0) -> Run:
    """Play ``market`` into a fresh fake exchange while a ws producer runs, completing what it sees; what it
    published once every liquidation its final watchlist (both tiers) can see is in, with its complete version."""
    async with market_producer(
        market, stream, pinned=pinned, adaptive=adaptive, adaptive_polled=polled, coverage_every=COVERAGE_EVERY
    ) as run:
        await run.play()
        producer = run.producer
        value = producer.metrics.registry.get_sample_value
        source = producer.source
        assert isinstance(source, WsSource)
        if adaptive:
            assert producer.adaptive is not None
            await producer.adaptive.rerank()  # on the whole market's ranking: the watchlist the test checks against
            tiers = {
                tier: value("hl_producer_watchlist_addresses", {"tier": tier}) or 0.0
                for tier in ("pinned", "pushed", "polled")
            }
            assert tiers == {"pinned": len(pinned), "pushed": len(source.watchlist) - len(pinned), "polled": polled}
            joined = value("hl_producer_watchlist_changes_total", {"change": "joined"}) or 0
            assert joined >= tiers["pushed"] + tiers["polled"]
            oldest = value("hl_producer_watchlist_polled_oldest_read_seconds")
            assert oldest is not None and (oldest > 0) == (polled > 0)
        final = [*source.watchlist, *source.polled.addresses]
        expected = set(touched(market, final))

        async def all_published() -> bool:
            entries = await stream_liquidations(stream)
            complete = {key_of(e.tx_hash, e.coin, e.liquidated_user) for e in entries if e.complete}
            return expected <= complete

        await wait_until(all_published, within=30, message="every liquidation the final watchlist took, completed")
        await asyncio.sleep(2 * COVERAGE_EVERY)  # a report on the final watchlist
        estimate = value("hl_producer_watch_coverage_overall_ratio", {"by": "usd"})
        assert estimate is not None
        liquidated = {m.truth.liquidated_user for m in market.liquidations}  # read by the completion, not watched
        read = {r["user"] for r in run.fake.requests_of("userFillsByTime")} - liquidated
        watched = run.subscribed() | read
        weight = sum(charge.weight for charge in run.fake.charges)
    return Run(await stream_liquidations(stream), watched, final, estimate, weight)


async def _published_by_hosted(market: Market, stream: str) -> list[LiquidationEvent]:
    """Play ``market`` into a fake Hydromancer feed while a hosted producer runs; its events once all are in."""
    async with FakeFeeds() as provider:
        fake = FakeHyperliquid()  # unused by the hosted source: config_for names an exchange
        config = config_for(
            fake,
            stream,
            source="hosted",
            hosted_dialect="hydromancer",
            hosted_url=provider.base_url.replace("http://", "ws://") + "/hydromancer/ws",
            hosted_key=Secret(provider.token),
            poll_interval=60,  # far longer than the test: the pushes wake the loop
        )
        producer = make_producer(config)
        running = asyncio.create_task(producer.run())
        try:
            await wait_until(
                lambda: any(c.session is not None and c.session.subscribed for c in provider.live("hydromancer")),
                within=15,
                message="the provider's feed subscribed",
            )
            await MarketReplay(market, feeds=provider).play()

            async def all_published() -> bool:
                return len(await stream_liquidations(stream)) >= len(market.liquidations)

            await wait_until(all_published, within=30, message="every liquidation published")
        finally:
            producer.stop()
            await asyncio.wait_for(running, 15)
    return await stream_liquidations(stream)


IDLE = tuple("0x" + f"{n:040x}" for n in range(0xF1, 0xF5))
"""Four addresses that never trade: pinned with the 5 vaults, nine in all, as the default watchlist pins."""


async def test_each_mode_publishes_what_its_watchlist_can_see_and_following_the_makers_sees_far_more(
    stream: str,
) -> None:
    """The README's table of what each ws mode covers on the simulated market, printed (``pytest -s``) and checked:
    nothing published twice (a partial event at most once, then its complete one), every complete event exact,
    the estimate near the truth, and each step of adapting well above the last."""
    market = build_market(MarketSpec(seed=1, trades=8_000, liquidations=400, backstops=16))  # a few seconds in all
    truth = {key_of(t.tx_hash, t.coin, t.liquidated_user): t for t in (m.truth for m in market.liquidations)}
    total_usd = sum((t.value_usd for t in truth.values()), Decimal(0))
    runs = {
        "the 5 vaults, adaptive off": (PINNED, False, 0),
        "5 vaults + 5 makers pushed": (PINNED, True, 0),
        "5 vaults + 5 pushed + 20 polled": (PINNED, True, 20),
        "9 pinned + 1 pushed + 20 polled": ((*PINNED, *IDLE), True, 20),
    }
    # The replay plays the market's hour in seconds, so its producers run without a budget: what each spent is
    # printed; tests/test_market_completion.py holds a producer to the budget over every rolling minute.
    rows = ["| mode | estimated | absorbed | liquidations published | USD published | complete | weight |"]
    rows.append("| --- | --- | --- | --- | --- | --- | --- |")
    hosted = await _published_by_hosted(market, f"{stream}:hosted")
    assert sorted(key_of(e.tx_hash, e.coin, e.liquidated_user) for e in hosted) == sorted(truth)  # each once
    assert all(
        e.complete and Decimal(e.size) == truth[key_of(e.tx_hash, e.coin, e.liquidated_user)].size for e in hosted
    )
    rows.append(f"| hosted (or node): every fill | - | 100% | 100% ({len(hosted)} of {len(truth)}) | 100% | 100% | 0 |")
    shares: list[tuple[float, float]] = []
    for name, (pinned, adaptive, polled) in runs.items():
        run = await _published_by(market, f"{stream}:{len(shares)}", pinned=pinned, adaptive=adaptive, polled=polled)
        versions: dict[tuple[str, str, str], list[LiquidationEvent]] = {}
        for entry in run.entries:
            versions.setdefault(key_of(entry.tx_hash, entry.coin, entry.liquidated_user), []).append(entry)
        for key, published in versions.items():
            assert [e.complete for e in published] in ([True], [False, True], [False]), f"{name}: {key} doubled"
            if published[-1].complete:
                assert Decimal(published[-1].size) == truth[key].size, f"{name}: {key} completed wrong"
        assert set(versions) <= set(touched(market, sorted(run.watched))), f"{name}: published what it never watched"
        usd = sum((truth[key].value_usd for key in versions), Decimal(0))
        count_share, usd_share = len(versions) / len(truth), float(usd / total_usd)
        complete = sum(1 for published in versions.values() if published[-1].complete) / len(versions)
        absorbed = market.absorbed(run.final).usd_share
        shares.append((count_share, usd_share))
        rows.append(
            f"| ws, {name} | {run.estimate:.1%} | {absorbed:.1%} | {count_share:.1%} ({len(versions)} of {len(truth)}) "
            f"| {usd_share:.1%} | {complete:.0%} | {run.weight:,} |"
        )
        if adaptive:
            assert abs(run.estimate - absorbed) < 0.05, f"{name}: the estimate strays from the truth"
        else:
            assert set(versions) == set(touched(market, PINNED)) and run.watched == set(PINNED)  # every backstop
    print("\n" + "\n".join(rows))
    fixed, pushed, both, default = shares
    assert pushed[0] >= fixed[0] + 0.2 and pushed[1] >= fixed[1] + 0.2
    assert both[0] >= pushed[0] + 0.1 and both[1] >= pushed[1] + 0.1
    assert default[0] >= fixed[0] + 0.2 and default[1] >= fixed[1] + 0.2
