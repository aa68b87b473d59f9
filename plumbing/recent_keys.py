"""A bounded memory of keys seen lately: "have I had this one already?" without growing for ever.

The producer uses it so that re-reads do not pile duplicates into its outbox, the totals so that a redelivered
entry is not counted twice, the alerter so that an event it already let through the cooldown is not held back on
a retry. None of them is the guarantee (Redis's dedup keys and acknowledgements are); each is a cheap safety net,
so forgetting the oldest key at the cap is the right trade.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from typing import Protocol, TypeVar


class Keyed(Protocol):
    @property
    def key(self) -> str: ...


K = TypeVar("K", bound=Keyed)


class RecentKeys:
    """The last ``capacity`` distinct keys added, the least recently seen forgotten first; 0 remembers nothing.

    Seeing a key again makes it recent again: a key that keeps coming back (the fills source re-reads its
    watermark's millisecond every poll) is the one most worth remembering.
    """

    def __init__(self, capacity: int = 100_000) -> None:
        if capacity < 0:
            raise ValueError(f"a memory of recent keys holds 0 keys or more, not {capacity}")
        self.capacity = capacity
        self._keys: OrderedDict[str, None] = OrderedDict()

    def __len__(self) -> int:
        return len(self._keys)

    def __contains__(self, key: object) -> bool:
        return key in self._keys

    def add(self, key: str) -> bool:
        """Remember ``key``; True if it was not remembered already (always True with capacity 0)."""
        if key in self._keys:
            self._keys.move_to_end(key)
            return False
        if self.capacity:
            self._keys[key] = None
            while len(self._keys) > self.capacity:
                self._keys.popitem(last=False)
        return True

    def fresh_peek(self, items: Iterable[K]) -> list[K]:
        """The items whose key is not remembered, without remembering them."""
        return [item for item in items if item.key not in self._keys]

    def fresh(self, items: Iterable[K]) -> list[K]:
        """The items whose key is not remembered, remembering every key."""
        return [item for item in items if self.add(item.key)]
