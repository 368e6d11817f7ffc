"""TickBatch: newest pose per entity, one encoding, a frame per recipient."""

from __future__ import annotations

import json

from google.protobuf import json_format

from presence.protocol import pb
from presence.protocol.batch import Entry, TickBatch
from presence.protocol.codec import EncodedMessage, Encoding


def pose_entry(sender: str, x: float, entity: str = "") -> Entry:
    message = pb.Message(
        type=pb.POSITION_UPDATE,
        sender_id=sender,
        position_update=pb.PositionUpdate(entity_id=entity, position=pb.Vector3(x=x)),
    )
    return Entry(sender, f"{sender}/{entity}", EncodedMessage.of(message))


def decoded(frame: bytes | str | None) -> pb.Message:
    assert isinstance(frame, bytes)
    return pb.Message.FromString(frame)


def poses(message: pb.Message) -> list[tuple[str, float]]:
    return [(m.sender_id, m.position_update.position.x) for m in message.batch.messages]


def test_newest_pose_per_entity_wins() -> None:
    batch = TickBatch(
        [pose_entry("a", 1), pose_entry("a", 2), pose_entry("b", 5), pose_entry("a", 3)]
    )

    assert sorted(poses(decoded(batch.frame("nobody", Encoding.PROTO, 1)))) == [
        ("a", 3.0),
        ("b", 5.0),
    ]


def test_different_entities_of_one_sender_are_kept() -> None:
    batch = TickBatch([pose_entry("a", 1), pose_entry("a", 2, entity="box")])

    assert len(batch) == 2


def test_frame_is_a_batch_message_without_the_recipients_own_poses() -> None:
    batch = TickBatch([pose_entry("a", 1), pose_entry("b", 2), pose_entry("c", 3)])

    message = decoded(batch.frame("b", Encoding.PROTO, 1234))

    assert message.type == pb.BATCH
    assert message.timestamp == 1234
    assert poses(message) == [("a", 1.0), ("c", 3.0)]


def test_a_recipient_whose_poses_are_all_there_is_gets_no_frame() -> None:
    batch = TickBatch([pose_entry("a", 1), pose_entry("a", 2, entity="box")])

    assert batch.frame("a", Encoding.PROTO, 1) is None
    assert batch.frame("a", Encoding.JSON, 1) is None


def test_entries_of_a_sender_are_grouped_so_its_slice_is_contiguous() -> None:
    batch = TickBatch([pose_entry("a", 1), pose_entry("b", 2), pose_entry("a", 3, entity="hat")])

    assert poses(decoded(batch.frame("b", Encoding.PROTO, 1))) == [("a", 1.0), ("a", 3.0)]
    assert poses(decoded(batch.frame("a", Encoding.PROTO, 1))) == [("b", 2.0)]


def test_json_frame_is_canonical_proto3_json_of_the_same_batch() -> None:
    batch = TickBatch([pose_entry("a", 1), pose_entry("b", 2)])

    text = batch.frame("a", Encoding.JSON, 99)

    assert isinstance(text, str)
    assert json.loads(text)["type"] == "BATCH"
    message = json_format.Parse(text, pb.Message())
    assert message.timestamp == 99
    assert poses(message) == [("b", 2.0)]


def test_individual_messages_for_a_client_without_batch_exclude_its_own() -> None:
    batch = TickBatch([pose_entry("a", 1), pose_entry("b", 2)])

    [only] = batch.for_recipient("a")

    assert pb.Message.FromString(only.proto).sender_id == "b"


def test_merge_keeps_the_newest_pose_of_each_entity_from_both_ticks() -> None:
    older = TickBatch([pose_entry("a", 1), pose_entry("b", 2)])
    newer = TickBatch([pose_entry("a", 9)])

    merged = TickBatch.merge(older, newer)

    assert sorted(poses(decoded(merged.frame("x", Encoding.PROTO, 1)))) == [("a", 9.0), ("b", 2.0)]


def test_merge_is_bounded_dropping_the_oldest_entries() -> None:
    older = TickBatch([pose_entry(f"s{i}", i) for i in range(5)])
    newer = TickBatch([pose_entry("late", 99)])

    merged = TickBatch.merge(older, newer, limit=3)

    assert [e.sender_id for e in merged.entries] == ["s3", "s4", "late"]


def test_merge_is_bounded_in_bytes_keeping_the_newest() -> None:
    older = TickBatch([pose_entry(f"s{i}", i) for i in range(10)])
    newer = TickBatch([pose_entry("late", 99)])
    one = len(newer.entries[0].encoded.proto)

    merged = TickBatch.merge(older, newer, max_bytes=3 * one + 1)

    assert [e.sender_id for e in merged.entries_by_age()][-1] == "late"
    assert len(merged) == 3


def test_merge_always_keeps_the_newest_entry_even_past_the_byte_bound() -> None:
    merged = TickBatch.merge(
        TickBatch([pose_entry("a", 1)]), TickBatch([pose_entry("b", 2)]), max_bytes=1
    )

    assert [e.sender_id for e in merged.entries] == ["b"]
