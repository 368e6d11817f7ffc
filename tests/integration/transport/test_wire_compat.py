"""Every frame the server sends decodes with PROTOCOL.md section 3's layout, fields intact.

A room goes through everything a server says: hello with a full initial
state, join, leave and host hand-over, poses and voice (one client in
``Batch`` frames, one in single frames), entities, chat, presence updates,
acks, errors, pongs, server ping probes and the moderation broadcasts. Each
received binary frame is decoded with ``tests/clients/upstream_layout.proto``
(as an upstream client would) and must carry no field that layout does not
know, and the same fields and values as our own decoding.
"""

from __future__ import annotations

from typing import Any

import pytest
from channels.db import database_sync_to_async
from django.contrib.auth import get_user_model
from rest_framework_simplejwt.tokens import AccessToken

from presence.protocol import pb
from tests.clients import upstream
from tests.clients.communicator import ProtocolClient, pose

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("channel_layer_kind"),
]

ROOM = "wire"
# Payloads only clients send; the server sends every other one.
CLIENT_ONLY = {"client_hello", "kick_player", "mute_player", "lock_room"}
SERVER_SENT = {f.name for f in pb.Message.DESCRIPTOR.oneofs_by_name["payload"].fields} - CLIENT_ONLY
AVATAR = pb.AvatarConfig(
    body_type="robot",
    primary_color="#112233",
    secondary_color="#445566",
    height=1.75,
    custom_model_url="https://example.com/robot.glb",
)


class RecordingClient(ProtocolClient):
    """A client that keeps every binary frame the server sent it."""

    def __init__(self, path: str) -> None:
        super().__init__(path)
        self.frames: list[bytes] = []

    async def recv_frame(self) -> dict[str, Any]:
        event = await super().recv_frame()
        if event.get("bytes") is not None:
            self.frames.append(event["bytes"])
        return event

    async def flush(self, marker: int) -> None:
        """Read everything queued before now: up to the Pong of a Ping carrying ``marker``."""
        await self.send(pb.Message(ping=pb.Ping(client_time_ms=marker)))
        await self.recv_until(lambda m: m.pong.client_time_ms == marker)


async def joined(query: str) -> RecordingClient:
    client = RecordingClient(f"/ws/{ROOM}?{query}")
    await client.join()
    return client


@database_sync_to_async
def staff_token() -> str:
    user = get_user_model().objects.create_user("mo", is_staff=True, is_superuser=True)
    return str(AccessToken.for_user(user))


def kinds_in(frame: bytes) -> set[str]:
    message = pb.Message.FromString(frame)
    kind = message.WhichOneof("payload") or ""
    inner = {m.WhichOneof("payload") or "" for m in message.batch.messages}
    return {kind} | inner


@pytest.fixture
def fast_probes(settings: Any) -> None:
    """Server Ping probes every 50 ms, so every client meets one."""
    settings.PRESENCE = {**settings.PRESENCE, "RTT_PROBE_SECONDS": 0.05}


@pytest.mark.usefixtures("fast_probes")
async def test_every_server_frame_decodes_with_the_upstream_layout() -> None:
    mo = await joined(f"auth_token={await staff_token()}&display_name=Mo")
    alice = await joined("user_id=alice&display_name=Alice")
    hello = pb.ClientHello(display_name="Alice", avatar_config=AVATAR, capabilities=["batch"])
    await alice.send(pb.Message(client_hello=hello))
    await mo.recv_until(lambda m: m.type == pb.PRESENCE_UPDATE)
    await alice.send(pose(1.5))
    spawn = pb.EntitySpawn(entity_id="box", template_id="crate", components={"color": "red"})
    await alice.send(pb.Message(message_id="s1", entity_spawn=spawn))
    await alice.recv_kind("ack")
    await mo.recv_kind("entity_spawn")

    bob = await joined("user_id=bob&display_name=Bob")  # initial_state: Alice, her avatar, the box
    assert bob.hello is not None and bob.hello.initial_state.players
    voice = pb.VoiceData(audio_data=b"\xff\x00\x01", sequence_number=3, codec=1)
    await alice.send(pb.Message(voice_data=voice))
    await bob.recv_kind("voice_data")
    await bob.send(pose(2.0))
    await bob.send(pb.Message(voice_data=voice))
    await alice.recv_until(lambda m: any(e.HasField("voice_data") for e in m.batch.messages))
    update = pb.EntityUpdate(entity_id="box", components={"mesh": b"\xff\x01"})
    await alice.send(pb.Message(entity_update=update))
    await alice.send(pb.Message(message_id="c1", chat_message=pb.ChatMessage(message="hi")))
    await bob.recv_kind("chat_message")
    await alice.send(pb.Message(entity_despawn=pb.EntityDespawn(entity_id="box")))
    await bob.recv_kind("entity_despawn")
    await alice.send_raw(data=b"")  # no payload: an Error
    await alice.recv_kind("error")
    assert (await alice.ping(7)).WhichOneof("payload") in ("pong", "ping", "batch")
    await bob.recv_kind("ping")  # a server RTT probe
    mute = pb.MutePlayer(target_client_id=alice.client_id, muted=True)
    await mo.send(pb.Message(message_id="m1", mute_player=mute))
    await bob.recv_kind("player_muted")
    await mo.send(pb.Message(message_id="l1", lock_room=pb.LockRoom(locked=True)))
    await bob.recv_kind("room_locked")
    await mo.send(pb.Message(kick_player=pb.KickPlayer(target_client_id=bob.client_id)))
    await alice.recv_kind("player_kicked")
    assert await bob.expect_close() == 4403
    await mo.close()  # LEAVE and a new host
    await alice.recv_until(lambda m: m.type == pb.PRESENCE_UPDATE)
    await alice.flush(99)
    await alice.close()

    frames = mo.frames + alice.frames + bob.frames
    seen: set[str] = set()
    for frame in frames:
        theirs = upstream.decode(frame)
        ours = pb.Message.FromString(frame)
        assert upstream.unknown_field_paths(theirs) == [], ours
        assert upstream.as_fields(theirs) == upstream.as_fields(ours)
        seen |= kinds_in(frame)
    assert seen >= SERVER_SENT, f"never sent: {sorted(SERVER_SENT - seen)}"
    with_avatar = [
        f for f in frames if pb.Message.FromString(f).presence_event.data.HasField("avatar_config")
    ]
    assert with_avatar, "no PresenceEvent carried Alice's avatar"
    assert upstream.decode(with_avatar[0]).presence_event.data.avatar_config.body_type == "robot"
