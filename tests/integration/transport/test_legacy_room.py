"""Legacy GraphWiz-XR clients beside protobuf clients in one room (issue 14), both layers."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid

import pytest
from django.contrib.auth import get_user_model
from rest_framework_simplejwt.tokens import AccessToken

from presence import rooms
from presence.protocol import pb
from presence.protocol.codes import CloseCode, ErrorCode
from tests.clients import legacy as lg
from tests.clients.communicator import ProtocolClient, pose
from tests.clients.legacy import CommunicatorLegacyClient, Frame

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("channel_layer_kind"),
]
PROTO = ["graphwiz.proto.v1"]


async def legacy_joined(room: str, user: str, name: str) -> CommunicatorLegacyClient:
    """A hub-client as it connects: room_id, user_id, client_id in the URL; hello first."""
    client = CommunicatorLegacyClient(
        f"/ws/{room}?room_id={room}&user_id={user}&client_id={uuid.uuid4()}"
    )
    await client.open()
    await client.say_hello(name)
    return client


async def proto_joined(room: str, user: str, name: str) -> ProtocolClient:
    client = ProtocolClient(f"/ws/{room}?user_id={user}&display_name={name}", subprotocols=PROTO)
    await client.join()
    return client


def nested(depth: int) -> object:
    """A JSON value ``depth`` lists deep."""
    value: object = 1
    for _ in range(depth):
        value = [value]
    return value


async def test_hello_is_a_text_frame_with_the_server_assigned_id() -> None:
    alice = await legacy_joined("hall", "alice", "Alice")
    assert alice.hello["room_id"] == "hall"
    assert alice.hello["client_id"].startswith("c")
    assert isinstance(alice.hello["timestamp"], int)
    assert abs(alice.hello["timestamp"] - time.time()) < 60  # seconds, not ms
    await alice.close()


async def test_mixed_room_whole_session() -> None:
    """Hello, avatar, spawn, pose, chat both ways, a late joiner's world, a leaver vanishing."""
    alice = await legacy_joined("hall", "alice", "Alice")
    pat = await proto_joined("hall", "pat", "Pat")
    joined = await alice.recv_type(lg.PRESENCE_JOIN)
    assert (joined.frame_id, joined.payload["clientId"], joined.payload["eventType"]) == (
        pat.client_id,
        pat.client_id,
        0,
    )
    assert joined.payload["data"]["displayName"] == "Pat"

    await alice.spawn_avatar("#00ff00")
    spawn = await pat.recv_kind("entity_spawn")
    assert (spawn.entity_spawn.entity_id, spawn.entity_spawn.owner_id) == (alice.client_id,) * 2
    assert '"primaryColor":"#00ff00"' in spawn.entity_spawn.components["avatarConfig"]

    await alice.avatar_update("Alice", "#00ff00")
    update = await pat.recv_kind("presence_event")
    assert update.presence_event.event_type == pb.UPDATE
    assert update.presence_event.data.avatar_config.primary_color == "#00ff00"

    await alice.move(3.0)
    moved = await pat.recv_kind("position_update")
    assert (moved.sender_id, moved.position_update.entity_id) == (alice.client_id, "")
    assert moved.position_update.position.x == 3.0

    await alice.chat("hello from legacy")
    chat = await pat.recv_kind("chat_message")
    assert (chat.chat_message.from_client_id, chat.chat_message.message) == (
        alice.client_id,
        "hello from legacy",
    )

    await pat.send(pose(5.0))
    seen = await alice.recv_type(lg.POSITION_UPDATE)
    assert (seen.frame_id, seen.payload["entityId"]) == (pat.client_id, pat.client_id)
    assert seen.payload["position"]["x"] == 5.0
    await pat.send(pb.Message(chat_message=pb.ChatMessage(message="hi legacy")))
    said = await alice.recv_type(lg.CHAT_MESSAGE)
    assert (said.frame_id, said.payload["fromClientId"], said.payload["message"]) == (
        pat.client_id,
        pat.client_id,
        "hi legacy",
    )

    # The late joiner: every present member's 42, every live entity's 20.
    bob = await legacy_joined("hall", "bob", "Bob")
    world: list[Frame] = []
    while not (
        {f.payload.get("clientId") for f in world if f.type == 42}
        >= {alice.client_id, pat.client_id}
        and any(f.type == 20 for f in world)
    ):
        world.append(await bob.recv())
    updates = {f.payload["clientId"]: f.payload for f in world if f.type == lg.PRESENCE_UPDATE}
    assert updates[alice.client_id]["displayName"] == "Alice"
    assert updates[alice.client_id]["avatarConfig"]["primaryColor"] == "#00ff00"  # flat, as read
    assert updates[alice.client_id]["data"]["avatarConfig"]["primaryColor"] == "#00ff00"
    assert updates[pat.client_id]["position"]["x"] == 5.0
    [avatar] = [f for f in world if f.type == lg.ENTITY_SPAWN]
    assert (avatar.payload["entityId"], avatar.payload["ownerId"]) == (alice.client_id,) * 2
    assert avatar.payload["components"]["avatarConfig"] == {"primaryColor": "#00ff00"}
    assert (await alice.recv_type(lg.PRESENCE_JOIN)).payload["data"]["displayName"] == "Bob"
    assert (await pat.recv_kind("presence_event")).presence_event.client_id == bob.client_id

    # The leaver: type 40 LEAVE for its id and for its avatar entity; despawned.
    await alice.close()
    gone = [await bob.recv_until(lambda f: f.type in (40, 22)) for _ in range(3)]
    assert [
        (f.type, f.payload.get("clientId") or f.payload.get("entityId"), f.payload.get("eventType"))
        for f in gone
    ] == [
        (lg.PRESENCE_JOIN, alice.client_id, 1),
        (lg.ENTITY_DESPAWN, alice.client_id, None),
        (lg.PRESENCE_JOIN, alice.client_id, 1),
    ]
    leave = await pat.recv_kind("presence_event")
    assert (leave.presence_event.event_type, leave.presence_event.client_id) == (
        pb.LEAVE,
        alice.client_id,
    )
    assert (await pat.recv_kind("entity_despawn")).entity_despawn.entity_id == alice.client_id
    await bob.close()
    await pat.close()


