"""A room end to end through the consumer, with both channel layers."""

from __future__ import annotations

from typing import Any

import pytest
from channels.db import database_sync_to_async

from presence.models import ChatMessage, ConnectionSession
from presence.protocol import pb
from presence.protocol.codes import CloseCode, ErrorCode
from presence.storage.history import get_history
from tests.clients.communicator import ProtocolClient, pose

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("channel_layer_kind"),
]


async def joined(room: str, user: str, **params: str) -> ProtocolClient:
    query = "&".join(f"{k}={v}" for k, v in {"user_id": user, **params}.items())
    client = ProtocolClient(f"/ws/{room}?{query}")
    await client.join()
    return client


async def test_first_member_is_host_and_gets_server_hello() -> None:
    alice = await joined("r1", "alice", display_name="Alice")
    assert alice.hello.host_client_id == alice.client_id
    assert alice.hello.room_id == "r1"
    assert alice.hello.session_id
    assert list(alice.hello.initial_state.players) == []
    await alice.close()


async def test_join_snapshot_lists_present_players_poses_and_entities() -> None:
    alice = await joined("r1", "alice", display_name="Alice")
    await alice.send(pose(1.5))
    spawn = pb.Message(
        entity_spawn=pb.EntitySpawn(
            entity_id="box", template_id="crate", components={"color": "red"}
        )
    )
    await alice.send(spawn)
    await alice.send(
        pb.Message(position_update=pb.PositionUpdate(entity_id="box", position=pb.Vector3(x=7)))
    )
    assert (await alice.ping(1)).WhichOneof("payload") == "pong"

    bob = await joined("r1", "bob")
    state = bob.hello.initial_state
    assert [(p.client_id, p.display_name, p.position.x) for p in state.players] == [
        (alice.client_id, "Alice", 1.5)
    ]
    [box] = state.entities
    assert (box.id, box.template_id, box.owner_id, dict(box.components), box.position.x) == (
        "box",
        "crate",
        alice.client_id,
        {"color": "red"},
        7.0,
    )
    assert bob.hello.host_client_id == alice.client_id
    await alice.close()
    await bob.close()


async def test_others_hear_join_and_leave() -> None:
    alice = await joined("r1", "alice")
    bob = await joined("r1", "bob", display_name="Bob")
    join = await alice.recv()
    assert join.type == pb.PRESENCE_JOIN
    assert (join.presence_event.client_id, join.presence_event.data.display_name) == (
        bob.client_id,
        "Bob",
    )
    await bob.close()
    leave = await alice.recv()
    assert leave.type == pb.PRESENCE_LEAVE
    assert leave.presence_event.client_id == bob.client_id
    await alice.close()


async def test_pose_fans_out_stamped_and_is_not_echoed() -> None:
    alice = await joined("r1", "alice")
    bob = await joined("r1", "bob")
    await alice.recv_kind("presence_event")
    await alice.send(pose(3.0))
    # A Ping right after: if the pose were echoed it would arrive before the Pong.
    assert (await alice.ping(42)).pong.client_time_ms == 42
    got = await bob.recv()
    assert got.type == pb.POSITION_UPDATE
    assert got.sender_id == alice.client_id
    assert got.timestamp > 0
    assert got.seq == 0  # volatile messages are not numbered
    assert got.position_update.position.x == 3.0
    await alice.close()
    await bob.close()


async def test_sender_id_from_client_is_overwritten() -> None:
    alice = await joined("r1", "alice")
    bob = await joined("r1", "bob")
    forged = pose(1.0)
    forged.sender_id = bob.client_id
    await alice.send(forged)
    got = await bob.recv_kind("position_update")
    assert got.sender_id == alice.client_id
    await alice.close()
    await bob.close()


async def test_chat_is_stamped_delivered_acked_and_stored() -> None:
    alice = await joined("r1", "alice", display_name="Alice")
    bob = await joined("r1", "bob")
    await alice.recv_kind("presence_event")
    await alice.send(
        pb.Message(
            message_id="m-1", chat_message=pb.ChatMessage(message="hello", from_client_id="forged")
        )
    )
    ack = await alice.recv()
    assert ack.type == pb.ACK and ack.ack.message_id == "m-1"
    got = await bob.recv()
    assert got.type == pb.CHAT_MESSAGE
    assert got.chat_message.from_client_id == alice.client_id
    assert got.chat_message.message == "hello"
    assert got.chat_message.timestamp > 0
    assert got.seq > 0
    stored = await database_sync_to_async(
        lambda: list(
            ChatMessage.objects.values_list("sender_client_id", "sender_name", "text", "room_id")
        )
    )()
    assert stored == [(alice.client_id, "Alice", "hello", "r1")]
    await alice.close()
    await bob.close()


async def test_reliable_messages_carry_increasing_seq() -> None:
    alice = await joined("r1", "alice")
    bob = await joined("r1", "bob")
    for n in range(3):
        await alice.send(pb.Message(chat_message=pb.ChatMessage(message=f"m{n}")))
    seqs = [(await bob.recv_kind("chat_message")).seq for _ in range(3)]
    assert seqs == sorted(seqs) and len(set(seqs)) == 3 and seqs[0] > 0
    await alice.close()
    await bob.close()


