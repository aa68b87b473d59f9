"""The fake exchange, misbehaving for a while rather than once, and keeping a tally of what it did.

:class:`~producer.simulation.fake_exchange.FakeHyperliquid` queues one-shot faults. An exchange that rate-limits
for a minute is a fault that lasts: :meth:`ChaosExchange.fail_for` answers every matching request with it until
the time is up, however often the producer retries. The tally says what the producer was actually served, so a
scenario can print it and check that the producer's metrics saw as much.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any

from producer.simulation.fake_exchange import FakeHyperliquid, Fault

Match = Callable[[dict[str, Any]], bool]


def fault_name(fault: Fault) -> str:
    if fault.kind == "status":
        return f"http_{fault.status}"
    if fault.kind == "delay":
        return "timeout"
    return fault.kind


class ChaosExchange(FakeHyperliquid):
    """:class:`FakeHyperliquid` plus faults for a duration, and ``served``: faults answered, by name.

    :meth:`show_at_poll_start` makes new fills appear only when a poll begins (the request for the watchlist's
    first address), never between the reads of two addresses of one poll. A scenario about kills or faults uses it
    so that it does not also, by chance, test the race :meth:`before_answer` stages on purpose (fills appearing in
    the middle of a poll).
    """

    def __init__(self) -> None:
        super().__init__()
        self._windows: list[tuple[float, Fault, Match | None]] = []
        self.served: Counter[str] = Counter()
        self._poll_start: str | None = None
        self._unshown: list[tuple[str, list[dict[str, Any]]]] = []
        self._hooks: list[tuple[Match, Callable[[], None]]] = []

    def show_at_poll_start(self, first_address: str) -> None:
        self._poll_start = first_address.lower()

    def add_fills(self, address: str, fills: Iterable[dict[str, Any]]) -> None:
        if self._poll_start is None:
            super().add_fills(address, fills)
        else:
            self._unshown.append((address, list(fills)))

    def before_answer(self, match: Match, action: Callable[[], None]) -> None:
        """Run ``action`` once, when the first request matching ``match`` arrives, before it is answered."""
        self._hooks.append((match, action))

    def fail_for(self, seconds: float, fault: Fault, match: Match | None = None) -> float:
        """Answer every matching request with ``fault`` for ``seconds`` from now; returns when that ends."""
        until = time.monotonic() + seconds
        self._windows.append((until, fault, match))
        return until

    def _take_fault(self, body: dict[str, Any]) -> Fault | None:
        # Called for every request before it is answered: the moment to show what waits, and to run hooks.
        if self._unshown and body.get("user") == self._poll_start:
            unshown, self._unshown = self._unshown, []
            for address, fills in unshown:
                super().add_fills(address, fills)
        for hook in [h for h in self._hooks if h[0](body)]:
            self._hooks.remove(hook)
            hook[1]()
        now = time.monotonic()
        self._windows = [w for w in self._windows if w[0] > now]
        for _, fault, match in self._windows:
            if match is None or match(body):
                self.served[fault_name(fault)] += 1
                return fault
        queued = super()._take_fault(body)
        if queued is not None:
            self.served[fault_name(queued)] += 1
        return queued


def for_user(address: str) -> Match:
    """Match the requests for one address's fills."""
    return lambda body: body.get("type") == "userFillsByTime" and body.get("user") == address


def huge_junk(items: int) -> Fault:
    """HTTP 200 with a huge JSON list of items that are not fills (wrong shape): decodable, all of it unusable."""
    return Fault.malformed(b"[" + b",".join([b'{"coin":7,"px":[1],"time":"soon"}'] * items) + b"]")


def huge_extra_field(kib: int) -> Fault:
    """The real answer, each item carrying an unknown field of ``kib`` KiB: huge, and to be ignored."""
    return Fault.extra_field("debugBlob", "\x00\x1b" + "z" * (kib * 1024))
