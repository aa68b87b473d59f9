"""The invariants every scenario ends with, and the one line of figures it prints.

1. Every expected event is in the stream exactly once, with the exact amounts of the truth; nothing else is.
2. Every consumer group processed every entry: nothing pending, nothing undelivered, no dead letter.
3. The stats consumer's published totals equal the truth's (count, USD value, by coin, ADL apart).
4. (Where the alerter runs with a threshold of 0) every liquidation's alert is marked sent.
5. No process exited on its own (see :func:`tests.faults.procs.crashes`).

Waiting is always "poll until true or until a deadline", never a fixed sleep: these machines are small and shared.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import os
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, cast

import redis.exceptions

from plumbing.redis_connect import RedisClient
from plumbing.stream_keys import stream_key
from producer.simulation.scenarios import ExpectedLiquidation
from schemas import EntryError, Event, LiquidationEvent, decode_entry
from tests.faults.feed import Expected

REDIS_DOWN = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError)


async def wait_for(
    condition: Callable[[], bool | Awaitable[bool]],
    *,
    within: float,
    what: str,
    interval: float = 0.1,
    detail: Callable[[], Awaitable[str] | str] | None = None,
) -> float:
    """Poll ``condition`` until true; returns the seconds it took. Redis errors count as "not yet" (a check may
    run while the scenario's Redis is down). On timeout, fail with ``what`` and ``detail()``."""
    started = time.monotonic()
    while True:
        try:
            result = condition()
            if inspect.isawaitable(result):
                result = await result
        except REDIS_DOWN:
            result = False
        if result:
            return time.monotonic() - started
        if time.monotonic() - started > within:
            extra = ""
            if detail is not None:
                shown = detail()
                extra = "\n" + (await shown if inspect.isawaitable(shown) else shown)
            raise AssertionError(f"timed out after {within:g} s waiting for {what}{extra}")
        await asyncio.sleep(interval)


# --- the stream ------------------------------------------------------------------------------------------------


RawEntry = tuple[bytes, dict[bytes, bytes]]


def raw_entries(reply: object) -> list[RawEntry]:
    """An XRANGE reply of a client that does not decode responses. redis-py types one reply for every client
    (ids and names ``bytes | str``, fields maybe ``None``); from a raw client an XRANGE gives bytes only."""
    assert isinstance(reply, list), f"not an XRANGE reply: {reply!r}"
    return cast(list[RawEntry], reply)


async def read_stream(client: RedisClient, stream: str) -> list[RawEntry]:
    """Every entry, paged (XRANGE), as raw fields."""
    entries: list[RawEntry] = []
    start: bytes | str = "-"
    while True:
        page = raw_entries(await client.xrange(stream, min=start, max="+", count=2_000))
        entries.extend(page)
        if len(page) < 2_000:
            return entries
        start = b"(" + page[-1][0]


async def stream_keys(client: RedisClient, stream: str) -> list[str]:
    return [fields.get(b"key", b"").decode() for _, fields in await read_stream(client, stream)]


async def stream_longer(client: RedisClient, stream: str, length: int) -> bool:
    """The stream grew past ``length`` (to catch a flow of entries at its start)."""
    return int(await client.xlen(stream)) > length


@dataclass
class StreamAudit:
    """What the stream holds, compared with the truth."""

    entries: int = 0
    keys: Counter[str] = field(default_factory=Counter)
    events: list[Event] = field(default_factory=list)
    lost: list[str] = field(default_factory=list)
    invented: list[str] = field(default_factory=list)
    mismatched: list[str] = field(default_factory=list)
    undecodable: int = 0

    @property
    def duplicates(self) -> int:
        return sum(n - 1 for n in self.keys.values() if n > 1)

    @property
    def clean(self) -> bool:
        return not (self.duplicates or self.lost or self.invented or self.mismatched or self.undecodable)

    def describe(self, limit: int = 5) -> str:
        repeated = [k for k, n in self.keys.items() if n > 1]
        return (
            f"{self.entries} entries, {self.duplicates} duplicates {repeated[:limit]}, lost {self.lost[:limit]}, "
            f"invented {self.invented[:limit]}, mismatched {self.mismatched[:limit]}, "
            f"undecodable {self.undecodable}"
        )


def mismatch(event: Event, want: Expected) -> str | None:
    """How a published liquidation differs from its truth (side, method, exact sums, trades, time), if it does."""
    if want.truth is None or not isinstance(event, LiquidationEvent):
        return None
    t = want.truth
    got = (event.liquidation_side, event.method, event.size, event.value_usd, set(event.tids), event.timestamp)
    if got == (t.side, t.method, t.size, t.value_usd, set(t.tids), t.timestamp):
        return None
    return (
        f"{want.key}: published {event.liquidation_side} {event.method} size {event.size} value "
        f"{event.value_usd} tids {sorted(event.tids)}; truth {t.side} {t.method} size {t.size} "
        f"value {t.value_usd} tids {sorted(t.tids)}"
    )


async def audit_stream(client: RedisClient, stream: str, expected: Mapping[str, Expected]) -> StreamAudit:
    audit = StreamAudit()
    for _, fields in await read_stream(client, stream):
        audit.entries += 1
        try:
            event = decode_entry(fields)
        except EntryError:
            audit.undecodable += 1
            continue
        key = event.key
        if fields.get(b"key", b"").decode() != key:
            audit.mismatched.append(f"{key}: the entry's key field says {fields.get(b'key')!r}")
        audit.keys[key] += 1
        audit.events.append(event)
        want = expected.get(key)
        if want is None:
            audit.invented.append(key)
        elif (problem := mismatch(event, want)) is not None:
            audit.mismatched.append(problem)
    audit.lost = sorted(set(expected) - set(audit.keys))
    return audit


async def wait_published(
    client: RedisClient, stream: str, keys: Iterable[str], *, within: float, what: str = "the events shown so far"
) -> float:
    """Seconds until every key is in the stream."""
    wanted = set(keys)

    async def complete() -> bool:
        return wanted <= set(await stream_keys(client, stream))

    async def missing() -> str:
        try:
            have = set(await stream_keys(client, stream))
        except REDIS_DOWN as exc:
            return f"Redis is unreachable: {exc}"
        return f"{len(wanted - have)} of {len(wanted)} still missing"

    return await wait_for(complete, within=within, what=f"{what} ({len(wanted)} events) in the stream", detail=missing)


# --- the consumer groups ---------------------------------------------------------------------------------------


async def group_states(client: RedisClient, stream: str) -> dict[str, dict[str, Any]]:
    try:
        groups = await client.xinfo_groups(stream)
    except redis.exceptions.ResponseError:
        return {}
    return {_text(g["name"]): {_text(k): v for k, v in g.items()} for g in groups}


async def groups_caught_up(client: RedisClient, stream: str, names: Iterable[str]) -> bool:
    """Every named group was delivered the stream's last entry and acknowledged everything delivered."""
    info = await client.xinfo_stream(stream)
    last = _text(info["last-generated-id"])
    states = await group_states(client, stream)
    for name in names:
        state = states.get(name)
        if state is None or int(state["pending"]) or _text(state["last-delivered-id"]) != last:
            return False
    return True


async def describe_groups(client: RedisClient, stream: str) -> str:
    try:
        states = await group_states(client, stream)
        last = _text((await client.xinfo_stream(stream))["last-generated-id"])
    except REDIS_DOWN as exc:
        return f"Redis is unreachable: {exc}"
    lines = [f"stream last id {last}"]
    for name, s in states.items():
        lines.append(
            f"group {name}: pending {s['pending']} last-delivered {_text(s['last-delivered-id'])} "
            f"lag {s.get('lag')} consumers {s['consumers']}"
        )
    return "\n".join(lines)


async def dead_letters(client: RedisClient, stream: str) -> int:
    return int(await client.xlen(stream_key(stream, "dead")))


# --- the stats consumer's totals -------------------------------------------------------------------------------


async def stats_snapshot(client: RedisClient, key: str) -> dict[str, Any] | None:
    raw = await client.get(key)
    return None if raw is None else json.loads(raw)


def totals_problems(snapshot: dict[str, Any] | None, expected: Mapping[str, Expected]) -> list[str]:
    """How the snapshot's totals differ from the truth (empty when they match)."""
    if snapshot is None:
        return ["no snapshot published yet"]
    totals = snapshot["totals"]
    liquidations = [e for e in expected.values() if e.kind == "liquidation"]
    adl = sum(1 for e in expected.values() if e.kind == "adl")
    problems = []
    if totals["count"] != len(liquidations):
        problems.append(f"count {totals['count']} != {len(liquidations)}")
    value = sum((e.value_usd for e in liquidations), Decimal(0))
    if Decimal(totals["value_usd"]) != value:
        problems.append(f"value_usd {totals['value_usd']} != {value}")
    by_coin: Counter[str] = Counter(e.truth.coin for e in liquidations if e.truth is not None)
    got_by_coin = {coin: tally["count"] for coin, tally in totals["by_coin"].items()}
    if got_by_coin != dict(by_coin):
        problems.append("counts by coin differ")
    got_adl = totals["other"].get("adl", {}).get("count", 0)
    if got_adl != adl:
        problems.append(f"adl {got_adl} != {adl}")
    return problems


async def wait_stats(client: RedisClient, key: str, expected: Mapping[str, Expected], *, within: float) -> float:
    async def matches() -> bool:
        return not totals_problems(await stats_snapshot(client, key), expected)

    async def why() -> str:
        return f"{key}: " + "; ".join(totals_problems(await stats_snapshot(client, key), expected))

    return await wait_for(matches, within=within, what=f"the stats totals in {key} to match the truth", detail=why)


# --- the alerter's markers -------------------------------------------------------------------------------------


async def unsent_alerts(client: RedisClient, stream: str, keys: Iterable[str], sink: str) -> list[str]:
    """Liquidation keys whose alert marker for ``sink`` is not ``sent``."""
    keys = list(keys)
    unsent = []
    for i in range(0, len(keys), 500):
        chunk = keys[i : i + 500]
        states = await client.mget([stream_key(stream, f"alerted:{key}:{sink}") for key in chunk])
        unsent += [key for key, state in zip(chunk, states, strict=True) if state != b"sent"]
    return unsent


# --- all of it -------------------------------------------------------------------------------------------------


def as_expected(events: Iterable[Event]) -> dict[str, Expected]:
    """What the stream holds, in the shape of the truth: what every group must have processed."""
    out: dict[str, Expected] = {}
    for e in events:
        if isinstance(e, LiquidationEvent):
            truth = ExpectedLiquidation(
                e.tx_hash,
                e.coin,
                e.liquidated_user,
                e.liquidation_side,
                e.method,
                e.size,
                e.value_usd,
                frozenset(e.tids),
                e.timestamp,
                str(e.mark_price),
            )
            out[e.key] = Expected(e.key, "liquidation", e.timestamp, truth)
        else:
            out[e.key] = Expected(e.key, "adl", e.timestamp)
    return out


async def settle(
    client: RedisClient,
    stream: str,
    expected: Mapping[str, Expected],
    *,
    groups: Iterable[str],
    stats_keys: Iterable[str] = (),
    alert_sink: str | None = None,
    within: float = 60.0,
) -> StreamAudit:
    """Wait for every expected event to be in the stream and for the groups to process all of it, then check the
    groups against the stream: stats totals equal its events, every liquidation alerted, no dead letter.

    Returns the stream's audit against the truth without judging it, so a scenario can print its figures first.
    """
    await wait_published(client, stream, expected, within=within, what="every expected event")
    audit = await audit_stream(client, stream, expected)
    groups = list(groups)
    await wait_for(
        lambda: groups_caught_up(client, stream, groups),
        within=within,
        what=f"groups {groups} to process every entry",
        detail=lambda: describe_groups(client, stream),
    )
    assert await dead_letters(client, stream) == 0, "entries were dead-lettered"
    in_stream = as_expected(audit.events)
    for key in stats_keys:
        await wait_stats(client, key, in_stream, within=within)
    if alert_sink is not None:
        liquidations = [k for k, e in in_stream.items() if e.kind == "liquidation"]
        unsent = await unsent_alerts(client, stream, liquidations, alert_sink)
        assert not unsent, f"{len(unsent)} liquidations were never alerted: {unsent[:3]}"
    return audit


async def assert_delivered(
    client: RedisClient,
    stream: str,
    expected: Mapping[str, Expected],
    *,
    groups: Iterable[str],
    stats_keys: Iterable[str] = (),
    alert_sink: str | None = None,
    within: float = 60.0,
) -> StreamAudit:
    """Invariants 1 to 4: :func:`settle`, and the stream equals the truth."""
    audit = await settle(
        client, stream, expected, groups=groups, stats_keys=stats_keys, alert_sink=alert_sink, within=within
    )
    assert audit.clean, audit.describe()
    return audit


@dataclass
class Figures:
    """The line a scenario prints, and RELIABILITY.md quotes."""

    scenario: str
    expected: int
    published: int
    duplicates: int
    lost: int
    invented: int = 0
    recovery_s: float | None = None
    notes: dict[str, object] = field(default_factory=dict)
    mismatched: int = 0
    """Published with amounts, side or trades other than the truth's."""

    @classmethod
    def from_audit(
        cls,
        scenario: str,
        expected: Mapping[str, Expected],
        audit: StreamAudit,
        recovery_s: float | None = None,
        **notes: object,
    ) -> Figures:
        return cls(
            scenario,
            len(expected),
            len(audit.keys),
            audit.duplicates,
            len(audit.lost),
            len(audit.invented),
            recovery_s,
            dict(notes),
            len(audit.mismatched),
        )

    def line(self) -> str:
        recovery = "-" if self.recovery_s is None else f"{self.recovery_s:.1f}"
        notes = "".join(f" {k}={v}" for k, v in self.notes.items())
        return (
            f"FIGURES {self.scenario}: expected={self.expected} published={self.published} "
            f"duplicates={self.duplicates} lost={self.lost} invented={self.invented} "
            f"mismatched={self.mismatched} recovery_s={recovery}{notes}"
        )

    def emit(self) -> None:
        """Print the line (``pytest -s`` or ``-rP`` shows it); also append it to ``$FAULT_FIGURES`` if set."""
        print(self.line())
        path = os.environ.get("FAULT_FIGURES")
        if path:
            with open(path, "a") as handle:
                handle.write(self.line() + "\n")


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