async def test_entity_update_and_despawn_are_the_owners() -> None:
    alice = await joined("r1", "alice")
    bob = await joined("r1", "bob")
    await alice.send(
        pb.Message(entity_spawn=pb.EntitySpawn(entity_id="e1", template_id="t", owner_id="forged"))
    )
    spawned = await bob.recv_kind("entity_spawn")
    assert spawned.entity_spawn.owner_id == alice.client_id

    await bob.send(
        pb.Message(
            message_id="x", entity_update=pb.EntityUpdate(entity_id="e1", components={"c": b"1"})
        )
    )
    refused = await bob.recv()
    assert (refused.error.code, refused.error.ref_message_id) == (ErrorCode.NOT_OWNER, "x")
    await bob.send(pb.Message(entity_despawn=pb.EntityDespawn(entity_id="e1")))
    assert (await bob.recv()).error.code == ErrorCode.NOT_OWNER

    await alice.send(
        pb.Message(entity_update=pb.EntityUpdate(entity_id="e1", components={"c": b"2"}))
    )
    updated = await bob.recv_kind("entity_update")
    assert updated.entity_update.components["c"] == b"2"
    await alice.send(pb.Message(entity_despawn=pb.EntityDespawn(entity_id="e1")))
    gone = await bob.recv_kind("entity_despawn")
    assert gone.entity_despawn.entity_id == "e1"
    await alice.close()
    await bob.close()


async def test_pose_for_an_entity_not_owned_is_refused() -> None:
    alice = await joined("r1", "alice")
    bob = await joined("r1", "bob")
    await alice.recv_kind("presence_event")
    await alice.send(pb.Message(entity_spawn=pb.EntitySpawn(entity_id="e1", template_id="t")))
    await bob.recv_kind("entity_spawn")
    await bob.send(pose(9.0, entity_id="e1"))
    assert (await bob.recv()).error.code == ErrorCode.NOT_OWNER
    # Alice never saw Bob's refused pose: her next message is her own Pong.
    assert (await alice.ping(7)).WhichOneof("payload") == "pong"
    await alice.close()
    await bob.close()


async def test_leavers_entities_are_despawned_for_everyone() -> None:
    alice = await joined("r1", "alice")
    bob = await joined("r1", "bob")
    await bob.send(pb.Message(entity_spawn=pb.EntitySpawn(entity_id="bobs-hat", template_id="hat")))
    await alice.recv_kind("entity_spawn")
    await bob.close()
    assert (await alice.recv()).presence_event.event_type == pb.LEAVE
    despawn = await alice.recv()
    assert despawn.entity_despawn.entity_id == "bobs-hat"
    carol = await joined("r1", "carol")
    assert list(carol.hello.initial_state.entities) == []
    await alice.close()
    await carol.close()


async def test_host_passes_to_longest_present_member() -> None:
    alice = await joined("r1", "alice")
    bob = await joined("r1", "bob")
    carol = await joined("r1", "carol")
    await alice.close()
    for member in (bob, carol):
        await member.recv_until(lambda m: m.type == pb.PRESENCE_LEAVE)
        update = await member.recv()
        assert update.type == pb.PRESENCE_UPDATE
        assert update.presence_event.client_id == bob.client_id
        assert update.presence_event.data.host_client_id == bob.client_id
    dave = await joined("r1", "dave")
    assert dave.hello.host_client_id == bob.client_id
    for member in (bob, carol, dave):
        await member.close()


async def test_presence_update_renames_and_reaches_others() -> None:
    alice = await joined("r1", "alice")
    bob = await joined("r1", "bob")
    await alice.recv_kind("presence_event")
    await bob.send(
        pb.Message(
            presence_event=pb.PresenceEvent(
                event_type=pb.UPDATE, data=pb.PresenceData(display_name="Robert")
            )
        )
    )
    update = await alice.recv()
    assert update.type == pb.PRESENCE_UPDATE
    assert (update.presence_event.client_id, update.presence_event.data.display_name) == (
        bob.client_id,
        "Robert",
    )
    await alice.close()
    await bob.close()


async def test_json_subprotocol_is_echoed_and_frames_are_text() -> None:
    client = ProtocolClient("/ws/r1?user_id=alice", subprotocols=["graphwiz.json.v1"])
    accepted, subprotocol = await client.open()
    assert accepted and subprotocol == "graphwiz.json.v1"
    frame = await client.recv_frame()
    assert frame["text"].startswith("{") and '"serverHello"' in frame["text"]
    await client.send_raw(text='{"ping": {"clientTimeMs": "5"}}')
    pong = await client.recv_frame()
    assert '"pong"' in pong["text"] and '"clientTimeMs":"5"' in pong["text"]
    await client.close()


