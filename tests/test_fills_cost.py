"""What a poll of the fills source costs against the exchange's request-weight budget, on the fake exchange.

The fake records every request, and the client's budget counts the weight the exchange would charge (20 a request
plus one per 20 items returned), so the figures are exact. The default watchlist is read one address after
another; the assertions are on request counts, which are deterministic; the weights and the poll intervals they
allow are printed.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from producer.client import HyperliquidClient, RetryPolicy
from producer.config import HLP, HLP_LIQUIDATOR, HLP_STRATEGY_A, HLP_STRATEGY_B, HLP_STRATEGY_X, ProducerConfig
from producer.config import PROTOCOL_VAULTS as WATCHLIST
from producer.ratelimit import BASE_WEIGHT, WeightBudget
from producer.simulation.fake_exchange import FakeHyperliquid
from producer.simulation.scenarios import ScenarioBuilder
from producer.sources import FillsSource
from producer.sources.base import PollResult

T0_MS = 1_760_000_000_000
INTERVAL_MS = 10_000
MAKERS = (HLP_STRATEGY_A, HLP_STRATEGY_B, HLP_STRATEGY_X)
"""The busy vaults of a typical load: the HLP strategies make markets all the time."""
TYPICAL_FILLS = 20
"""Fills each strategy makes per interval in the typical load (an assumption, printed with the figures)."""
UNLIMITED = 1e12
"""A budget that never makes a request wait: the test measures weight, it does not spend time."""


@dataclass
class Cost:
    requests: list[str]
    """The addresses read, in order."""
    weight: float

    def interval_s(self, weight_per_minute: float | None = None) -> float:
        """The poll interval this weight allows: the configured one, or the one the loop stretches it to."""
        config = ProducerConfig()
        per_minute = config.weight_per_minute if weight_per_minute is None else weight_per_minute
        return max(config.poll_interval, WeightBudget(per_minute).seconds_for(self.weight))


class Market:
    """The fake exchange, a fills source over the default watchlist, and a clock that moves one interval a poll."""

    def __init__(self, fake: FakeHyperliquid, client: HyperliquidClient) -> None:
        self.fake = fake
        self.client = client
        self.source = FillsSource(client, WATCHLIST, lookback_ms=INTERVAL_MS)
        self.now_ms = T0_MS
        self.seed = 100

    def builder(self) -> ScenarioBuilder:
        self.seed += 1
        return ScenarioBuilder(seed=self.seed, start_ms=self.now_ms)

    def typical_interval(self, builder: ScenarioBuilder, *, after_ms: int = 1_500) -> None:
        """The strategies' fills of one interval, the first ``after_ms`` into it."""
        for maker in MAKERS:
            builder.ordinary_fills(maker, TYPICAL_FILLS, time_ms=self.now_ms + after_ms)

    async def poll(self, builder: ScenarioBuilder | None = None) -> tuple[PollResult, Cost]:
        """Load what ``builder`` holds, move the clock one interval on, poll once: its result and cost."""
        if builder is not None:
            self.fake.load(builder.build())
        self.now_ms += INTERVAL_MS
        requests, spent = len(self.fake.requests), self.client.budget.spent if self.client.budget else 0.0
        result = await self.source.poll(self.now_ms)
        assert not result.errors
        reads = [str(body["user"]) for body in self.fake.requests[requests:]]
        weight = (self.client.budget.spent if self.client.budget else 0.0) - spent
        return result, Cost(reads, weight)


@asynccontextmanager
async def market(fake: FakeHyperliquid) -> AsyncIterator[Market]:
    budget = WeightBudget(UNLIMITED)
    client = HyperliquidClient(fake.url, retry=RetryPolicy(attempts=1), budget=budget, rng=random.Random(1))
    try:
        m = Market(fake, client)
        await m.poll()  # the first poll: nothing before it to compare with
        yield m
    finally:
        await client.close()


def show(what: str, cost: Cost) -> None:
    print(
        f"\n{what}: {len(cost.requests)} requests, {cost.weight:.0f} weight -> poll every {cost.interval_s():.1f} s "
        f"at the default budget ({ProducerConfig().weight_per_minute:.0f}/min), {cost.interval_s(1200):.1f} s at "
        "the exchange's 1,200/min"
    )


async def test_a_quiet_poll_reads_each_watched_address_once(fake_hl: FakeHyperliquid) -> None:
    async with market(fake_hl) as m:
        _, cost = await m.poll()
    show("quiet poll of the 9 default addresses", cost)
    assert cost.requests == list(WATCHLIST)
    assert cost.weight == BASE_WEIGHT * len(WATCHLIST)


async def test_a_poll_finding_a_liquidation_reads_again_only_the_addresses_read_before_it(
    fake_hl: FakeHyperliquid,
) -> None:
    """A backstop liquidation at the fifth address (HLP liquidator 1). In a quiet market, the four addresses read
    before it returned nothing newer, so each may lack a leg and is read again; in a typical one, the busy
    strategies returned fills after it, which only a later block could carry, and HLP alone is read again."""
    async with market(fake_hl) as m:
        quiet = m.builder()
        quiet.backstop_liquidation(vault=HLP_LIQUIDATOR, time_ms=m.now_ms + 1_000)
        found_quiet, quiet_cost = await m.poll(quiet)

        typical = m.builder()
        typical.backstop_liquidation(vault=HLP_LIQUIDATOR, time_ms=m.now_ms + 1_000)
        m.typical_interval(typical)
        found_typical, typical_cost = await m.poll(typical)

        _, after = await m.poll()
    show("poll finding one liquidation, quiet market", quiet_cost)
    show(f"poll finding one liquidation, {TYPICAL_FILLS} fills per strategy", typical_cost)
    show("the quiet poll after it", after)
    before = list(WATCHLIST[: WATCHLIST.index(HLP_LIQUIDATOR)])
    assert len(found_quiet.events) == len(found_typical.events) == 1, "each published by the poll that saw it"
    assert quiet_cost.requests == [*WATCHLIST, *before]
    assert typical_cost.requests == [*WATCHLIST, HLP]
    assert after.requests == list(WATCHLIST), "what was read is not read again"


async def test_the_default_watchlist_polls_once_per_address_through_a_typical_minute(
    fake_hl: FakeHyperliquid,
) -> None:
    """Six polls (a minute at 10 s): the strategies trade every interval and one liquidation lands in it. Every
    poll reads each address once, and the liquidation's poll one address more (HLP, read before it, quiet)."""
    async with market(fake_hl) as m:
        costs: list[Cost] = []
        published = 0
        for i in range(6):
            builder = m.builder()
            m.typical_interval(builder)
            if i == 2:
                builder.backstop_liquidation(vault=HLP_LIQUIDATOR, time_ms=m.now_ms + 1_000)
            result, cost = await m.poll(builder)
            costs.append(cost)
            published += len(result.events)
    for i, cost in enumerate(costs):
        show(f"typical poll {i + 1}", cost)
    minute = Cost([a for c in costs for a in c.requests], sum(c.weight for c in costs))
    print(f"\nthe minute: {len(minute.requests)} requests, {minute.weight:.0f} weight")
    assert published == 1
    assert [len(c.requests) for c in costs] == [9, 9, 10, 9, 9, 9]
