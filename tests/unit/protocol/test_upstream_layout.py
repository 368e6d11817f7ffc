"""Every message of PROTOCOL.md section 3 has the same layout in our schema and on the wire.

Each message is filled in every field (nested messages, maps, repeated fields,
a ``Batch`` of them), encoded with one schema and decoded with the other:
nothing may be unknown to the decoder and every field must come out under
the same name with the same value. ``tests/clients/upstream_layout.proto`` is
the layout written from section 3; the frames of a running server are checked
against it in ``tests/integration/transport/test_wire_compat.py``.
"""

from __future__ import annotations

from typing import Any

import pytest
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message

from presence.protocol import pb
from tests.clients.upstream import as_fields, layout, unknown_field_paths

# Distinct values per field, so a field read under another number shows.
_scalar_counter = iter(range(1, 1_000_000))


def _scalar(field: FieldDescriptor) -> Any:
    n = next(_scalar_counter)
    kind = field.type
    if kind == FieldDescriptor.TYPE_STRING:
        return f"{field.name}-{n}"
    if kind == FieldDescriptor.TYPE_BYTES:
        return bytes([0xFF, n % 256, 0x80])  # not UTF-8: a string field would refuse it
    if kind == FieldDescriptor.TYPE_BOOL:
        return True
    if kind in (FieldDescriptor.TYPE_FLOAT, FieldDescriptor.TYPE_DOUBLE):
        return n + 0.5
    if kind == FieldDescriptor.TYPE_ENUM:
        values = [v.number for v in field.enum_type.values if v.number]
        return values[n % len(values)]
    return n


def fill(message: Message, depth: int = 0) -> Message:
    """Set every field of ``message`` (one member of each oneof per level) to a distinct value."""
    descriptor: Descriptor = message.DESCRIPTOR
    for field in descriptor.fields:
        if field.containing_oneof is not None:
            continue
        _fill_field(message, field, depth)
    return message


def _fill_field(message: Message, field: FieldDescriptor, depth: int) -> None:
    if field.message_type is not None and field.message_type.GetOptions().map_entry:
        value_field = field.message_type.fields_by_name["value"]
        target = getattr(message, field.name)
        for key in ("a", "b"):
            target[key] = _scalar(value_field)
    elif field.is_repeated:
        target = getattr(message, field.name)
        for _ in range(2):
            if field.message_type is not None:
                fill(target.add(), depth + 1)
            else:
                target.append(_scalar(field))
    elif field.message_type is not None:
        fill(getattr(message, field.name), depth + 1)
    else:
        setattr(message, field.name, _scalar(field))


def envelope(schema: Any, kind: str) -> Message:
    """A ``Message`` of ``schema`` with every envelope field and the payload ``kind`` filled."""
    message = fill(schema.Message())
    payload_field = schema.Message.DESCRIPTOR.fields_by_name[kind]
    payload = getattr(message, kind)
    if kind == "batch":  # a batch of every other payload, the way a client meets them
        for inner in PAYLOADS:
            if inner != "batch":
                payload.messages.append(envelope(schema, inner))
    else:
        fill(payload)
    assert message.WhichOneof("payload") == payload_field.name
    return message


PAYLOADS = sorted(f.name for f in pb.Message.DESCRIPTOR.oneofs_by_name["payload"].fields)


def test_the_layout_names_the_same_payloads_as_our_schema() -> None:
    theirs = layout().Message.DESCRIPTOR.oneofs_by_name["payload"].fields
    assert sorted(f.name for f in theirs) == PAYLOADS


@pytest.mark.parametrize("kind", PAYLOADS)
def test_our_frames_decode_with_the_upstream_layout_intact(kind: str) -> None:
    ours = envelope(pb, kind)

    theirs = layout().Message.FromString(ours.SerializeToString())

    assert unknown_field_paths(theirs) == []
    assert as_fields(theirs) == as_fields(ours)


@pytest.mark.parametrize("kind", PAYLOADS)
def test_upstream_frames_decode_with_our_schema_intact(kind: str) -> None:
    theirs = envelope(layout(), kind)

    ours = pb.Message.FromString(theirs.SerializeToString())

    assert unknown_field_paths(ours) == []
    assert as_fields(ours) == as_fields(theirs)


def test_upstream_voice_data_keeps_speaker_audio_sequence_and_codec() -> None:
    # The frame of the issue: relayed voice that an upstream client could not decode.
    ours = pb.Message(
        voice_data=pb.VoiceData(
            from_client_id="c1", audio_data=b"\xff\xfe", sequence_number=7, codec=2
        )
    )

    voice = layout().Message.FromString(ours.SerializeToString()).voice_data

    assert (voice.from_client_id, voice.audio_data, voice.sequence_number, voice.codec) == (
        "c1",
        b"\xff\xfe",
        7,
        2,
    )


def test_upstream_avatar_config_keeps_every_field() -> None:
    config = pb.AvatarConfig(
        body_type="robot",
        primary_color="#112233",
        secondary_color="#445566",
        height=1.75,
        custom_model_url="https://example.com/m.glb",
    )
    ours = pb.Message(presence_event=pb.PresenceEvent(data=pb.PresenceData(avatar_config=config)))

    theirs = layout().Message.FromString(ours.SerializeToString())

    assert as_fields(theirs.presence_event.data.avatar_config) == as_fields(config)
