"""A connection's outbound buffer: reliable in order, volatile merged.

Reliable items are never dropped: when more than ``max_reliable`` wait,
:meth:`Outbox.push` reports overflow and the caller closes with 4009.
A volatile item (one tick's poses) pushed right behind another unsent volatile
item is merged into it (newest pose per entity wins), so a member that reads
slowly gets fewer, newer poses and the buffer stays bounded: volatile items
only ever sit between reliable ones, at most ``max_reliable + 1`` of them.
A volatile item is never merged across a reliable one, so nothing overtakes a
reliable message queued before it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

Item = TypeVar("Item")


class Outbox(Generic[Item]):
    """Bounded, ordered outbound queue for one connection."""

    __slots__ = ("_items", "_merge", "_reliable", "max_reliable", "volatile_merged")

    def __init__(
        self, *, max_reliable: int = 1000, merge: Callable[[Item, Item], Item] | None = None
    ) -> None:
        self.max_reliable = max_reliable
        self._merge = merge
        # A list, not a deque: drained whole, and an empty list holds no block
        # of memory, which every idle connection would otherwise keep.
        self._items: list[tuple[bool, Item]] = []
        self._reliable = 0
        self.volatile_merged = 0

    def __len__(self) -> int:
        return len(self._items)

    @property
    def reliable_waiting(self) -> int:
        """How many reliable items wait to be sent."""
        return self._reliable

    def push(self, item: Item, *, reliable: bool) -> bool:
        """Queue ``item``; ``False`` means the reliable bound was crossed."""
        if reliable:
            if self._reliable >= self.max_reliable:
                return False
            self._reliable += 1
            self._items.append((True, item))
            return True
        if self._items and not self._items[-1][0]:
            _, older = self._items.pop()
            self.volatile_merged += 1
            item = self._merge(older, item) if self._merge else item
        self._items.append((False, item))
        return True

    def drain(self) -> list[Item]:
        """Take everything queued, oldest first."""
        items = [item for _, item in self._items]
        self._items = []
        self._reliable = 0
        return items
