"""The frame guard: floods of control frames and endless fragmented messages, on a fake clock."""

from __future__ import annotations

import pytest

from presence.protocol.codes import CloseCode
from presence.protocol.frameguard import FrameGuard, FrameLimits, Opcode, Verdict

LIMITS = FrameLimits(control_frames=3, control_window=10.0, fragments=4)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def guard(clock: Clock) -> FrameGuard:
    return FrameGuard(LIMITS, clock=clock)


CONTROL_FLOOD = Verdict(CloseCode.RATE_LIMITED, "more than 3 pings and pongs in 10 s")
TOO_MANY_FRAGMENTS = Verdict(CloseCode.MESSAGE_TOO_BIG, "message in more than 4 fragments")


@pytest.mark.parametrize("opcode", [Opcode.PING, Opcode.PONG])
def test_control_frames_up_to_the_limit_in_a_window_pass(guard: FrameGuard, opcode: int) -> None:
    assert [guard.frame(opcode, True) for _ in range(3)] == [None, None, None]


@pytest.mark.parametrize("opcode", [Opcode.PING, Opcode.PONG])
def test_one_control_frame_past_the_limit_closes_with_4008(guard: FrameGuard, opcode: int) -> None:
    for _ in range(3):
        guard.frame(opcode, True)

    assert guard.frame(opcode, True) == CONTROL_FLOOD


def test_pings_and_pongs_count_together(guard: FrameGuard) -> None:
    guard.frame(Opcode.PING, True)
    guard.frame(Opcode.PONG, True)
    guard.frame(Opcode.PING, True)

    assert guard.frame(Opcode.PONG, True) == CONTROL_FLOOD


def test_the_control_window_slides(guard: FrameGuard, clock: Clock) -> None:
    for _ in range(3):
        guard.frame(Opcode.PING, True)
        clock.now += 4.0  # frames at 100, 104, 108

    assert guard.frame(Opcode.PING, True) is None  # at 112: the one at 100 has left
    assert guard.frame(Opcode.PING, True) == CONTROL_FLOOD  # 104, 108, 112 still inside


def test_data_and_close_frames_are_not_control_frames(guard: FrameGuard) -> None:
    for _ in range(100):
        assert guard.frame(Opcode.BINARY, True) is None
        assert guard.frame(Opcode.TEXT, True) is None
    assert guard.frame(Opcode.CLOSE, True) is None


def test_a_message_in_exactly_the_limit_of_fragments_passes(guard: FrameGuard) -> None:
    verdicts = [guard.frame(Opcode.BINARY, False)]
    verdicts += [guard.frame(Opcode.CONT, False) for _ in range(2)]
    verdicts.append(guard.frame(Opcode.CONT, True))  # 4 frames in all

    assert verdicts == [None] * 4


def test_one_fragment_past_the_limit_closes_with_1009(guard: FrameGuard) -> None:
    guard.frame(Opcode.TEXT, False)
    for _ in range(3):
        assert guard.frame(Opcode.CONT, False) is None

    assert guard.frame(Opcode.CONT, False) == TOO_MANY_FRAGMENTS


def test_the_final_fragment_counts_too(guard: FrameGuard) -> None:
    guard.frame(Opcode.TEXT, False)
    for _ in range(3):
        guard.frame(Opcode.CONT, False)

    assert guard.frame(Opcode.CONT, True) == TOO_MANY_FRAGMENTS


def test_each_message_starts_a_new_count(guard: FrameGuard) -> None:
    for _ in range(50):
        assert guard.frame(Opcode.BINARY, False) is None
        for _ in range(2):
            assert guard.frame(Opcode.CONT, False) is None
        assert guard.frame(Opcode.CONT, True) is None


def test_control_frames_between_fragments_do_not_reset_the_count(guard: FrameGuard) -> None:
    guard.frame(Opcode.BINARY, False)
    guard.frame(Opcode.CONT, False)
    guard.frame(Opcode.PING, True)
    guard.frame(Opcode.CONT, False)
    guard.frame(Opcode.CONT, False)

    assert guard.frame(Opcode.CONT, False) == TOO_MANY_FRAGMENTS


def test_default_limits_are_the_documented_ones() -> None:
    assert FrameLimits() == FrameLimits(control_frames=30, control_window=10.0, fragments=128)
