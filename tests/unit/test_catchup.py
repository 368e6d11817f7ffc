"""The catch-up cursor (presence.cluster.catchup): what to deliver from the room log, pure."""

from __future__ import annotations

from presence.cluster.catchup import CatchUp


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_the_first_round_settles_nothing_before_now() -> None:
    catch = CatchUp(origin="me", clock=FakeClock())
    catch.note("r", "other-1")
    assert catch.missed("r", [], log_end=7) == []
    assert catch.ranges() == {"r": (7, 7)}


def test_an_entry_gets_a_whole_round_before_it_counts_as_missed() -> None:
    catch = CatchUp(origin="me", clock=FakeClock())
    catch.note("r", "x")
    catch.missed("r", [], log_end=10)
    assert catch.missed("r", [], log_end=12) == []  # (10, 10]: nothing yet
    assert catch.ranges() == {"r": (10, 12)}  # next round reads what was logged meanwhile
    assert catch.missed("r", ["other-5", "other-6"], log_end=12) == ["other-5", "other-6"]


def test_seen_and_own_messages_are_not_missed() -> None:
    catch = CatchUp(origin="me", clock=FakeClock())
    catch.note("r", "other-1")
    catch.missed("r", [], log_end=0)
    catch.missed("r", [], log_end=3)
    assert catch.missed("r", ["other-1", "me-2", "other-3"], log_end=3) == ["other-3"]


def test_note_says_whether_a_message_is_new() -> None:
    catch = CatchUp(origin="me", clock=FakeClock())
    assert catch.note("r", "other-1")
    assert not catch.note("r", "other-1")


def test_seen_ids_are_forgotten_after_three_periods() -> None:
    clock = FakeClock()
    catch = CatchUp(origin="me", period=1.0, clock=clock)
    catch.note("r", "other-1")
    catch.missed("r", [], log_end=0)
    clock.now += 3.5
    catch.missed("r", [], log_end=0)
    assert catch.note("r", "other-1")  # forgotten: memory stays bounded by time


def test_rooms_no_longer_held_are_forgotten() -> None:
    catch = CatchUp(origin="me", clock=FakeClock())
    catch.note("a", "x-1")
    catch.note("b", "x-2")
    catch.forget({"a"})
    assert set(catch.ranges()) == {"a"}
