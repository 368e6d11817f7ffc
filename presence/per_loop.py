"""One instance of a thing per running event loop (one per process in production).

Tests run each case on a new loop; an object holding loop-bound resources
(tasks, locks, connections) must not leak from one loop into the next.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class PerEventLoop(Generic[T]):
    """Call it for the running loop's instance (made on first use); :meth:`existing` only looks."""

    def __init__(self, factory: Callable[[], T]) -> None:
        self.factory = factory
        self._instances: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, T] = (
            weakref.WeakKeyDictionary()
        )
        self.__doc__ = f"The running event loop's instance of {getattr(factory, '__name__', 'it')}."

    def __call__(self) -> T:
        loop = asyncio.get_running_loop()
        instance = self._instances.get(loop)
        if instance is None:
            instance = self._instances[loop] = self.factory()
        return instance

    def existing(self) -> T | None:
        """The running loop's instance if one was made, else ``None`` (none is made)."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return None
        return self._instances.get(loop)


def per_event_loop(factory: Callable[[], T]) -> PerEventLoop[T]:
    """A getter returning the running loop's instance, made by ``factory`` on first use."""
    return PerEventLoop(factory)
