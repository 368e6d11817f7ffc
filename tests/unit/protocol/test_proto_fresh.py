"""The committed generated protobuf code matches proto/graphwiz/core.proto and PROTOCOL.md §3."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest
from google.protobuf.descriptor import FieldDescriptor

from presence.protocol import pb

ROOT = Path(__file__).resolve().parents[3]
PROTO = Path("proto/graphwiz/core.proto")
GENERATED = ROOT / "presence" / "protocol"
GENERATED_FILES = ("core_pb2.py", "core_pb2.pyi")

# PROTOCOL.md section 3: the envelope graphwiz.core.Message.
MESSAGE_FIELDS = {
    "message_id": 1,
    "timestamp": 2,
    "type": 3,
    "seq": 4,
    "sender_id": 5,
}
PAYLOAD_FIELDS = {
    "client_hello": 10,
    "server_hello": 11,
    "position_update": 20,
    "voice_data": 21,
    "entity_spawn": 30,
    "entity_update": 31,
    "entity_despawn": 32,
    "chat_message": 40,
    "presence_event": 50,
    "ack": 60,
    "error": 61,
    "ping": 62,
    "pong": 63,
    "batch": 64,
    "kick_player": 70,
    "mute_player": 71,
    "lock_room": 72,
    "player_kicked": 73,
    "player_muted": 74,
    "room_locked": 75,
}
MESSAGE_TYPES = {
    "UNKNOWN": 0,
    "CLIENT_HELLO": 1,
    "SERVER_HELLO": 2,
    "POSITION_UPDATE": 10,
    "VOICE_DATA": 11,
    "ENTITY_SPAWN": 20,
    "ENTITY_UPDATE": 21,
    "ENTITY_DESPAWN": 22,
    "CHAT_MESSAGE": 30,
    "PRESENCE_JOIN": 40,
    "PRESENCE_LEAVE": 41,
    "PRESENCE_UPDATE": 42,
    "ACK": 60,
    "ERROR": 61,
    "PING": 62,
    "PONG": 63,
    "BATCH": 64,
    "KICK_PLAYER": 70,
    "MUTE_PLAYER": 71,
    "LOCK_ROOM": 72,
    "PLAYER_KICKED": 73,
    "PLAYER_MUTED": 74,
    "ROOM_LOCKED": 75,
}
ERROR_CODES = {
    "UNKNOWN": 0,
    "BAD_MESSAGE": 1,
    "UNAUTHORIZED": 2,
    "FORBIDDEN": 3,
    "RATE_LIMITED": 4,
    "TOO_LARGE": 5,
    "NOT_OWNER": 6,
    "ROOM_LOCKED": 7,
    "ROOM_FULL": 8,
    "RESYNC_REQUIRED": 9,
    "UNAVAILABLE": 10,
    "MUTED": 11,
    "INTERNAL": 12,
}
# PROTOCOL.md section 3: the other messages whose field numbers it spells out.
OTHER_FIELDS = {
    "Vector3": {"x": 1, "y": 2, "z": 3},
    "Quaternion": {"x": 1, "y": 2, "z": 3, "w": 4},
    "PositionUpdate": {"entity_id": 1, "position": 2, "rotation": 3, "sequence_number": 4},
    "VoiceData": {"from_client_id": 1, "audio_data": 2, "sequence_number": 3, "codec": 4},
    "AvatarConfig": {
        "body_type": 1,
        "primary_color": 2,
        "secondary_color": 3,
        "height": 4,
        "custom_model_url": 5,
    },
    "EntitySpawn": {"entity_id": 1, "template_id": 2, "owner_id": 3, "components": 4},
    "EntityUpdate": {"entity_id": 1, "components": 2},
    "EntityDespawn": {"entity_id": 1},
    "ChatMessage": {"from_client_id": 1, "message": 2, "timestamp": 3, "type": 4},
    "PresenceEvent": {"client_id": 1, "event_type": 2, "data": 3},
    "PresenceData": {
        "display_name": 1,
        "avatar_url": 2,
        "position": 3,
        "rotation": 4,
        "avatar_config": 5,
        "host_client_id": 6,
    },
    "WorldState": {"entities": 1, "players": 2, "last_update": 3, "recent_chat": 4},
    "EntitySnapshot": {
        "id": 1,
        "template_id": 2,
        "position": 3,
        "rotation": 4,
        "components": 5,
        "owner_id": 6,
    },
    "PlayerSnapshot": {
        "client_id": 1,
        "display_name": 2,
        "avatar_url": 3,
        "position": 4,
        "rotation": 5,
        "avatar_config": 6,
    },
    "ClientHello": {
        "client_id": 1,
        "display_name": 2,
        "auth_token": 3,
        "requested_room": 4,
        "avatar_url": 5,
        "avatar_config": 6,
        "capabilities": 7,
    },
    "ServerHello": {
        "server_version": 1,
        "assigned_client_id": 2,
        "room_id": 3,
        "initial_state": 4,
        "session_id": 5,
        "resumed": 6,
        "host_client_id": 7,
        "heartbeat_interval_ms": 8,
        "capabilities": 9,
    },
    "Ack": {"up_to_seq": 1, "message_id": 2},
    "Error": {"code": 1, "message": 2, "retry_after_ms": 3, "ref_message_id": 4},
    "Ping": {"client_time_ms": 1},
    "Pong": {"client_time_ms": 1, "server_time_ms": 2},
    "Batch": {"messages": 1},
    "KickPlayer": {"target_client_id": 1, "reason": 2},
    "MutePlayer": {"target_client_id": 1, "muted": 2, "reason": 3},
    "LockRoom": {"locked": 1, "reason": 2},
    "PlayerKicked": {"kicked_client_id": 1, "kicked_by_client_id": 2, "reason": 3},
    "PlayerMuted": {"muted_client_id": 1, "muted": 2, "reason": 3},
    "RoomLocked": {"locked": 1, "locked_by_client_id": 2, "reason": 3},
}
# PROTOCOL.md section 3 spells out these types: int32 where upstream has int32.
FIELD_TYPES = {
    ("VoiceData", "from_client_id"): "string",
    ("VoiceData", "audio_data"): "bytes",
    ("VoiceData", "sequence_number"): "int32",
    ("VoiceData", "codec"): "int32",
    ("AvatarConfig", "height"): "float",
}

MESSAGE = pb.Message.DESCRIPTOR
MESSAGE_TYPE_ENUM = pb.DESCRIPTOR.enum_types_by_name["MessageType"]
ERROR_CODE_ENUM = pb.Error.DESCRIPTOR.enum_types_by_name["ErrorCode"]


@pytest.fixture(scope="module")
def regenerated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh protoc run over core.proto, written to a temporary directory."""
    out = tmp_path_factory.mktemp("proto")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            f"-I{PROTO.parent}",
            f"--python_out={out}",
            f"--pyi_out={out}",
            str(PROTO),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, f"protoc failed on {PROTO}:\n{result.stderr}"
    return out


