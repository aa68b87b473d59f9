"""Node-format fill files written by the tests, from scenarios whose truth is known.

The node writes one JSON line per block (:func:`producer.simulation.sample.line`) into ``hourly/<YYYYMMDD>/<H>``;
the archive holds the same files lz4-compressed. Every fill of every user is there, so the node's truth is the
scenario's whole truth, not the part a watchlist sees.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path

import lz4.frame

from producer.simulation.sample import Block, hour_path, line


def block_time_ms(block: Block) -> int:
    return int(block["events"][0][1]["time"])


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
