"""The sample liquidation cascade shipped for the offline demo, in the node's file format.

A deterministic build (``python -m producer.simulation.sample`` rewrites it; a test fails when the shipped file
is stale): a calm start, then a burst of hundreds of liquidations within a couple of minutes across a dozen
coins, market liquidations absorbed by several makers, backstop takeovers by the liquidator vaults, a transaction
liquidating two users in two coins, ADL fills once the backstop is exhausted, and ordinary flow around it.

The node's format lives here too, since the demo writes the sample in it: one JSON line per block,
``{"local_time","block_time","block_number","events":[[user, fill],…]}``, in ``hourly/<YYYYMMDD>/<H>``.
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import lz4.frame
import msgspec

from producer.simulation.scenarios import HLP_LIQUIDATOR, LIQUIDATOR_2, Scenario, ScenarioBuilder

SAMPLE_PATH = Path(__file__).with_name("data") / "cascade.jsonl.lz4"
START_MS = 1_760_130_900_000  # 2025-10-10 21:15 UTC, when the real cascade began
MAJORS = ("BTC", "ETH", "SOL")
ALTS = ("AVAX", "HYPE", "xyz:CRWV", "DOGE", "SUI", "XRP", "LINK", "ARB", "TIA")


Block = dict[str, Any]
"""A node block as its JSON decodes: ``events`` holds ``[user, fill]`` pairs."""


def blocks_from(scenario: Scenario, first_block: int = 758_800_641) -> list[Block]:
    """Every fill of the scenario, each under its owner, grouped into one block per distinct time."""
    by_time: dict[int, list[list[Any]]] = defaultdict(list)
    for address, fills in scenario.fills.items():
        for fill in fills:
            by_time[fill["time"]].append([address, fill])
    blocks = []
    for number, (time_ms, events) in enumerate(sorted(by_time.items()), start=first_block):
        stamp = datetime.fromtimestamp(time_ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")
        blocks.append(
            {
                "local_time": stamp + "128",
                "block_time": stamp + "000",
                "block_number": number,
                "events": sorted(events, key=lambda e: e[1]["tid"]),
            }
        )
    return blocks


def hour_path(root: Path, time_ms: int, *, compressed: bool = False) -> Path:
    """Where the node (or the archive, compressed) keeps the hour of ``time_ms``."""
    moment = datetime.fromtimestamp(time_ms / 1000, UTC)
    return root / "hourly" / f"{moment:%Y%m%d}" / (f"{moment.hour}.lz4" if compressed else f"{moment.hour}")


def line(block: Block) -> bytes:
    return json.dumps(block, separators=(",", ":")).encode() + b"\n"


def build_sample() -> Scenario:
    b = ScenarioBuilder(seed=20251010, start_ms=START_MS)
    makers = [b.address() for _ in range(8)]
    for i, maker in enumerate(makers):
        b.label(maker, f"maker-{i + 1}")
    coins = MAJORS + ALTS

    for i in range(12):  # calm: a liquidation every few seconds
        b.market_liquidation(coin=coins[i % len(coins)], side="long", makers=makers[i % 5 : i % 5 + 2])
        b.ordinary_fills(makers[i % 8], 4, coin=MAJORS[i % 3])

    burst = b.now_ms + 5_000
    for i in range(360):  # the burst: longs wiped out within ~2 minutes, a few shorts squeezed
        coin = coins[i % len(coins)] if i % 4 else MAJORS[i % 3]
        side = "short" if i % 11 == 0 else "long"
        at = burst + i * 330
        if i % 30 == 7:
            b.backstop_liquidation(coin=coin, side=side, vault=(HLP_LIQUIDATOR, LIQUIDATOR_2)[i % 2], time_ms=at)
        elif i % 45 == 3:  # one transaction, two users, two coins
            tx = b.new_hash()
            b.market_liquidation(coin="BTC", side="long", makers=makers[:3], tx_hash=tx, time_ms=at)
            b.market_liquidation(coin="ETH", side="long", makers=makers[3:5], tx_hash=tx, time_ms=at)
        elif i % 37 == 0:  # a whale
            b.market_liquidation(
                coin="BTC", side=side, makers=makers[:4], sizes=["4.2", "3.1", "2.75", "1.9"], time_ms=at
            )
        else:
            b.market_liquidation(coin=coin, side=side, makers=makers[i % 6 : i % 6 + 3], time_ms=at)
        if i > 200 and i % 9 == 0:  # the backstop is exhausted: profitable shorts are deleveraged
            b.adl(coin=coin, user=makers[i % 8], size="12.5", px="22.075", time_ms=at + 1)
        if i % 6 == 0:
            b.ordinary_fills(makers[(i + 3) % 8], 5, coin=coin, time_ms=at + 2)
    return b.build()


def render(scenario: Scenario) -> bytes:
    return b"".join(line(block) for block in blocks_from(scenario))


def load_blocks(path: Path = SAMPLE_PATH) -> Iterator[Block]:
    """The shipped blocks, oldest first, as dicts (the demo re-times them before writing)."""
    with lz4.frame.open(path, "rb") as handle:
        for raw in handle:
            if raw.strip():
                yield msgspec.json.decode(raw)


def main() -> int:
    SAMPLE_PATH.parent.mkdir(exist_ok=True)
    SAMPLE_PATH.write_bytes(lz4.frame.compress(render(build_sample()), compression_level=9))
    sys.stdout.write(f"wrote {SAMPLE_PATH} ({SAMPLE_PATH.stat().st_size:,} bytes)\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
