"""Node-format fill files written by the tests, from scenarios whose truth is known.

The node writes one JSON line per block, ``{"local_time","block_time","block_number","events":[[user, fill],…]}``,
into ``hourly/<YYYYMMDD>/<H>``; the archive holds the same files lz4-compressed. Every fill of every user is
there, so the node's truth is the scenario's whole truth, not the part a watchlist sees.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import lz4.frame

from producer.simulation.scenarios import ADL_DIR, ExpectedLiquidation, Scenario, ScenarioBuilder

Block = dict[str, Any]


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


def block_time_ms(block: Block) -> int:
    return int(block["events"][0][1]["time"])


def hour_path(root: Path, time_ms: int, *, compressed: bool = False) -> Path:
    """Where the node (or the archive, compressed) keeps the hour of ``time_ms``."""
    moment = datetime.fromtimestamp(time_ms / 1000, UTC)
    return root / "hourly" / f"{moment:%Y%m%d}" / (f"{moment.hour}.lz4" if compressed else f"{moment.hour}")


def line(block: Block) -> bytes:
    return json.dumps(block, separators=(",", ":")).encode() + b"\n"


def write_hours(root: Path, blocks: Iterable[Block], *, compressed: bool = False) -> list[Path]:
    """Write blocks into their hour files (appending), oldest first; returns the files written."""
    by_file: dict[Path, list[bytes]] = defaultdict(list)
    for block in blocks:
        by_file[hour_path(root, block_time_ms(block), compressed=compressed)].append(line(block))
    for path, lines in sorted(by_file.items(), key=lambda item: item[0].parts):
        path.parent.mkdir(parents=True, exist_ok=True)
        data = b"".join(lines)
        if compressed:
            path.write_bytes(lz4.frame.compress(data))
        else:
            with path.open("ab") as handle:
                handle.write(data)
    return sorted(by_file)


def adl_truth(scenario: Scenario) -> set[tuple[str, str, str]]:
    """(hash, coin, deleveraged user) of every ADL fill."""
    return {
        (fill["hash"], fill["coin"], address)
        for address, fills in scenario.fills.items()
        for fill in fills
        if fill["dir"] == ADL_DIR
    }


def cascade(n_liquidations: int, *, seed: int = 7, start_ms: int = 1_760_130_900_000) -> Scenario:
    """A liquidation cascade: many users liquidated into a few makers, backstops, ADL and ordinary flow."""
    builder = ScenarioBuilder(seed=seed, start_ms=start_ms)
    makers = [builder.address() for _ in range(12)]
    coins = ("BTC", "ETH", "SOL", "AVAX", "HYPE", "xyz:CRWV")
    for i in range(n_liquidations):
        coin = coins[i % len(coins)]
        if i % 25 == 0:
            builder.backstop_liquidation(coin=coin, side=("long", "short")[i % 2])
        else:
            builder.market_liquidation(coin=coin, side=("long", "short")[i % 2], makers=makers[i % 9 : i % 9 + 3])
        if i % 10 == 0:
            builder.adl(coin=coin, user=makers[i % 12], size="1.5", px="100.5")
        if i % 5 == 0:
            builder.ordinary_fills(makers[i % 12], 3, coin=coin)
    return builder.build()


def truth_by_key(truth: Iterable[ExpectedLiquidation]) -> dict[tuple[str, str, str], ExpectedLiquidation]:
    return {t.key: t for t in truth}
