"""Latency samples: a bounded reservoir, percentiles, and the stamp read from a frame."""

from __future__ import annotations

import pytest

from presence.latency import (
    LATENCY_KINDS,
    LatencySamples,
    Reservoir,
    Summary,
    envelope_head,
    percentile,
    summarize,
)
from presence.protocol import pb
from presence.protocol.codec import EncodedMessage, Encoding
from presence.protocol.envelope import error_message, stamp

NOW_MS = 1_700_000_000_123


# --- the reservoir ----------------------------------------------------------------


def test_reservoir_keeps_at_most_its_size_newest_first_out_last() -> None:
    reservoir = Reservoir(3)
    for value in (1.0, 2.0, 3.0, 4.0, 5.0):
        reservoir.add(value)

    assert len(reservoir) == 3
    summary = reservoir.summary()
    assert summary is not None
    assert (summary.count, summary.avg, summary.p50) == (3, 4.0, 4.0)  # 3, 4, 5 kept


def test_reservoir_of_one_sample_holds_the_latest() -> None:
    reservoir = Reservoir(1)
    reservoir.add(9.0)
    reservoir.add(2.0)

    assert reservoir.summary() == Summary(count=1, avg=2.0, p50=2.0, p99=2.0)


def test_reservoir_must_hold_a_sample() -> None:
    with pytest.raises(ValueError, match="at least one"):
        Reservoir(0)


def test_empty_reservoir_has_no_summary() -> None:
    assert Reservoir(5).summary() is None


def test_latency_samples_has_one_reservoir_per_kind_of_the_same_size() -> None:
    samples = LatencySamples(7)

    assert [samples.of(kind).size for kind in LATENCY_KINDS] == [7, 7, 7]
    samples.of("rtt").add(0.5)
    assert (len(samples.rtt), len(samples.delivery), len(samples.processing)) == (1, 0, 0)
    with pytest.raises(KeyError):
        samples.of("nonsense")


# --- percentiles ---------------------------------------------------------------------


def test_percentiles_of_one_to_a_hundred_are_nearest_rank() -> None:
    ordered = [float(v) for v in range(1, 101)]

    assert (percentile(ordered, 50), percentile(ordered, 99), percentile(ordered, 100)) == (
        50.0,
        99.0,
        100.0,
    )


def test_p99_of_few_samples_is_the_largest() -> None:
    assert percentile([1.0, 2.0, 3.0], 99) == 3.0


def test_summary_sorts_its_input_and_averages() -> None:
    assert summarize([3.0, 1.0, 2.0, 10.0]) == Summary(count=4, avg=4.0, p50=2.0, p99=10.0)


@pytest.mark.parametrize("q", [0, -1, 100.5])
def test_percentile_outside_zero_to_a_hundred_is_refused(q: float) -> None:
    with pytest.raises(ValueError):
        percentile([1.0], q)


def test_percentile_of_nothing_is_refused() -> None:
    with pytest.raises(ValueError):
        percentile([], 50)


# --- the stamp of an encoded message ------------------------------------------------


def test_envelope_head_reads_timestamp_and_type_of_a_relayed_message() -> None:
    chat = pb.Message(chat_message=pb.ChatMessage(message="hi"))
    stamp(chat, now_ms=NOW_MS, sender_id="c1", message_id="instance-42")

    assert envelope_head(chat.SerializeToString()) == (NOW_MS, pb.CHAT_MESSAGE)


def test_envelope_head_of_a_pose_without_message_id() -> None:
    pose = pb.Message(position_update=pb.PositionUpdate(position=pb.Vector3(x=1)))
    stamp(pose, now_ms=NOW_MS, sender_id="c1")

    assert envelope_head(pose.SerializeToString()) == (NOW_MS, pb.POSITION_UPDATE)


def test_envelope_head_ignores_the_seq_appended_per_recipient() -> None:
    encoded = EncodedMessage.of(stamp(pb.Message(ack=pb.Ack()), now_ms=NOW_MS))
    frame = encoded.frame(Encoding.PROTO, seq=7)
    assert isinstance(frame, bytes)

    assert envelope_head(frame) == (NOW_MS, pb.ACK)


def test_envelope_head_of_an_unstamped_error_has_no_timestamp() -> None:
    error = error_message(pb.Error.BAD_MESSAGE, "bad", now_ms=0)

    assert envelope_head(error.SerializeToString()) == (0, pb.ERROR)


def test_envelope_head_of_a_long_message_id_skips_it() -> None:
    message = stamp(pb.Message(ping=pb.Ping()), now_ms=NOW_MS, message_id="m" * 300)

    assert envelope_head(message.SerializeToString()) == (NOW_MS, pb.PING)


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"", (0, 0)),
        (b"\x10", (0, 0)),  # a timestamp tag without its varint
        (b"\x10\xff\xff", (0, 0)),  # a varint cut short
        (b"\x0a\x05ab", (0, 0)),  # a message_id longer than the data
        (b"\xff" * 20, (0, 0)),  # an unknown first field: stop
        (b"\x10" + b"\xff" * 12 + b"\x01", (0, 0)),  # a varint over 64 bits
        (b"\x10\x05\x18", (5, 0)),  # the timestamp read before the type was cut
    ],
)
def test_envelope_head_of_garbage_is_zero_or_partial_never_an_error(
    data: bytes, expected: tuple[int, int]
) -> None:
    timestamp, message_type = envelope_head(data)

    assert timestamp >= 0 and message_type >= 0
    assert (timestamp, message_type) == expected
