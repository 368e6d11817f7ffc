"""The legacy GraphWiz-XR wire (issue 14): frames both ways, detection, bounds.

Frames are written and read here by the test client's own code
(:mod:`tests.clients.legacy`), not by the module under test.
"""

from __future__ import annotations

import json
import struct

import pytest

from presence.protocol import legacy, pb
from presence.protocol.codes import ErrorCode
from presence.protocol.errors import BadFrame
from presence.protocol.legacy import LegacyLimits, Wire, WireRefused
from presence.protocol.validation import FieldLimits, validate_client_message
from tests.clients import legacy as lg

LIMITS = LegacyLimits()
ME = "c0123456789abcde"


def decode(data: bytes | str) -> pb.Message:
    message = legacy.decode(data, sender_id=ME, limits=LIMITS)
    validate_client_message(message, FieldLimits())  # what the session does next
    return message


def refused(data: bytes | str) -> BadFrame:
    with pytest.raises(BadFrame) as info:
        decode(data)
    return info.value


def rendered(message: pb.Message) -> list[lg.Frame]:
    return [lg.parse(f) for f in legacy.frames_of(message)]


# --- inbound: every type a client sends ------------------------------------------


def test_client_hello_becomes_client_hello() -> None:
    hello = decode(
        lg.frame(
            lg.CLIENT_HELLO,
            {"clientId": "u-1", "displayName": "Alice", "authToken": "t", "requestedRoom": "hall"},
            frame_id="m-1",
        )
    )
    assert hello.message_id == "m-1"
    assert (hello.client_hello.display_name, hello.client_hello.auth_token) == ("Alice", "t")
    assert hello.client_hello.requested_room == "hall"


def test_pose_of_the_senders_own_id_moves_its_avatar() -> None:
    payload = {
        "entityId": ME,
        "position": {"x": 1, "y": 2, "z": 3},
        "rotation": {"x": 0, "y": 0, "z": 0, "w": 1},
        "sequenceNumber": 4,
        "timestamp": 1700000000000,  # the client's own field: ignored
    }
    update = decode(lg.frame(lg.POSITION_UPDATE, payload)).position_update
    assert update.entity_id == ""
    assert (update.position.x, update.position.z, update.rotation.w) == (1, 3, 1)
    assert update.sequence_number == 4


def test_pose_of_another_entity_keeps_its_id() -> None:
    update = decode(lg.frame(lg.POSITION_UPDATE, {"entityId": "box"})).position_update
    assert update.entity_id == "box"


def test_voice_data_is_proto3_json() -> None:
    voice = decode(lg.frame(lg.VOICE_DATA, {"audioData": "AAEC", "codec": 1})).voice_data
    assert (voice.audio_data, voice.codec) == (b"\x00\x01\x02", 1)


def test_entity_spawn_keeps_string_components_and_writes_objects_as_json() -> None:
    payload = {
        "entityId": ME,
        "templateId": "player",
        "ownerId": "the client's word",
        "components": {"color": "red", "position": {"x": 1}, "hp": 3, "gone": None},
    }
    spawn = decode(lg.frame(lg.ENTITY_SPAWN, payload)).entity_spawn
    assert (spawn.entity_id, spawn.template_id) == (ME, "player")
    assert dict(spawn.components) == {"color": "red", "position": '{"x":1}', "hp": "3"}


def test_entity_update_components_are_utf8_bytes() -> None:
    payload = {"entityId": "box", "components": {"color": "blue", "pose": {"y": 2}}}
    update = decode(lg.frame(lg.ENTITY_UPDATE, payload)).entity_update
    assert dict(update.components) == {"color": b"blue", "pose": b'{"y":2}'}


def test_entity_despawn() -> None:
    assert (
        decode(lg.frame(lg.ENTITY_DESPAWN, {"entityId": "box"})).entity_despawn.entity_id == "box"
    )


def test_chat_message() -> None:
    payload = {"fromClientId": "spoof", "message": "hi", "type": 2, "timestamp": 5}
    chat = decode(lg.frame(lg.CHAT_MESSAGE, payload)).chat_message
    assert (chat.message, chat.type) == ("hi", pb.SHOUT)


