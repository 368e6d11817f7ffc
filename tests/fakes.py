"""Small test doubles shared by several test modules."""

from __future__ import annotations


class FakeClock:
    """Seconds that move only when the test says so (a wall clock by default)."""

    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds
