"""The benchmark's pose frames (bench/pose.py): send time in, deliveries and latency out."""

from __future__ import annotations

import pytest

from bench.pose import (
    LATENCY_BUCKET_US,
    MAX_SEND_US,
    PoseEncoder,
    Tally,
    client_hello,
    join_time,
    merge_hists,
    percentile_ms,
    pose_message,
    split_time,
)
from presence.protocol import pb

WINDOW = (1_000_000, 2_000_000)  # microseconds since the run's epoch


def _as_service_sends_it(client_frame: bytes, *, sender: str = "c123") -> pb.Message:
    """What the service does to a pose: new envelope stamps, payload unchanged."""
    message = pb.Message.FromString(client_frame)
    message.message_id = ""
    message.timestamp = 1_764_000_000_000
    message.type = pb.POSITION_UPDATE
    message.sender_id = sender
    return message


@pytest.mark.parametrize(
    "sent_us", [0, 1, (1 << 22) - 1, 1 << 22, 123_456_789_012, MAX_SEND_US - 1]
)
def test_send_time_survives_float32_position_fields(sent_us: int) -> None:
    x, y = split_time(sent_us)
    wire = pb.Vector3.FromString(pb.Vector3(x=x, y=y).SerializeToString())

    assert join_time(wire.x, wire.y) == sent_us
    assert x != 0.0 and y != 0.0, "proto3 would drop a zero float"


def test_send_time_outside_the_encodable_range_is_refused() -> None:
    with pytest.raises(ValueError):
        split_time(MAX_SEND_US)


def test_hand_encoded_frames_equal_the_protobuf_encoding() -> None:
    encoder = PoseEncoder(41)

    for seq, sent_us in enumerate((0, 5_000, 987_654_321)):
        frame = encoder.encode(sent_us)
        expected = pose_message(sent_us, sender=41, seq=seq, message_id="p00000000041")
        assert frame == expected.SerializeToString()


def test_client_frames_are_about_sixty_bytes() -> None:
    assert 55 <= len(PoseEncoder(7).encode(10**9)) <= 65


def test_relayed_pose_counts_with_its_latency() -> None:
    tally = Tally(*WINDOW)

    tally.add_frame(PoseEncoder(1).encode(1_500_000), now_us=1_503_250)

    assert tally.delivered == 1
    assert percentile_ms(tally.summary()["hist"], 0.5) == pytest.approx(3.3)


def test_service_restamped_pose_keeps_the_send_time() -> None:
    tally = Tally(*WINDOW)
    restamped = _as_service_sends_it(PoseEncoder(1).encode(1_200_000))

    tally.add_frame(restamped.SerializeToString(), now_us=1_260_000)

    assert tally.delivered == 1
    assert tally.summary()["hist"] == {600: 1}  # 60 ms in 0.1 ms buckets


def test_every_pose_in_a_batch_counts_once() -> None:
    tally = Tally(*WINDOW)
    poses = [_as_service_sends_it(PoseEncoder(n).encode(1_100_000 + n)) for n in range(30)]
    join = pb.Message(presence_event=pb.PresenceEvent(client_id="c9", event_type=pb.JOIN))
    batch = pb.Message(type=pb.BATCH, batch=pb.Batch(messages=[*poses, join]))

    tally.add_frame(batch.SerializeToString(), now_us=1_150_000)

    assert (tally.delivered, tally.batches, tally.other) == (30, 1, 1)


def test_poses_sent_outside_the_window_do_not_count() -> None:
    tally = Tally(*WINDOW)
    encoder = PoseEncoder(1)

    tally.add_frame(encoder.encode(WINDOW[0] - 1), now_us=WINDOW[0] + 10)
    tally.add_frame(encoder.encode(WINDOW[1]), now_us=WINDOW[1] + 10)

    assert (tally.delivered, tally.outside) == (0, 2)


def test_hello_presence_and_errors_are_not_poses() -> None:
    tally = Tally(*WINDOW)
    hello = pb.Message(server_hello=pb.ServerHello(assigned_client_id="c1"))
    error = pb.Message(error=pb.Error(code=pb.Error.RATE_LIMITED))

    for message in (hello, error):
        tally.add_frame(message.SerializeToString(), now_us=WINDOW[0])
    tally.add_frame(b"\xff\xff\xff", now_us=WINDOW[0])

    assert (tally.delivered, tally.other, tally.errors, tally.undecodable) == (0, 1, 1, 1)


def test_latency_beyond_the_histogram_lands_in_its_last_bucket() -> None:
    tally = Tally(*WINDOW)

    tally.add_frame(PoseEncoder(1).encode(WINDOW[0]), now_us=WINDOW[0] + 3600 * 10**6)

    assert list(tally.summary()["hist"]) == [len(tally.hist) - 1]


def test_percentiles_from_merged_histograms() -> None:
    per_worker = [{0: 50}, {9: 49, 999: 1}]  # 0.1 ms, 1 ms, 100 ms buckets

    merged = merge_hists(per_worker)

    assert merged == {0: 50, 9: 49, 999: 1}
    assert percentile_ms(merged, 0.50) == LATENCY_BUCKET_US / 1000
    assert percentile_ms(merged, 0.99) == 1.0
    assert percentile_ms(merged, 1.0) == 100.0
    assert percentile_ms({}, 0.5) is None


def test_client_hello_announces_capabilities() -> None:
    message = pb.Message.FromString(client_hello("u1", ["batch"]))

    assert message.client_hello.display_name == "u1"
    assert list(message.client_hello.capabilities) == ["batch"]