def test_presence_update_in_the_clients_flat_shape() -> None:
    payload = {
        "clientId": ME,
        "displayName": "Alice",
        "avatarUrl": "",
        "position": {"x": 0, "y": 0, "z": 0},
        "avatarConfig": {"bodyType": "robot", "primaryColor": "#f00", "height": 1.7},
    }
    event = decode(lg.frame(lg.PRESENCE_UPDATE, payload)).presence_event
    assert event.event_type == pb.UPDATE
    assert event.data.display_name == "Alice"
    assert event.data.avatar_config.primary_color == "#f00"


def test_presence_update_in_the_presence_event_shape() -> None:
    payload = {"clientId": ME, "eventType": 2, "data": {"displayName": "Bob"}}
    event = decode(lg.frame(lg.PRESENCE_UPDATE, payload)).presence_event
    assert (event.event_type, event.data.display_name) == (pb.UPDATE, "Bob")


def test_binary_and_text_pings_become_pings() -> None:
    assert decode(lg.frame(lg.PING, {})).WhichOneof("payload") == "ping"
    text = '{"messageId": "ping-1", "timestamp": 1, "type": 255, "payload": null}'
    assert decode(text).WhichOneof("payload") == "ping"


def test_empty_payload_is_an_empty_object() -> None:
    raw = bytes([1]) + b"i" + struct.pack(">QB", 0, lg.ENTITY_DESPAWN)
    assert decode(raw).WhichOneof("payload") == "entity_despawn"


# --- inbound: what is refused, and how ------------------------------------------


@pytest.mark.parametrize(
    ("data", "code", "words"),
    [
        (b"", ErrorCode.BAD_MESSAGE, "needs at least 10"),
        (bytes([5]) + b"abc" + bytes(9), ErrorCode.BAD_MESSAGE, "shorter than its id length"),
        (bytes([129]) + b"i" * 129 + bytes(9), ErrorCode.TOO_LARGE, "id of 129 bytes: at most 128"),
        (bytes([2]) + b"\xff\xfe" + bytes(9), ErrorCode.BAD_MESSAGE, "id is not UTF-8"),
        (lg.frame(30)[:-2] + b"\xc3\x28", ErrorCode.BAD_MESSAGE, "payload is not UTF-8"),
        (lg.frame(30)[:-2] + b"{nope", ErrorCode.BAD_MESSAGE, "payload is not JSON"),
        (lg.frame(30)[:-2] + b"[1, 2]", ErrorCode.BAD_MESSAGE, "must be a JSON object"),
        (lg.frame(99, {}), ErrorCode.BAD_MESSAGE, "type 99 is not relayed here"),
        (lg.frame(2, {}), ErrorCode.BAD_MESSAGE, "a client sends types 1, 10"),
        (lg.frame(40, {}), ErrorCode.BAD_MESSAGE, "type 40 comes from the server"),
        (lg.frame(41, {}), ErrorCode.BAD_MESSAGE, "type 41 comes from the server"),
        (lg.frame(10, {"position": {"x": "up"}}), ErrorCode.BAD_MESSAGE, "payload.position.x"),
        (lg.frame(10, {"position": {"x": "NaN"}}), ErrorCode.BAD_MESSAGE, "finite"),
        (lg.frame(20, {"entityId": "e", "components": [1]}), ErrorCode.BAD_MESSAGE, "components"),
        (lg.frame(30, {"message": "x" * 2001}), ErrorCode.TOO_LARGE, "chat message longer"),
        (lg.frame(30, {"message": "  "}), ErrorCode.BAD_MESSAGE, "chat message is empty"),
        ("hello", ErrorCode.BAD_MESSAGE, "text frames carry only the keep-alive"),
        ('{"type": 30}', ErrorCode.BAD_MESSAGE, "text frames carry only the keep-alive"),
    ],
)
def test_bad_frames_are_refused_with_a_clear_text(data: bytes | str, code: int, words: str) -> None:
    bad = refused(data)
    assert bad.code == code
    assert words in bad.message