async def test_two_legacy_clients_see_each_other_move_and_chat() -> None:
    alice = await legacy_joined("hall", "alice", "Alice")
    bob = await legacy_joined("hall", "bob", "Bob")
    assert (await alice.recv_type(lg.PRESENCE_JOIN)).payload["clientId"] == bob.client_id
    await bob.move(2.5)
    moved = await alice.recv_type(lg.POSITION_UPDATE)
    assert (moved.frame_id, moved.payload["entityId"], moved.payload["position"]["x"]) == (
        bob.client_id,
        bob.client_id,
        2.5,
    )
    await alice.chat("yo")
    said = await bob.recv_type(lg.CHAT_MESSAGE)
    assert (said.payload["fromClientId"], said.payload["message"]) == (alice.client_id, "yo")
    assert isinstance(said.payload["timestamp"], int)
    await alice.close()
    await bob.close()


async def test_keepalive_ping_is_answered_and_never_relayed() -> None:
    alice = await legacy_joined("hall", "alice", "Alice")
    pat = await proto_joined("hall", "pat", "Pat")
    await alice.recv_type(lg.PRESENCE_JOIN)
    await alice.send_text('{"messageId": "ping-1", "timestamp": 1, "type": 255, "payload": null}')
    answer = await alice.recv()
    assert answer.text is not None and answer.text["type"] == 255
    assert await pat.communicator.receive_nothing(timeout=0.2)
    await alice.close()
    await pat.close()


async def test_bad_legacy_frames_get_a_legacy_error_and_others_are_unaffected(
    auth_log: pytest.LogCaptureFixture,
) -> None:
    alice = await legacy_joined("hall", "alice", "Alice")
    bob = await legacy_joined("hall", "bob", "Bob")
    assert (await bob.recv_type(lg.PRESENCE_UPDATE)).payload["clientId"] == alice.client_id
    await alice.recv_type(lg.PRESENCE_JOIN)
    cases = [
        (b"\x03ab", ErrorCode.BAD_MESSAGE, "at least"),
        (
            lg.frame(lg.POSITION_UPDATE, {"position": {"x": "left"}}),
            ErrorCode.BAD_MESSAGE,
            "position.x",
        ),
        (lg.frame(31, {"emoji": "x"}), ErrorCode.BAD_MESSAGE, "type 31"),
        (lg.frame(lg.PRESENCE_LEAVE, {}), ErrorCode.BAD_MESSAGE, "type 42"),
        (b"\x02\xff\xfe" + bytes(9) + b"{}", ErrorCode.BAD_MESSAGE, "not UTF-8"),
        (bytes([200]) + b"i" * 200 + bytes(9), ErrorCode.TOO_LARGE, "at most 128"),
        (lg.frame(lg.CHAT_MESSAGE, {"message": nested(17)}), ErrorCode.TOO_LARGE, "deeper"),
        (lg.frame(lg.CHAT_MESSAGE, {"message": "x" * 2001}), ErrorCode.TOO_LARGE, "chat message"),
    ]
    for data, code, words in cases:
        await alice.send_bytes(data)
        error = await alice.recv()
        assert error.type == lg.ERROR, error
        assert error.payload["code"] == code and words in error.payload["message"], error
    await alice.send_text("not json")
    assert (await alice.recv()).payload["code"] == ErrorCode.BAD_MESSAGE
    await bob.move(1.0)  # the room goes on
    assert (await alice.recv_type(lg.POSITION_UPDATE)).frame_id == bob.client_id
    assert await bob.nothing_pending()
    assert not [r for r in auth_log.records if r.levelno >= logging.ERROR]
    await alice.close()
    await bob.close()


