"""What every source gives the producer's loop: one interface, so the loop never asks which source it polls.

A source reads the exchange (its API, a node's files) and hands what it found to the detector; the loop publishes
the events together with the source's positions, so a restart resumes exactly where the last publish left it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

from schemas import Event


@dataclass
class PollResult:
    events: list[Event] = field(default_factory=list)
    checkpoint: dict[str, str] = field(default_factory=dict)
    """Source positions to record with the events (address watermarks); empty for sources without one."""
    items: int = 0
    """Fills or trades read."""
    errors: list[str] = field(default_factory=list)
    unreachable: bool = False
    """Every read of the poll failed: the exchange is out, which an empty poll of a quiet market is not."""
    skipped: int = 0
    """Items left out because they cannot be right (fills stamped beyond the clock's skew allowance)."""
    more: bool = False
    """The source stopped early with more to read: poll again without waiting."""
    finished: bool = False
    """The source has nothing more to give (a replay reached its end): the process may stop."""
    catching_up: bool = False
    """The events are old news (a replay, a backlog): logged as a summary, not one line each."""
    gap_seconds: float = 0.0
    """Seconds of exchange time the source knows it missed and cannot read again (a feed's unreplayable gap)."""
    problem: str | None = None
    """Why the source cannot do its job at all right now (nothing to read where it was pointed); unhealthy."""


class LiquidationSource(Protocol):
    """The interface every source implements. A source that subclasses it explicitly inherits :meth:`wait`."""

    name: str

    def restore(self, checkpoint: Mapping[str, str]) -> None:
        """Resume from positions recorded in Redis."""

    async def poll(self, now_ms: int) -> PollResult: ...

    def close(self) -> None:
        """Release files or other resources the source holds (the HTTP client is closed by its owner)."""

    async def wait(self, seconds: float) -> None:
        """Return when there may be something new to poll, after ``seconds`` at the latest.

        The loop calls it between polls. A polling source cannot know sooner, so it sleeps the interval out; a
        source that is told (a file that grew, a message pushed) returns as soon as it is, which is what makes it
        real time.
        """
        await asyncio.sleep(seconds)