def test_json_deeper_than_the_limit_is_too_large_and_the_limit_itself_passes() -> None:
    def nested(levels: int) -> object:  # ``levels`` objects, one inside the other
        value: object = "x"
        for _ in range(levels):
            value = {"a": value}
        return value

    at_limit = lg.frame(lg.CHAT_MESSAGE, {"message": "hi", "extra": nested(LIMITS.json_depth - 1)})
    assert decode(at_limit).chat_message.message == "hi"
    over = lg.frame(lg.CHAT_MESSAGE, {"message": "hi", "extra": nested(LIMITS.json_depth)})
    bad = refused(over)
    assert (bad.code, bad.message) == (
        ErrorCode.TOO_LARGE,
        "type 30 payload nested deeper than 16 levels",
    )


def test_json_too_deep_for_the_parser_is_too_large() -> None:
    data = lg.frame(30)[:-2] + b"[" * 5000 + b"]" * 5000
    assert refused(data).code == ErrorCode.TOO_LARGE


def test_an_id_of_exactly_the_limit_is_accepted() -> None:
    assert (
        decode(lg.frame(lg.ENTITY_DESPAWN, {"entityId": "e"}, frame_id="i" * 128)).message_id
        == "i" * 128
    )


def test_error_texts_never_echo_the_clients_values() -> None:
    secret = "s3cr3t-value"
    bad = refused(lg.frame(10, {"position": {"x": secret}}))
    assert secret not in bad.message


# --- detection ----------------------------------------------------------------


def test_a_legacy_first_frame_is_detected() -> None:
    assert legacy.is_legacy_frame(lg.frame(lg.CLIENT_HELLO, {"displayName": "A"}))
    assert legacy.is_legacy_frame(lg.frame(lg.CLIENT_HELLO, {}))
    assert legacy.is_legacy_frame('{"type": 255, "payload": null}')


def test_a_frame_without_a_json_object_is_not_detected_as_legacy() -> None:
    assert not legacy.is_legacy_frame(bytes(10))  # valid framing, empty payload
    assert not legacy.is_legacy_frame(bytes(10) + b"[1]")


@pytest.mark.parametrize(
    "message",
    [
        pb.Message(client_hello=pb.ClientHello(display_name="A", auth_token="x" * 200)),
        pb.Message(ping=pb.Ping(client_time_ms=1)),
        pb.Message(chat_message=pb.ChatMessage(message='{"a": 1}' * 20)),
        pb.Message(),
    ],
)
def test_protobuf_and_json_first_frames_are_not_legacy(message: pb.Message) -> None:
    assert not legacy.is_legacy_frame(message.SerializeToString())
    assert not legacy.is_legacy_frame(json.dumps({"chatMessage": {"message": "hi"}}))


@pytest.mark.parametrize(
    ("subprotocols", "query", "wire"),
    [
        ([], {}, Wire.PROTOCOL),  # the server speaks first (PROTOCOL.md section 4)
        (["chat"], {"user_id": "a"}, Wire.PROTOCOL),
        ([], {"room_id": "r", "user_id": "a", "client_id": "c"}, Wire.SNIFF),  # the hub-client
        (["chat"], {"room_id": "r"}, Wire.SNIFF),
        (["graphwiz.proto.v1"], {"room_id": "r"}, Wire.PROTOCOL),
        ([], {"room_id": "r", "format": "json"}, Wire.PROTOCOL),
        (["graphwiz.proto.v1"], {}, Wire.PROTOCOL),
        (["graphwiz.json.v1"], {}, Wire.PROTOCOL),
        (["graphwiz.v9"], {}, Wire.PROTOCOL),  # refused later by the negotiation, as before
        ([], {"format": "json"}, Wire.PROTOCOL),
        ([], {"protocol": "legacy"}, Wire.LEGACY),
        ([], {"protocol": "LEGACY"}, Wire.LEGACY),
    ],
)
def test_the_handshake_chooses_the_wire(
    subprotocols: list[str], query: dict[str, str], wire: Wire
) -> None:
    assert legacy.choose_wire(subprotocols, query) is wire