async def test_ten_bad_legacy_frames_in_a_row_close_4007() -> None:
    alice = await legacy_joined("hall", "alice", "Alice")
    for _ in range(10):
        await alice.send(77, {})
    code, frames = await alice.expect_close()
    assert code == CloseCode.INVALID_MESSAGES
    assert all(f.type == lg.ERROR for f in frames)


async def test_protocol_legacy_parameter_picks_the_wire_without_sniffing(settings) -> None:
    settings.PRESENCE = {**settings.PRESENCE, "LEGACY_DETECT_SECONDS": 0.0}
    alice = CommunicatorLegacyClient("/ws/hall?user_id=alice&protocol=legacy")
    await alice.open()
    first = await alice.recv()  # the server speaks first, in the legacy wire
    assert first.text is not None and first.text["type"] == "SERVER_HELLO"
    await alice.close()


async def test_bad_protocol_parameter_is_refused_4400() -> None:
    client = ProtocolClient("/ws/hall?user_id=alice&protocol=grpc")
    accepted, _ = await client.open()
    assert accepted
    error = await client.recv()
    assert (
        error.error.code == ErrorCode.BAD_MESSAGE
        and "protocol must be legacy" in error.error.message
    )
    assert await client.expect_close() == CloseCode.BAD_REQUEST


async def test_a_json_client_asking_for_the_legacy_wire_reads_the_refusal_in_json() -> None:
    client = ProtocolClient(
        "/ws/hall?user_id=alice&protocol=legacy", subprotocols=["graphwiz.json.v1"], json=True
    )
    accepted, subprotocol = await client.open()
    assert accepted and subprotocol == "graphwiz.json.v1"
    frame = await client.recv_frame()
    assert frame.get("text") is not None, frame  # JSON, as negotiated, not binary protobuf
    assert "legacy" in frame["text"] and "BAD_MESSAGE" in frame["text"], frame
    assert await client.expect_close() == CloseCode.BAD_REQUEST


async def test_protobuf_client_that_waits_gets_its_hello_after_the_sniff_deadline(settings) -> None:
    # A hub-client-shaped handshake (room_id in the query) that then waits.
    settings.PRESENCE = {**settings.PRESENCE, "LEGACY_DETECT_SECONDS": 0.05}
    pat = ProtocolClient("/ws/hall?room_id=hall&user_id=pat")
    hello = await pat.join()
    assert hello.assigned_client_id
    assert (await pat.ping(7)).pong.client_time_ms == 7
    await pat.close()


async def test_a_protobuf_client_that_negotiates_nothing_gets_its_hello_at_once(settings) -> None:
    # PROTOCOL.md section 4: the server speaks first. A long sniffing window
    # must not delay a client that is not shaped like the hub-client.
    settings.PRESENCE = {**settings.PRESENCE, "LEGACY_DETECT_SECONDS": 30.0}
    pat = ProtocolClient("/ws/hall?user_id=pat")
    async with asyncio.timeout(5):
        hello = await pat.join()
    assert hello.assigned_client_id
    await pat.close()


async def test_protobuf_client_that_speaks_first_is_not_taken_for_legacy() -> None:
    pat = ProtocolClient("/ws/hall?user_id=pat")
    await pat.open()
    await pat.send(pb.Message(ping=pb.Ping(client_time_ms=9)))
    first = await pat.recv()
    assert first.WhichOneof("payload") == "server_hello"
    assert (await pat.recv()).pong.client_time_ms == 9
    await pat.close()


def _token(user) -> str:
    return str(AccessToken.for_user(user))


async def test_hello_token_authenticates_and_is_never_relayed(settings, auth_log) -> None:
    settings.PRESENCE = {**settings.PRESENCE, "DEV_AUTH": False}
    user = await get_user_model().objects.acreate(username="alice")
    token = _token(user)
    pat_user = await get_user_model().objects.acreate(username="pat")
    pat = ProtocolClient(f"/ws/hall?auth_token={_token(pat_user)}", subprotocols=PROTO)
    await pat.join()
    # The hub-client always names a user_id in the URL; outside development
    # mode the hello's token decides.
    alice = CommunicatorLegacyClient("/ws/hall?room_id=hall&user_id=whoever")
    await alice.open()
    await alice.say_hello("Alice", token=token)
    joined = await pat.recv_kind("presence_event")
    assert joined.presence_event.data.display_name == "Alice"
    assert token not in joined.SerializeToString().decode("latin-1")
    assert not any(token in r.getMessage() for r in auth_log.records)
    await alice.close()
    await pat.close()


