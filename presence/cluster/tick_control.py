"""How long the next tick is: short while the process has CPU to spare, long under load.

A pose waits for its room's tick, so the tick's length is the latency floor;
a long tick batches more poses per frame, so it is the CPU saver. The
controller measures how busy the process is (its CPU time per wall-clock
second, smoothed over about a second, and how late the tick loop woke up)
and picks the tick's length between ``fast_seconds`` (idle) and
``slow_seconds`` (busy), linearly between the ``low`` and ``high`` load marks.

Pure: the clocks are arguments, so tests drive it with fake ones.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

# Process CPU seconds per wall second (1.0 = one core all the time) below
# which the tick is the shortest, and above which it is the longest.
LOW_LOAD = 0.45
HIGH_LOAD = 0.85
# Seconds over which the load is smoothed: a burst does not flip the tick,
# a lasting change moves it within a second or two.
SMOOTHING_SECONDS = 1.0


class TickController:
    """The next tick's length in seconds, from the process's recent load.

    ``slow_seconds``: the tick under load (``1 / TICK_HZ``); ``fast_seconds``:
    the tick while idle (``1 / TICK_FAST_HZ``), at most ``slow_seconds``.
    ``cpu_clock`` and ``wall_clock`` return seconds (``time.process_time``
    and ``time.monotonic`` by default). :meth:`next_interval` is called once
    per tick with how late the loop woke (seconds, 0 when on time).
    """

    __slots__ = (
        "_cpu_clock",
        "_last_cpu",
        "_last_wall",
        "_wall_clock",
        "fast_seconds",
        "high",
        "interval",
        "load",
        "low",
        "slow_seconds",
    )

    def __init__(
        self,
        *,
        slow_seconds: float,
        fast_seconds: float,
        low: float = LOW_LOAD,
        high: float = HIGH_LOAD,
        cpu_clock: Callable[[], float] = time.process_time,
        wall_clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not 0 < fast_seconds <= slow_seconds:
            raise ValueError(f"need 0 < fast_seconds <= slow_seconds, got {fast_seconds}")
        if not 0 <= low < high:
            raise ValueError(f"need 0 <= low < high, got {low}, {high}")
        self.slow_seconds = slow_seconds
        self.fast_seconds = fast_seconds
        self.low = low
        self.high = high
        self._cpu_clock = cpu_clock
        self._wall_clock = wall_clock
        self._last_cpu = cpu_clock()
        self._last_wall = wall_clock()
        self.load = 0.0  # smoothed CPU seconds per wall second
        self.interval = fast_seconds

    def next_interval(self, lateness: float = 0.0) -> float:
        """Measure the load since the last call; return the next tick's length (s).

        ``lateness``: how long after its due time the tick loop woke. A loop
        that wakes more than half a short tick late is short of CPU (other work in
        the process or on the machine), whatever its own CPU time says.
        """
        cpu, wall = self._cpu_clock(), self._wall_clock()
        elapsed = wall - self._last_wall
        if elapsed <= 0:
            return self.interval
        sample = (cpu - self._last_cpu) / elapsed
        if lateness > self.fast_seconds / 2:
            sample = max(sample, self.high)
        self._last_cpu, self._last_wall = cpu, wall
        weight = 1.0 - math.exp(-elapsed / SMOOTHING_SECONDS)
        self.load += (sample - self.load) * weight
        share = (self.load - self.low) / (self.high - self.low)
        share = min(1.0, max(0.0, share))
        self.interval = self.fast_seconds + (self.slow_seconds - self.fast_seconds) * share
        return self.interval