@pytest.mark.parametrize(
    ("subprotocols", "query", "words"),
    [
        ([], {"protocol": "grpc"}, "protocol must be legacy"),
        (["graphwiz.proto.v1"], {"protocol": "legacy"}, "exclude each other"),
    ],
)
def test_a_bad_protocol_parameter_is_refused(
    subprotocols: list[str], query: dict[str, str], words: str
) -> None:
    with pytest.raises(WireRefused, match=words):
        legacy.choose_wire(subprotocols, query)


# --- outbound: every server message a legacy client gets ---------------------------


def stamped(
    message: pb.Message, sender: str = "c-sender", now: int = 1_700_000_000_123
) -> pb.Message:
    message.sender_id = sender
    message.timestamp = now
    return message


def test_server_hello_is_text_then_the_world_for_a_late_joiner() -> None:
    state = pb.WorldState(
        players=[
            pb.PlayerSnapshot(
                client_id="c-a",
                display_name="Alice",
                position=pb.Vector3(x=2),
                avatar_config=pb.AvatarConfig(primary_color="#f00"),
            )
        ],
        entities=[
            pb.EntitySnapshot(
                id="c-a",
                template_id="player",
                owner_id="c-a",
                components={"avatarConfig": '{"primaryColor":"#f00"}', "color": "red"},
                position=pb.Vector3(x=4),
            )
        ],
    )
    state.recent_chat.add(from_client_id="c-a", message="earlier", timestamp=5)
    hello = pb.ServerHello(
        assigned_client_id="c-me", room_id="hall", server_version="v", initial_state=state
    )
    text, update, spawn, pose, chat = rendered(stamped(pb.Message(server_hello=hello), sender=""))
    assert (chat.type, chat.frame_id, chat.payload["message"]) == (30, "c-a", "earlier")
    assert chat.payload["timestamp"] == 5
    assert text.text == {
        "type": "SERVER_HELLO",
        "room_id": "hall",
        "client_id": "c-me",
        "timestamp": 1_700_000_000,
        "server_version": "v",
        "host_client_id": "",
    }
    assert (update.type, update.frame_id, update.payload["clientId"]) == (42, "c-a", "c-a")
    assert update.payload["eventType"] == 2
    assert update.payload["displayName"] == update.payload["data"]["displayName"] == "Alice"
    assert update.payload["position"]["x"] == 2
    assert (spawn.type, spawn.frame_id, spawn.payload["entityId"]) == (20, "c-a", "c-a")
    assert spawn.payload["components"] == {"avatarConfig": {"primaryColor": "#f00"}, "color": "red"}
    assert (pose.type, pose.payload["entityId"], pose.payload["position"]["x"]) == (10, "c-a", 4)


def test_an_avatar_pose_goes_as_type_10_with_the_senders_id() -> None:
    message = stamped(pb.Message(position_update=pb.PositionUpdate(position=pb.Vector3(x=1.5))))
    [frame] = rendered(message)
    assert (frame.type, frame.frame_id, frame.timestamp) == (10, "c-sender", 1_700_000_000_123)
    assert frame.payload["entityId"] == "c-sender"
    assert frame.payload["position"] == {"x": 1.5, "y": 0.0, "z": 0.0}


def test_an_entity_pose_keeps_its_entity_id() -> None:
    message = stamped(pb.Message(position_update=pb.PositionUpdate(entity_id="box")))
    assert rendered(message)[0].payload["entityId"] == "box"


def test_join_and_leave_go_as_type_40_and_update_as_42() -> None:
    def event(kind: int) -> pb.Message:
        data = pb.PresenceData(display_name="Al")
        return stamped(
            pb.Message(presence_event=pb.PresenceEvent(client_id="c-a", event_type=kind, data=data))
        )

    [join] = rendered(event(pb.JOIN))
    [leave] = rendered(event(pb.LEAVE))
    [update] = rendered(event(pb.UPDATE))
    assert (join.type, join.payload["eventType"], join.payload["data"]["displayName"]) == (
        40,
        0,
        "Al",
    )
    assert (leave.type, leave.payload["clientId"], leave.payload["eventType"]) == (40, "c-a", 1)
    assert (update.type, update.payload["displayName"]) == (42, "Al")