@pytest.mark.parametrize("name", GENERATED_FILES)
def test_committed_generated_code_matches_core_proto(regenerated: Path, name: str) -> None:
    fresh = (regenerated / name).read_bytes()
    committed = (GENERATED / name).read_bytes()
    assert committed == fresh, (
        f"presence/protocol/{name} is stale against {PROTO}: run `make proto` and commit it"
    )


@pytest.mark.parametrize(("field", "number"), MESSAGE_FIELDS.items())
def test_message_envelope_field_number(field: str, number: int) -> None:
    assert MESSAGE.fields_by_name[field].number == number


@pytest.mark.parametrize(("field", "number"), PAYLOAD_FIELDS.items())
def test_message_payload_field_number(field: str, number: int) -> None:
    descriptor = MESSAGE.fields_by_name[field]
    assert descriptor.number == number
    assert descriptor.containing_oneof is MESSAGE.oneofs_by_name["payload"]


def test_message_has_only_the_fields_protocol_md_lists() -> None:
    assert set(MESSAGE.fields_by_name) == set(MESSAGE_FIELDS) | set(PAYLOAD_FIELDS)


@pytest.mark.parametrize(("name", "value"), MESSAGE_TYPES.items())
def test_message_type_value(name: str, value: int) -> None:
    assert MESSAGE_TYPE_ENUM.values_by_name[name].number == value


def test_message_type_has_only_the_values_protocol_md_lists() -> None:
    assert set(MESSAGE_TYPE_ENUM.values_by_name) == set(MESSAGE_TYPES)


@pytest.mark.parametrize(("name", "value"), ERROR_CODES.items())
def test_error_code_value(name: str, value: int) -> None:
    assert ERROR_CODE_ENUM.values_by_name[name].number == value


def test_error_code_has_only_the_values_protocol_md_lists() -> None:
    assert set(ERROR_CODE_ENUM.values_by_name) == set(ERROR_CODES)


def test_every_message_of_protocol_md_has_exactly_its_listed_fields() -> None:
    for message, listed in OTHER_FIELDS.items():
        descriptor = pb.DESCRIPTOR.message_types_by_name[message]
        assert set(descriptor.fields_by_name) == set(listed), message


_TYPE_NAMES = {
    FieldDescriptor.TYPE_STRING: "string",
    FieldDescriptor.TYPE_BYTES: "bytes",
    FieldDescriptor.TYPE_INT32: "int32",
    FieldDescriptor.TYPE_FLOAT: "float",
}


@pytest.mark.parametrize(("message", "field"), FIELD_TYPES)
def test_field_has_the_type_protocol_md_gives(message: str, field: str) -> None:
    descriptor = pb.DESCRIPTOR.message_types_by_name[message].fields_by_name[field]
    assert _TYPE_NAMES.get(descriptor.type) == FIELD_TYPES[(message, field)]


@pytest.mark.parametrize(
    ("message", "field", "number"),
    [(m, f, n) for m, fields in OTHER_FIELDS.items() for f, n in fields.items()],
)
def test_message_field_number(message: str, field: str, number: int) -> None:
    descriptor = pb.DESCRIPTOR.message_types_by_name[message]
    assert descriptor.fields_by_name[field].number == number


def test_committed_javascript_schema_matches_core_proto() -> None:
    """presence/static/presence/schema.js is what ``make proto`` writes from core.proto."""
    spec = importlib.util.spec_from_file_location("proto_js", ROOT / "scripts" / "proto_js.py")
    assert spec is not None and spec.loader is not None
    proto_js = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(proto_js)
    committed = (ROOT / "presence" / "static" / "presence" / "schema.js").read_text()
    assert committed == proto_js.module_text(), (
        "presence/static/presence/schema.js is stale against core.proto: "
        "run `make proto` and commit it"
    )
