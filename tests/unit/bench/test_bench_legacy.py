"""The benchmark's legacy-wire clients (issue 14): their poses survive the server's round trip."""

from __future__ import annotations

from bench.pose import LegacyPoseEncoder, Tally, legacy_client_hello, legacy_pose_time
from presence.protocol import legacy
from presence.protocol.legacy import LegacyLimits


def test_a_legacy_pose_keeps_its_send_time_through_the_server() -> None:
    frame = LegacyPoseEncoder(3).encode(123_456_789)
    message = legacy.decode(frame, sender_id="c1", limits=LegacyLimits())
    message.sender_id, message.timestamp = "c1", 1
    [relayed] = legacy.frames_of(message)
    assert isinstance(relayed, bytes)
    assert legacy_pose_time(relayed) == 123_456_789


def test_the_tally_counts_legacy_poses_and_nothing_else() -> None:
    tally = Tally(0, 10**9, legacy=True)
    tally.add_frame(LegacyPoseEncoder(1).encode(500), 1_500)
    tally.add_frame(legacy_client_hello("x"), 1_500)
    assert (tally.delivered, tally.other) == (1, 1)
    assert tally.summary()["hist"] == {10: 1}