def test_a_despawn_also_removes_the_entity_as_a_player() -> None:
    message = stamped(pb.Message(entity_despawn=pb.EntityDespawn(entity_id="c-a")))
    despawn, leave = rendered(message)
    assert (despawn.type, despawn.payload) == (22, {"entityId": "c-a"})
    assert (leave.type, leave.payload) == (40, {"clientId": "c-a", "eventType": 1})


def test_spawn_update_chat_and_voice() -> None:
    spawn = stamped(
        pb.Message(
            entity_spawn=pb.EntitySpawn(
                entity_id="e", owner_id="c-sender", components={"p": '{"x":1}'}
            )
        )
    )
    [s] = rendered(spawn)
    assert (s.type, s.payload["ownerId"], s.payload["components"]) == (
        20,
        "c-sender",
        {"p": {"x": 1}},
    )
    update = stamped(
        pb.Message(
            entity_update=pb.EntityUpdate(entity_id="e", components={"a": b"1", "b": b"\xff"})
        )
    )
    [u] = rendered(update)
    assert (u.type, u.payload["components"]) == (21, {"a": "1", "b": "base64:/w=="})
    chat = stamped(
        pb.Message(
            chat_message=pb.ChatMessage(from_client_id="c-sender", message="hi", timestamp=7)
        )
    )
    [c] = rendered(chat)
    assert (c.type, c.payload["fromClientId"], c.payload["message"], c.payload["timestamp"]) == (
        30,
        "c-sender",
        "hi",
        7,
    )
    voice = stamped(
        pb.Message(voice_data=pb.VoiceData(from_client_id="c-sender", audio_data=b"\x00"))
    )
    [v] = rendered(voice)
    assert (v.type, v.payload["audioData"]) == (11, "AA==")


def test_errors_are_legacy_frames_of_type_61() -> None:
    error = stamped(
        pb.Message(
            error=pb.Error(code=ErrorCode.TOO_LARGE, message="too big", ref_message_id="m-1")
        ),
        sender="",
    )
    [frame] = rendered(error)
    assert (frame.type, frame.frame_id) == (61, "")
    assert (frame.payload["code"], frame.payload["message"], frame.payload["refMessageId"]) == (
        5,
        "too big",
        "m-1",
    )


def test_moderation_broadcasts_keep_their_type_numbers() -> None:
    kicked = stamped(pb.Message(player_kicked=pb.PlayerKicked(kicked_client_id="c-b")))
    assert rendered(kicked)[0].type == 73


def test_a_pong_is_the_text_keepalive_answer() -> None:
    pong = stamped(pb.Message(pong=pb.Pong(server_time_ms=42)))
    [frame] = rendered(pong)
    assert frame.text == {"type": 255, "timestamp": 42}


@pytest.mark.parametrize(
    "message",
    [
        pb.Message(ack=pb.Ack(message_id="m")),
        pb.Message(ping=pb.Ping(client_time_ms=1)),
        pb.Message(batch=pb.Batch()),
    ],
)
def test_what_a_legacy_client_cannot_read_is_not_sent(message: pb.Message) -> None:
    assert legacy.frames_of(message) == []


def test_every_client_type_round_trips_through_the_server() -> None:
    """What a legacy client sends reaches another legacy client as the same type."""
    sent = {
        lg.POSITION_UPDATE: {"entityId": "box", "position": {"x": 1, "y": 0, "z": 0}},
        lg.VOICE_DATA: {"audioData": "AAE="},
        lg.ENTITY_SPAWN: {"entityId": "box", "templateId": "crate", "components": {"c": {"x": 1}}},
        lg.ENTITY_UPDATE: {"entityId": "box", "components": {"c": {"x": 2}}},
        lg.ENTITY_DESPAWN: {"entityId": "box"},
        lg.CHAT_MESSAGE: {"message": "hi"},
        lg.PRESENCE_UPDATE: {"displayName": "Al"},
    }
    for kind, payload in sent.items():
        message = stamped(decode(lg.frame(kind, payload)))
        first = rendered(message)[0]
        assert first.type == kind
        for key, value in payload.items():
            assert first.payload[key] == value, (kind, key)


def test_build_frame_cuts_an_overlong_id() -> None:
    frame = lg.parse(legacy.build_frame("x" * 300, 1, 10, {}))
    assert frame.frame_id == "x" * 255