async def test_bare_user_id_outside_development_mode_without_hello_token_is_refused(
    settings,
) -> None:
    settings.PRESENCE = {**settings.PRESENCE, "DEV_AUTH": False}
    alice = CommunicatorLegacyClient("/ws/hall?room_id=hall&user_id=alice")
    await alice.open()
    await alice.send(lg.CLIENT_HELLO, {"displayName": "Alice", "authToken": ""})
    code, frames = await alice.expect_close()
    assert code == CloseCode.UNAUTHORIZED
    [error] = frames
    assert error.type == lg.ERROR and "development mode is off" in error.payload["message"]


async def test_a_refused_legacy_client_reads_why_in_its_own_framing() -> None:
    """The origin policy applies; the refusal waits for the first frame, so it is legacy."""
    path = "/ws/hall?room_id=hall&user_id=alice"
    alice = CommunicatorLegacyClient(path)
    alice.communicator.scope["headers"] = [(b"origin", b"https://evil.example")]
    await alice.open()
    await alice.send(lg.CLIENT_HELLO, {"displayName": "Alice"})
    code, frames = await alice.expect_close()
    assert code == CloseCode.FORBIDDEN
    [error] = frames
    assert error.type == lg.ERROR and error.payload["code"] == ErrorCode.FORBIDDEN
    assert "not allowed" in error.payload["message"]


async def test_message_rate_limit_applies_to_legacy_members(settings) -> None:
    settings.PRESENCE = {**settings.PRESENCE, "MESSAGE_RATE_LIMIT": 3}
    alice = await legacy_joined("hall", "alice", "Alice")  # the hello is the first message
    for x in range(3):
        await alice.move(float(x))
    error = await alice.recv_type(lg.ERROR)
    assert error.payload["code"] == ErrorCode.RATE_LIMITED and error.payload["retryAfterMs"] > 0
    await alice.close()


async def test_mute_kick_ban_and_lock_apply_to_legacy_members_as_to_protobuf_ones() -> None:
    alice = await proto_joined("hall", "alice", "Alice")
    lenny = await legacy_joined("hall", "lenny", "Lenny")
    lara = await legacy_joined("hall", "lara", "Lara")
    await lenny.recv_type(lg.PRESENCE_JOIN)  # lara is in when lenny hears of her
    for _ in range(2):
        await alice.recv_until(lambda m: m.presence_event.event_type == pb.JOIN)

    await rooms.amute("hall", lenny.client_id, reason="shouting")
    muted = await lenny.recv_type(lg.PLAYER_MUTED)  # told, in its own framing
    assert (muted.payload["mutedClientId"], muted.payload["muted"]) == (lenny.client_id, True)
    await lenny.chat("HEY")
    refused = await lenny.recv_type(lg.ERROR)
    assert refused.payload["code"] == ErrorCode.MUTED and "muted" in refused.payload["message"]
    await lara.chat("calm down")  # the first line alice hears is lara's: lenny's never went out
    heard = await alice.recv_kind("chat_message")
    assert (heard.chat_message.from_client_id, heard.chat_message.message) == (
        lara.client_id,
        "calm down",
    )

    await rooms.akick("hall", lara.client_id, reason="spam", ban_seconds=60)
    code, _ = await lara.expect_close()
    assert code == CloseCode.FORBIDDEN
    kicked = (await alice.recv_kind("player_kicked")).player_kicked
    assert kicked.kicked_client_id == lara.client_id
    again = CommunicatorLegacyClient("/ws/hall?room_id=hall&user_id=lara")
    await again.open()
    await again.send(lg.CLIENT_HELLO, {"displayName": "Lara"})
    code, frames = await again.expect_close()
    assert code == CloseCode.FORBIDDEN and frames[-1].payload["code"] == ErrorCode.FORBIDDEN

    await rooms.alock("hall", reason="full")
    locked = await lenny.recv_type(lg.ROOM_LOCKED)
    assert locked.payload["locked"] is True
    late = CommunicatorLegacyClient("/ws/hall?room_id=hall&user_id=lou")
    await late.open()
    await late.send(lg.CLIENT_HELLO, {"displayName": "Lou"})
    code, frames = await late.expect_close()
    assert code == CloseCode.ROOM_UNAVAILABLE
    assert frames[-1].payload["code"] == ErrorCode.ROOM_LOCKED
    await alice.close()
    await lenny.close()
