"""How fast the maker ranking counts public trades, against decoding those trades from the feed.

    python bench/coverage_bench.py [--rounds 5]

Why: the ranking is fed every trade of every perp coin, on the event loop the producer's sources share. Decoding
each ``trades`` message is work the feed needs anyway, so it is the anchor, measured in the same run on the same
trades (the simulated market's, ~22,000 over an hour): the goal is that counting a trade costs at most
:data:`GOAL` times decoding it. Also prints what a re-rank costs (``top`` and ``coverage``), done every few
minutes. Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from producer.coverage import MakerRanking
from producer.exchange_types import Trade
from producer.feed_messages import Trades, decode
from producer.simulation.market import build_market

GOAL = 3.0
"""Counting a trade may cost up to this many times decoding it."""
BATCH = 20
"""Trades per ``trades`` message, about what a busy coin's pushes carry."""


def best(rounds: int, run: Callable[[], object]) -> float:
    """The fastest of ``rounds`` runs of ``run()``, in seconds: the least disturbed by a noisy machine."""
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    market = build_market()
    raw = market.trades()
    frames = [json.dumps({"channel": "trades", "data": raw[i : i + BATCH]}).encode() for i in range(0, len(raw), BATCH)]
    decoded: list[Trade] = []
    for frame in frames:
        message = decode("public", frame)
        assert isinstance(message, Trades)
        decoded.extend(message.data)

    decoding = best(args.rounds, lambda: [decode("public", frame) for frame in frames])

    def count() -> None:
        MakerRanking().add_many(decoded)

    counting = best(args.rounds, count)
    ranking = MakerRanking(window_ms=2 * market.spec.duration_ms)
    ranking.add_many(decoded)
    reranking = best(args.rounds, lambda: ranking.coverage([m.address for m in ranking.top(50)]))

    n = len(decoded)
    print(f"{n} trades of {ranking.maker_count} makers in {len(frames)} messages of {BATCH}")
    print(f"  anchor: decode the feed's messages   {n / decoding:12,.0f} trades/s")
    print(f"  count them in the maker ranking      {n / counting:12,.0f} trades/s")
    ratio = counting / decoding
    print(f"  goal: counting <= {GOAL:.0f}x decoding: {'meets' if ratio <= GOAL else 'misses'} it ({ratio:.1f}x)")
    print(f"  re-rank (top 50 and their coverage)  {reranking * 1000:12.2f} ms")


if __name__ == "__main__":
    main()
