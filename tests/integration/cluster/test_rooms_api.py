"""presence.rooms in the server's own process: chat, server entities, moderation, recent chat.

Clients connect through the real consumer; the API is called from the same
event loop (async) and from a worker thread (the sync twins), on the
in-process layer and on Redis.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from django.contrib.auth import get_user_model

from presence import rooms
from presence.models import ChatMessage, ModerationAction, Room
from presence.protocol import pb
from presence.protocol.codes import CloseCode, ErrorCode
from tests.clients.communicator import ProtocolClient

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("channel_layer_kind"),
]

ROOM = "hall"


async def joined(user: str, room: str = ROOM) -> ProtocolClient:
    client = ProtocolClient(f"/ws/{room}?user_id={user}&display_name={user.title()}")
    await client.join()
    return client


async def stored_lines(room: str = ROOM) -> list[tuple[str, str]]:
    rows = ChatMessage.objects.filter(room_id=room).order_by("pk")
    return await database_sync_to_async(lambda: list(rows.values_list("sender_name", "text")))()


async def test_send_chat_reaches_every_member_as_system_and_is_stored() -> None:
    alice, bob = await joined("alice"), await joined("bob")
    await alice.recv_kind("presence_event")  # bob's JOIN

    line = await rooms.asend_chat(ROOM, "maintenance at noon")

    for client in (alice, bob):
        chat = (await client.recv_kind("chat_message")).chat_message
        assert (chat.from_client_id, chat.message) == ("system", "maintenance at noon")
        assert chat.timestamp == line.timestamp > 0
    assert await stored_lines() == [("system", "maintenance at noon")]
    assert (line.room_id, line.from_client_id, line.text) == (ROOM, "system", "maintenance at noon")
    await alice.close()
    await bob.close()


async def test_the_sync_twin_from_a_worker_thread_names_its_sender() -> None:
    alice = await joined("alice")

    await sync_to_async(rooms.send_chat)(ROOM, "hello from a view", sender="Concierge")

    chat = (await alice.recv_kind("chat_message")).chat_message
    assert (chat.from_client_id, chat.message) == ("Concierge", "hello from a view")
    assert await stored_lines() == [("Concierge", "hello from a view")]
    await alice.close()


async def test_chat_into_an_empty_room_is_stored_and_a_late_joiner_sees_it() -> None:
    await rooms.asend_chat("quiet", "anyone here?")

    carol = await joined("carol", room="quiet")

    recent = carol.hello.initial_state.recent_chat
    assert [(c.from_client_id, c.message) for c in recent] == [("system", "anyone here?")]
    assert await stored_lines("quiet") == [("system", "anyone here?")]
    await carol.close()


async def test_a_late_joiner_gets_the_last_lines_oldest_first_up_to_the_limit(
    settings: Any,
) -> None:
    settings.PRESENCE = {**settings.PRESENCE, "CHAT_HISTORY": 3}
    alice = await joined("alice")
    for n in range(5):
        await alice.send(pb.Message(chat_message=pb.ChatMessage(message=f"line {n}")))
    assert (await alice.ping(1)).WhichOneof("payload") == "pong"  # all five handled

    bob = await joined("bob")

    recent = bob.hello.initial_state.recent_chat
    assert [c.message for c in recent] == ["line 2", "line 3", "line 4"]
    assert {c.from_client_id for c in recent} == {alice.client_id}
    assert all(c.timestamp > 0 for c in recent)
    await alice.close()
    await bob.close()


async def test_chat_history_zero_sends_no_recent_chat(settings: Any) -> None:
    settings.PRESENCE = {**settings.PRESENCE, "CHAT_HISTORY": 0}
    await rooms.asend_chat(ROOM, "not kept for joiners")

    alice = await joined("alice")

    assert list(alice.hello.initial_state.recent_chat) == []
    assert await stored_lines() == [("system", "not kept for joiners")]  # the history keeps it
    await alice.close()


async def test_a_chat_line_at_the_limit_is_sent_and_one_over_is_refused() -> None:
    alice = await joined("alice")

    await rooms.asend_chat(ROOM, "x" * 2000)
    with pytest.raises(rooms.InvalidRequest, match="longer than 2000 characters"):
        await rooms.asend_chat(ROOM, "x" * 2001)
    with pytest.raises(rooms.InvalidRequest, match="empty"):
        await rooms.asend_chat(ROOM, "   ")
    with pytest.raises(rooms.InvalidRequest, match="control character"):
        await rooms.asend_chat(ROOM, "bell\x07")
    with pytest.raises(rooms.InvalidRequest, match="room id"):
        await rooms.asend_chat("no spaces", "hi")
    with pytest.raises(rooms.InvalidRequest, match="client id"):
        await rooms.asend_chat(ROOM, "hi", sender=alice.client_id)

    assert len((await alice.recv_kind("chat_message")).chat_message.message) == 2000
    assert len(await stored_lines()) == 1
    await alice.close()


async def test_server_entities_are_spawned_updated_seen_by_joiners_and_despawned() -> None:
    alice = await joined("alice")

    await rooms.aspawn_entity(
        ROOM, "sign", template_id="board", components={"text": "Welcome"}, position=(1, 2, 3)
    )
    spawn = (await alice.recv_kind("entity_spawn")).entity_spawn
    assert (spawn.entity_id, spawn.template_id, spawn.owner_id) == ("sign", "board", "server")
    assert dict(spawn.components) == {"text": "Welcome"}

    await rooms.aupdate_entity(ROOM, "sign", components={"text": "Closed"})
    update = (await alice.recv_kind("entity_update")).entity_update
    assert dict(update.components) == {"text": b"Closed"}

    bob = await joined("bob")
    [sign] = bob.hello.initial_state.entities
    assert (sign.id, sign.owner_id, dict(sign.components)) == ("sign", "server", {"text": "Closed"})
    assert (sign.position.x, sign.position.y, sign.position.z) == (1, 2, 3)
    state = await rooms.aroom_state(ROOM)
    assert [(e.entity_id, e.owner_id, e.position) for e in state.entities] == [
        ("sign", "server", (1.0, 2.0, 3.0))
    ]

    await rooms.adespawn_entity(ROOM, "sign")
    for client in (alice, bob):
        assert (await client.recv_kind("entity_despawn")).entity_despawn.entity_id == "sign"
    assert (await rooms.aroom_state(ROOM)).entities == []
    await alice.close()
    await bob.close()


async def test_entity_calls_follow_the_room_rules() -> None:
    alice = await joined("alice")
    await alice.send(pb.Message(entity_spawn=pb.EntitySpawn(entity_id="hat", template_id="hat")))
    await rooms.aspawn_entity(ROOM, "lamp")

    with pytest.raises(rooms.Refused, match="already exists") as exists:
        await rooms.aspawn_entity(ROOM, "lamp")
    assert exists.value.code == ErrorCode.BAD_MESSAGE
    with pytest.raises(rooms.NotPresent, match="do not own"):
        await rooms.adespawn_entity(ROOM, "hat")  # alice's, not the server's
    with pytest.raises(rooms.NotPresent):
        await rooms.aupdate_entity(ROOM, "ghost", components={"a": "b"})
    with pytest.raises(rooms.InvalidRequest, match="more than 64 components"):
        await rooms.aspawn_entity(ROOM, "big", components={f"k{i}": "v" for i in range(65)})
    with pytest.raises(rooms.InvalidRequest, match="finite"):
        await rooms.aupdate_entity(ROOM, "lamp", position=(0, float("nan"), 0))
    with pytest.raises(rooms.NotPresent, match="nobody"):
        await rooms.aspawn_entity("empty", "lamp")
    await alice.close()


async def test_room_list_and_state_show_members_on_every_instance() -> None:
    alice, bob = await joined("alice"), await joined("bob")
    carol = await joined("carol", room="other")

    listed = await rooms.aroom_list()
    assert [(r.room_id, r.member_count) for r in listed] == [(ROOM, 2), ("other", 1)]
    state = await sync_to_async(rooms.room_state)(ROOM)
    assert [(m.client_id, m.user_id, m.is_host) for m in state.members] == [
        (alice.client_id, "alice", True),
        (bob.client_id, "bob", False),
    ]
    assert state.host_client_id == alice.client_id
    assert (await rooms.aroom_state("nobody.here")).members == []
    for client in (alice, bob, carol):
        await client.close()


async def test_kick_mute_and_lock_through_the_api_are_heard_enforced_and_recorded() -> None:
    moderator = await database_sync_to_async(get_user_model().objects.create_user)("mo")
    alice, bob, carol = await joined("alice"), await joined("bob"), await joined("carol")

    await rooms.amute(ROOM, bob.client_id, reason="shouting", actor=moderator)
    muted = (await alice.recv_kind("player_muted")).player_muted
    assert (muted.muted_client_id, muted.muted, muted.reason) == (bob.client_id, True, "shouting")
    await bob.send(pb.Message(message_id="m1", chat_message=pb.ChatMessage(message="HEY")))
    assert (await bob.recv_kind("error")).error.code == ErrorCode.MUTED

    await sync_to_async(rooms.kick)(ROOM, carol.client_id, reason="spam", ban_seconds=60)
    kicked = (await alice.recv_kind("player_kicked")).player_kicked
    assert (kicked.kicked_client_id, kicked.reason) == (carol.client_id, "spam")
    assert await carol.expect_close() == CloseCode.FORBIDDEN

    await rooms.alock(ROOM, reason="full")
    assert (await alice.recv_kind("room_locked")).room_locked.locked
    late = ProtocolClient(f"/ws/{ROOM}?user_id=dave")
    await late.open()
    assert (await late.recv()).error.code == ErrorCode.ROOM_LOCKED
    assert await late.expect_close() == CloseCode.ROOM_UNAVAILABLE

    rows = ModerationAction.objects.order_by("pk")
    audit = await database_sync_to_async(
        lambda: list(rows.values_list("action", "target_client_id", "actor_id", "target_user_id"))
    )()
    assert audit == [
        ("mute", bob.client_id, moderator.pk, "bob"),
        ("kick", carol.client_id, None, "carol"),
        ("lock", "", None, ""),
    ]
    await alice.close()
    await bob.close()


async def test_moderating_someone_absent_is_not_present_and_a_lock_of_an_empty_room_holds() -> None:
    with pytest.raises(rooms.NotPresent, match="no member"):
        await rooms.akick(ROOM, "c0123456789abcde")
    with pytest.raises(rooms.InvalidRequest, match="ban_seconds"):
        await rooms.akick(ROOM, "c0123456789abcde", ban_seconds=-1)

    await rooms.alock("empty", reason="closed for today")

    assert await database_sync_to_async(lambda: Room.objects.get(pk="empty").locked)()
    refused = ProtocolClient("/ws/empty?user_id=erin")
    await refused.open()
    assert (await refused.recv()).error.code == ErrorCode.ROOM_LOCKED


async def test_a_chat_line_is_in_the_recent_chat_before_other_instances_hear_it() -> None:
    # A joiner on another instance that subscribes after the publish reads the
    # recent chat for its hello: the line must already be there, or it is lost
    # to that joiner (neither live nor in its initial state).
    from presence.cluster.instance import get_hub

    alice = await joined("alice", room="order")
    hub = get_hub()
    seen_at_publish: list[list[str]] = []
    publish = hub.publish

    async def spying_publish(room_id: str, broadcasts: Any, **kwargs: Any) -> None:
        if any(b.message.HasField("chat_message") for b in broadcasts):
            lines = await hub.recent_chat.read(room_id)
            seen_at_publish.append([line.message for line in lines])
        await publish(room_id, broadcasts, **kwargs)

    hub.publish = spying_publish  # type: ignore[method-assign]
    try:
        await alice.send(pb.Message(chat_message=pb.ChatMessage(message="first")))
        assert (await alice.ping(1)).WhichOneof("payload") == "pong"
    finally:
        del hub.publish

    assert seen_at_publish == [["first"]]
    await alice.close()


async def test_a_line_said_while_someone_joins_reaches_the_joiner_exactly_once() -> None:
    # The line is applied (heard by the joining member) and kept in the recent
    # chat while the joiner's registry round trip is under way: its hello's
    # recent chat and the live stream must not both carry it.
    from presence.cluster.instance import get_hub

    alice = await joined("alice", room="overlap")
    hub = get_hub()
    reading, go = asyncio.Event(), asyncio.Event()
    read = hub.recent_chat.read

    async def held_read(room_id: str) -> list[pb.ChatMessage]:
        reading.set()
        await go.wait()
        return await read(room_id)

    hub.recent_chat.read = held_read  # type: ignore[method-assign]
    try:
        bob = ProtocolClient("/ws/overlap?user_id=bob")
        joining = asyncio.create_task(bob.join())
        await reading.wait()  # bob is joining: what the room says now, he hears
        await alice.send(pb.Message(chat_message=pb.ChatMessage(message="while you joined")))
        assert (await alice.ping(1)).WhichOneof("payload") == "pong"  # applied and kept
        go.set()
        hello = await joining
    finally:
        del hub.recent_chat.read

    in_hello = [c.message for c in hello.initial_state.recent_chat]
    live: list[str] = []
    await bob.send(pb.Message(ping=pb.Ping(client_time_ms=7)))
    while (message := await bob.recv()).WhichOneof("payload") != "pong":
        if message.WhichOneof("payload") == "chat_message":
            live.append(message.chat_message.message)
    assert in_hello + live == ["while you joined"]
    await alice.close()
    await bob.close()
