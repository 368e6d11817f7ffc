"""One instance of a thing per running event loop (one per process in production).

Tests run each case on a new loop; an object holding loop-bound resources
(tasks, locks, connections) must not leak from one loop into the next.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def per_event_loop(factory: Callable[[], T]) -> Callable[[], T]:
    """A getter returning the running loop's instance, made by ``factory`` on first use."""
    instances: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, T] = weakref.WeakKeyDictionary()

    def get() -> T:
        loop = asyncio.get_running_loop()
        instance = instances.get(loop)
        if instance is None:
            instance = instances[loop] = factory()
        return instance

    get.__doc__ = f"The running event loop's instance of {getattr(factory, '__name__', 'it')}."
    return get
