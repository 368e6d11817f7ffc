"""A connection's outbound buffer: reliable in order, volatile latest-wins.

Reliable items are never dropped: when more than ``max_reliable`` wait,
:meth:`Outbox.push` reports overflow and the caller closes with 4009.
Volatile items with the same key replace each other, the newer one moving to
the back so it never overtakes a reliable message that was queued before it.
"""

from __future__ import annotations

from itertools import count
from typing import Generic, TypeVar

Item = TypeVar("Item")


class Outbox(Generic[Item]):
    """Bounded, ordered outbound queue for one connection."""

    def __init__(self, *, max_reliable: int = 1000, max_volatile: int = 1000) -> None:
        self.max_reliable = max_reliable
        self.max_volatile = max_volatile
        self._items: dict[object, tuple[bool, Item]] = {}
        self._unique = count()
        self._reliable = 0
        self.volatile_dropped = 0

    def __len__(self) -> int:
        return len(self._items)

    @property
    def reliable_waiting(self) -> int:
        """How many reliable items wait to be sent."""
        return self._reliable

    def push(self, item: Item, *, reliable: bool, key: str = "") -> bool:
        """Queue ``item``; ``False`` means the reliable bound was crossed."""
        if reliable:
            if self._reliable >= self.max_reliable:
                return False
            self._reliable += 1
            self._items[next(self._unique)] = (True, item)
            return True
        slot: object = ("v", key) if key else next(self._unique)
        if self._items.pop(slot, None) is not None:
            self.volatile_dropped += 1
        elif len(self._items) - self._reliable >= self.max_volatile:
            self._drop_oldest_volatile()
        self._items[slot] = (False, item)
        return True

    def _drop_oldest_volatile(self) -> None:
        for slot, (reliable, _) in self._items.items():
            if not reliable:
                del self._items[slot]
                self.volatile_dropped += 1
                return

    def drain(self) -> list[Item]:
        """Take everything queued, oldest first."""
        items = [item for _, item in self._items.values()]
        self._items.clear()
        self._reliable = 0
        return items