async def test_format_json_parameter_and_binary_input_both_work() -> None:
    alice = ProtocolClient("/ws/r1?user_id=alice&format=json", json=True)
    await alice.join()
    bob = await joined("r1", "bob")
    await bob.send(pb.Message(chat_message=pb.ChatMessage(message="hi")))
    frame = await alice.recv_frame()  # JOIN
    assert "text" in frame
    chat = await alice.recv_kind("chat_message")
    assert chat.chat_message.message == "hi" and chat.seq > 0
    # A binary frame on a JSON connection is accepted too.
    await alice.communicator.send_to(
        bytes_data=pb.Message(ping=pb.Ping(client_time_ms=3)).SerializeToString()
    )
    assert (await alice.recv()).pong.client_time_ms == 3
    await alice.close()
    await bob.close()


async def test_bad_frame_gets_bad_message_and_others_keep_receiving() -> None:
    alice = await joined("r1", "alice")
    bob = await joined("r1", "bob")
    control = await joined("r1", "control")
    await bob.send_raw(data=b"\xff\xff\xff")
    assert (await bob.recv_kind("error")).error.code == ErrorCode.BAD_MESSAGE
    await bob.send_raw(text="{not json")
    assert (await bob.recv_kind("error")).error.code == ErrorCode.BAD_MESSAGE
    await bob.send(pb.Message(server_hello=pb.ServerHello()))
    assert (await bob.recv_kind("error")).error.code == ErrorCode.BAD_MESSAGE
    await bob.send_raw(data=b"")  # parses, but has no payload
    assert (await bob.recv_kind("error")).error.code == ErrorCode.BAD_MESSAGE
    for x in (1.0, 2.0, 3.0):  # one pose per tick: each one reaches the control client
        await alice.send(pose(x))
        received = await control.recv_kind("position_update")
        assert received.position_update.position.x == x
    await bob.send(pb.Message(chat_message=pb.ChatMessage(message="still here")))
    assert (await control.recv_kind("chat_message")).chat_message.message == "still here"
    for member in (alice, bob, control):
        await member.close()


async def test_ten_bad_frames_in_a_row_close_4007() -> None:
    bob = await joined("r1", "bob")
    control = await joined("r1", "control")
    for _ in range(9):
        await bob.send_raw(data=b"\xff")
        assert (await bob.recv_kind("error")).error.code == ErrorCode.BAD_MESSAGE
    await bob.send(pb.Message(ping=pb.Ping()))  # a good frame resets the streak
    assert (await bob.recv_kind("pong")).type == pb.PONG
    for _ in range(10):
        await bob.send_raw(data=b"\xff")
    assert await bob.expect_close() == CloseCode.INVALID_MESSAGES
    assert (await control.recv_kind("presence_event")).type in (pb.PRESENCE_JOIN, pb.PRESENCE_LEAVE)
    await control.send(pb.Message(ping=pb.Ping(client_time_ms=1)))
    await control.recv_kind("pong")
    await bob.close()
    await control.close()


@pytest.mark.parametrize("room", ["bad%20room", "x" * 65, "a/b", ""])
async def test_invalid_room_id_closes_4400(room: str) -> None:
    client = ProtocolClient(f"/ws/{room}?user_id=alice")
    accepted, _ = await client.open()
    assert accepted
    error = await client.recv()
    assert error.error.code == ErrorCode.BAD_MESSAGE
    assert await client.expect_close() == CloseCode.BAD_REQUEST
    await client.close()


async def test_missing_identity_closes_4408_after_the_deadline(settings: Any) -> None:
    settings.PRESENCE = {**settings.PRESENCE, "AUTH_TIMEOUT_SECONDS": 0.2}
    client = ProtocolClient("/ws/r1")
    await client.open()
    assert (await client.recv()).error.code == ErrorCode.UNAUTHORIZED
    assert await client.expect_close() == CloseCode.AUTH_TIMEOUT
    await client.close()


async def test_unknown_format_closes_4400() -> None:
    client = ProtocolClient("/ws/r1?user_id=a&format=xml")
    await client.open()
    assert (await client.recv()).error.code == ErrorCode.BAD_MESSAGE
    assert await client.expect_close() == CloseCode.BAD_REQUEST
    await client.close()


async def test_history_row_records_the_session() -> None:
    alice = await joined("r1", "alice", client_id="headset-1", display_name="Alice")
    await alice.send(pose(1.0))
    await alice.ping(1)
    await alice.close()
    await get_history().flush()  # history is written in batches, behind the hot path
    row = await database_sync_to_async(ConnectionSession.objects.get)(
        assigned_client_id=alice.client_id
    )
    assert (row.room_id, row.external_user_id, row.client_label, row.display_name) == (
        "r1",
        "alice",
        "headset-1",
        "Alice",
    )
    assert row.disconnected_at is not None and row.close_code == 1000
    assert row.messages_in == 2 and row.messages_out == 2  # hello + pong
    assert row.bytes_in > 0 and row.bytes_out > 0


async def test_chat_is_linked_to_the_senders_session_row() -> None:
    alice = await joined("r1", "alice")
    await alice.send(pb.Message(message_id="m", chat_message=pb.ChatMessage(message="first words")))
    assert (await alice.recv_kind("ack")).ack.message_id == "m"
    chat = await database_sync_to_async(ChatMessage.objects.select_related("session").get)()
    assert chat.session is not None and chat.session.assigned_client_id == alice.client_id
    await alice.close()
