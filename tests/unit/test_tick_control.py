"""The adaptive tick: short while the process has CPU to spare, long under load (fake clocks)."""

from __future__ import annotations

import pytest

from presence.cluster.tick_control import HIGH_LOAD, LOW_LOAD, TickController


class Clocks:
    """Process CPU time and wall time, moved by hand."""

    def __init__(self) -> None:
        self.cpu = 0.0
        self.wall = 0.0

    def run(self, seconds: float, busy: float) -> None:
        """``seconds`` of wall time with the process busy ``busy`` of one core."""
        self.wall += seconds
        self.cpu += seconds * busy


def controller(clocks: Clocks) -> TickController:
    return TickController(
        slow_seconds=0.05,
        fast_seconds=0.0125,
        cpu_clock=lambda: clocks.cpu,
        wall_clock=lambda: clocks.wall,
    )


def settle(control: TickController, clocks: Clocks, busy: float, seconds: float = 10.0) -> float:
    interval = control.interval
    for _ in range(int(seconds / 0.02)):
        clocks.run(0.02, busy)
        interval = control.next_interval()
    return interval


def test_it_starts_short() -> None:
    assert controller(Clocks()).interval == 0.0125


def test_an_idle_process_keeps_the_short_tick() -> None:
    clocks = Clocks()
    assert settle(controller(clocks), clocks, busy=0.1) == pytest.approx(0.0125)


def test_a_saturated_process_grows_to_the_long_tick() -> None:
    clocks = Clocks()
    assert settle(controller(clocks), clocks, busy=1.0) == pytest.approx(0.05)


def test_between_the_marks_the_tick_grows_with_the_load() -> None:
    clocks = Clocks()
    control = controller(clocks)
    middle = (LOW_LOAD + HIGH_LOAD) / 2
    assert settle(control, clocks, busy=middle) == pytest.approx(0.03125, rel=0.01)
    lower = settle(control, clocks, busy=LOW_LOAD + 0.1)
    assert 0.0125 < lower < 0.03125


def test_a_short_burst_does_not_flip_the_tick() -> None:
    clocks = Clocks()
    control = controller(clocks)
    settle(control, clocks, busy=0.1)
    clocks.run(0.05, 1.0)
    assert control.next_interval() < 0.02


def test_load_that_falls_brings_the_short_tick_back() -> None:
    clocks = Clocks()
    control = controller(clocks)
    settle(control, clocks, busy=1.0)
    assert settle(control, clocks, busy=0.05) == pytest.approx(0.0125, abs=1e-4)


def test_a_loop_waking_late_counts_as_busy() -> None:
    clocks = Clocks()
    control = controller(clocks)
    for _ in range(500):
        clocks.run(0.02, 0.05)  # little CPU of its own, but the machine is starved
        interval = control.next_interval(lateness=0.01)
    assert interval == pytest.approx(0.05, rel=0.01)


def test_no_time_passed_keeps_the_interval() -> None:
    clocks = Clocks()
    control = controller(clocks)
    assert control.next_interval() == 0.0125


@pytest.mark.parametrize(("fast", "slow"), [(0.0, 0.05), (0.06, 0.05), (-1.0, 0.05)])
def test_fast_must_be_positive_and_at_most_slow(fast: float, slow: float) -> None:
    with pytest.raises(ValueError, match="fast_seconds"):
        TickController(slow_seconds=slow, fast_seconds=fast)
