"""RoomState: membership, host, ownership and fan-out decisions (PROTOCOL.md sections 4 and 5)."""

from __future__ import annotations

import itertools

import pytest

from presence.protocol import pb
from presence.protocol.codes import ErrorCode
from presence.protocol.moderation import Action, ModerationOrder
from presence.protocol.room import Broadcast, Outcome, Player, RoomLimits, RoomState

NOW_MS = 1_700_000_000_000
LATER_MS = NOW_MS + 250


def make_room(limits: RoomLimits | None = None) -> RoomState:
    """A room whose server message ids are m1, m2, ... in order of use."""
    ids = itertools.count(1)
    return RoomState("lobby", next_id=lambda: f"m{next(ids)}", limits=limits)


def player(client_id: str) -> Player:
    return Player(client_id=client_id, user_id=f"user-{client_id}", display_name=client_id.title())


def room_with(*client_ids: str, limits: RoomLimits | None = None) -> RoomState:
    room = make_room(limits)
    for client_id in client_ids:
        room.join(player(client_id), now_ms=NOW_MS)
    return room


def send(room: RoomState, client_id: str, message: pb.Message, now_ms: int = LATER_MS) -> Outcome:
    """Hand ``message`` to the room as if validated and received from ``client_id``."""
    kind = message.WhichOneof("payload")
    assert kind is not None
    return room.handle(client_id, kind, message, now_ms=now_ms)


def only_broadcast(outcome: Outcome) -> Broadcast:
    assert len(outcome.broadcasts) == 1, outcome
    return outcome.broadcasts[0]


def only_error(outcome: Outcome) -> pb.Error:
    assert not outcome.broadcasts
    assert len(outcome.replies) == 1
    assert outcome.replies[0].WhichOneof("payload") == "error"
    return outcome.replies[0].error


def spawn(entity_id: str, message_id: str = "", **components: str) -> pb.Message:
    return pb.Message(
        message_id=message_id,
        entity_spawn=pb.EntitySpawn(entity_id=entity_id, template_id="cube", components=components),
    )


def move(entity_id: str = "", x: float = 1.0, message_id: str = "") -> pb.Message:
    return pb.Message(
        message_id=message_id,
        position_update=pb.PositionUpdate(
            entity_id=entity_id, position=pb.Vector3(x=x, y=1.6), rotation=pb.Quaternion(w=1)
        ),
    )


def chat(text: str = "hello", message_id: str = "") -> pb.Message:
    return pb.Message(message_id=message_id, chat_message=pb.ChatMessage(message=text))


def update(entity_id: str, **components: bytes) -> pb.Message:
    return pb.Message(entity_update=pb.EntityUpdate(entity_id=entity_id, components=components))


def rename(display_name: str) -> pb.Message:
    return pb.Message(
        presence_event=pb.PresenceEvent(
            event_type=pb.UPDATE, data=pb.PresenceData(display_name=display_name)
        )
    )


# --- join -------------------------------------------------------------------


def test_first_member_becomes_host() -> None:
    room = room_with("alice")

    assert room.host_client_id == "alice"


def test_later_member_does_not_take_the_host_role() -> None:
    room = room_with("alice", "bob")

    assert room.host_client_id == "alice"


def test_join_broadcast_excludes_the_joiner() -> None:
    room = room_with("alice")

    joined = only_broadcast(room.join(player("bob"), now_ms=NOW_MS))

    assert joined.exclude == "bob"


def test_join_broadcast_is_a_reliable_presence_join_of_the_joiner() -> None:
    room = room_with("alice")

    joined = only_broadcast(room.join(player("bob"), now_ms=NOW_MS))

    assert joined.reliable
    assert joined.message.type == pb.PRESENCE_JOIN
    assert joined.message.presence_event.event_type == pb.JOIN
    assert joined.message.presence_event.client_id == "bob"
    assert joined.message.presence_event.data.display_name == "Bob"
    assert joined.message.sender_id == "bob"
    assert joined.message.timestamp == NOW_MS


def test_join_broadcast_carries_the_host_client_id() -> None:
    room = room_with("alice")

    joined = only_broadcast(room.join(player("bob"), now_ms=NOW_MS))

    assert joined.message.presence_event.data.host_client_id == "alice"


def test_first_joiner_announces_itself_as_host() -> None:
    joined = only_broadcast(make_room().join(player("alice"), now_ms=NOW_MS))

    assert joined.message.presence_event.data.host_client_id == "alice"


# --- world state for a joiner -------------------------------------------------


def test_world_state_lists_the_other_players_but_not_the_joiner() -> None:
    room = room_with("alice", "bob", "carol")

    state = room.world_state(for_client="carol", now_ms=LATER_MS)

    assert [p.client_id for p in state.players] == ["alice", "bob"]
    assert [p.display_name for p in state.players] == ["Alice", "Bob"]


def test_world_state_player_has_the_last_avatar_pose() -> None:
    room = room_with("alice", "bob")
    send(room, "alice", move(x=1.0))
    send(room, "alice", move(x=2.5))

    (alice,) = room.world_state(for_client="bob", now_ms=LATER_MS).players

    assert alice.position == pb.Vector3(x=2.5, y=1.6)
    assert alice.rotation == pb.Quaternion(w=1)


def test_world_state_player_without_pose_has_no_position() -> None:
    room = room_with("alice", "bob")

    (alice,) = room.world_state(for_client="bob", now_ms=LATER_MS).players

    assert not alice.HasField("position")


def test_world_state_lists_entities_with_owner_template_and_components() -> None:
    room = room_with("alice", "bob")
    send(room, "alice", spawn("cube-1", color="red"))

    (cube,) = room.world_state(for_client="bob", now_ms=LATER_MS).entities

    assert cube.id == "cube-1"
    assert cube.template_id == "cube"
    assert cube.owner_id == "alice"
    assert dict(cube.components) == {"color": "red"}


def test_world_state_entity_has_the_last_pose() -> None:
    room = room_with("alice", "bob")
    send(room, "alice", spawn("cube-1"))
    send(room, "alice", move("cube-1", x=4.0))

    (cube,) = room.world_state(for_client="bob", now_ms=LATER_MS).entities

    assert cube.position == pb.Vector3(x=4.0, y=1.6)
    assert cube.rotation == pb.Quaternion(w=1)


def test_world_state_includes_the_joiners_own_entities() -> None:
    room = room_with("alice")
    send(room, "alice", spawn("cube-1"))

    state = room.world_state(for_client="alice", now_ms=LATER_MS)

    assert [e.id for e in state.entities] == ["cube-1"]


def test_world_state_is_stamped_with_now() -> None:
    state = room_with("alice").world_state(for_client="bob", now_ms=LATER_MS)

    assert state.last_update == LATER_MS


# --- leave --------------------------------------------------------------------


def test_leave_broadcasts_leave_of_the_leaver() -> None:
    room = room_with("alice", "bob")

    left = room.leave("bob", now_ms=LATER_MS).broadcasts[0]

    assert left.reliable
    assert left.message.type == pb.PRESENCE_LEAVE
    assert left.message.presence_event.event_type == pb.LEAVE
    assert left.message.presence_event.client_id == "bob"
    assert left.exclude == "bob"


def test_leave_removes_the_member() -> None:
    room = room_with("alice", "bob")

    room.leave("bob", now_ms=LATER_MS)

    assert list(room.players) == ["alice"]
    assert len(room) == 1


def test_leave_despawns_the_leavers_entities_in_order_reliably() -> None:
    room = room_with("alice", "bob")
    for entity_id in ("b-1", "b-2", "b-3"):
        send(room, "bob", spawn(entity_id))

    despawns = room.leave("bob", now_ms=LATER_MS).broadcasts[1:]

    assert [b.message.entity_despawn.entity_id for b in despawns] == ["b-1", "b-2", "b-3"]
    assert all(b.reliable for b in despawns)
    assert all(b.message.type == pb.ENTITY_DESPAWN for b in despawns)
    assert all(b.message.sender_id == "bob" for b in despawns)


def test_leave_keeps_the_other_members_entities() -> None:
    room = room_with("alice", "bob")
    send(room, "alice", spawn("a-1"))
    send(room, "bob", spawn("b-1"))

    room.leave("bob", now_ms=LATER_MS)

    assert list(room.entities) == ["a-1"]


def test_host_leaving_hands_host_to_the_longest_present_member() -> None:
    room = room_with("alice", "bob", "carol")

    room.leave("alice", now_ms=LATER_MS)

    assert room.host_client_id == "bob"


def test_host_handover_is_a_presence_update_delivered_to_everyone() -> None:
    room = room_with("alice", "bob", "carol")

    handover = room.leave("alice", now_ms=LATER_MS).broadcasts[-1]

    assert handover.exclude == ""
    assert handover.reliable
    assert handover.message.type == pb.PRESENCE_UPDATE
    assert handover.message.presence_event.event_type == pb.UPDATE
    assert handover.message.presence_event.client_id == "bob"
    assert handover.message.presence_event.data.host_client_id == "bob"


def test_host_handover_follows_the_leave_and_the_despawns() -> None:
    room = room_with("alice", "bob")
    send(room, "alice", spawn("a-1"))

    kinds = [b.message.type for b in room.leave("alice", now_ms=LATER_MS).broadcasts]

    assert kinds == [pb.PRESENCE_LEAVE, pb.ENTITY_DESPAWN, pb.PRESENCE_UPDATE]


def test_non_host_leaving_sends_no_host_update() -> None:
    room = room_with("alice", "bob", "carol")

    outcome = room.leave("bob", now_ms=LATER_MS)

    assert [b.message.type for b in outcome.broadcasts] == [pb.PRESENCE_LEAVE]
    assert room.host_client_id == "alice"


def test_last_member_leaving_leaves_the_host_empty() -> None:
    room = room_with("alice")

    outcome = room.leave("alice", now_ms=LATER_MS)

    assert room.host_client_id == ""
    assert [b.message.type for b in outcome.broadcasts] == [pb.PRESENCE_LEAVE]


def test_first_joiner_of_an_emptied_room_becomes_host() -> None:
    room = room_with("alice")
    room.leave("alice", now_ms=LATER_MS)

    room.join(player("bob"), now_ms=LATER_MS)

    assert room.host_client_id == "bob"


def test_leave_of_an_absent_client_does_nothing() -> None:
    room = room_with("alice")

    outcome = room.leave("ghost", now_ms=LATER_MS)

    assert outcome == Outcome()
    assert room.host_client_id == "alice"


# --- position updates (volatile) ----------------------------------------------


def test_avatar_pose_is_stored_on_the_player() -> None:
    room = room_with("alice")

    send(room, "alice", move(x=3.0))

    assert room.players["alice"].position == pb.Vector3(x=3.0, y=1.6)
    assert room.players["alice"].rotation == pb.Quaternion(w=1)


def test_position_without_rotation_keeps_the_last_rotation() -> None:
    room = room_with("alice")
    send(room, "alice", move(x=1.0))

    send(room, "alice", pb.Message(position_update=pb.PositionUpdate(position=pb.Vector3(x=9))))

    assert room.players["alice"].position == pb.Vector3(x=9)
    assert room.players["alice"].rotation == pb.Quaternion(w=1)


def test_owned_entity_pose_is_stored_on_the_entity() -> None:
    room = room_with("alice")
    send(room, "alice", spawn("cube-1"))

    send(room, "alice", move("cube-1", x=7.0))

    assert room.entities["cube-1"].position == pb.Vector3(x=7.0, y=1.6)
    assert room.players["alice"].position is None


@pytest.mark.parametrize("entity_id", ["bobs-cube", "no-such-entity"])
def test_moving_an_entity_one_does_not_own_is_not_owner(entity_id: str) -> None:
    room = room_with("alice", "bob")
    send(room, "bob", spawn("bobs-cube"))

    outcome = send(room, "alice", move(entity_id, message_id="c-42"))

    error = only_error(outcome)
    assert error.code == ErrorCode.NOT_OWNER
    assert error.ref_message_id == "c-42"


def test_refused_entity_move_leaves_the_pose_unchanged() -> None:
    room = room_with("alice", "bob")
    send(room, "bob", spawn("bobs-cube"))

    send(room, "alice", move("bobs-cube"))

    assert room.entities["bobs-cube"].position is None


@pytest.mark.parametrize(
    ("entity_id", "key"), [("", "alice/"), ("cube-1", "alice/cube-1")], ids=["avatar", "entity"]
)
def test_position_broadcast_is_volatile_keyed_by_sender_and_entity(
    entity_id: str, key: str
) -> None:
    room = room_with("alice", "bob")
    send(room, "alice", spawn("cube-1"))

    moved = only_broadcast(send(room, "alice", move(entity_id)))

    assert not moved.reliable
    assert moved.volatile_key == key
    assert moved.exclude == "alice"


def test_position_broadcast_is_stamped_and_carries_no_message_id() -> None:
    room = room_with("alice", "bob")
    message = move(message_id="c-7")
    message.sender_id = "mallory"  # whatever a client puts here is overwritten
    message.seq = 99

    moved = only_broadcast(send(room, "alice", message, now_ms=LATER_MS)).message

    assert moved.sender_id == "alice"
    assert moved.timestamp == LATER_MS
    assert moved.type == pb.POSITION_UPDATE
    assert moved.message_id == ""
    assert moved.seq == 0


def test_position_update_gets_no_ack_even_with_a_message_id() -> None:
    room = room_with("alice", "bob")

    outcome = send(room, "alice", move(message_id="c-7"))

    assert outcome.replies == []


def test_voice_broadcast_is_volatile_and_never_coalesced() -> None:
    room = room_with("alice", "bob")
    voice = pb.Message(voice_data=pb.VoiceData(audio_data=b"\x01\x02", codec=1))

    spoken = only_broadcast(send(room, "alice", voice))

    assert not spoken.reliable
    assert spoken.volatile_key == ""
    assert spoken.exclude == "alice"
    assert spoken.message.sender_id == "alice"
    assert spoken.message.type == pb.VOICE_DATA


def test_relayed_voice_names_its_speaker_whatever_the_client_claimed() -> None:
    room = room_with("alice", "bob")
    voice = pb.Message(voice_data=pb.VoiceData(from_client_id="bob", audio_data=b"\x01"))

    spoken = only_broadcast(send(room, "alice", voice))

    assert spoken.message.voice_data.from_client_id == "alice"


# --- entity spawn --------------------------------------------------------------


def test_spawn_stamps_the_sender_as_owner() -> None:
    room = room_with("alice", "bob")
    message = spawn("cube-1")
    message.entity_spawn.owner_id = "bob"  # a client cannot spawn in another's name

    spawned = only_broadcast(send(room, "alice", message))

    assert spawned.message.entity_spawn.owner_id == "alice"
    assert room.entities["cube-1"].owner_id == "alice"


def test_spawn_broadcast_is_reliable_and_excludes_the_sender() -> None:
    room = room_with("alice", "bob")

    spawned = only_broadcast(send(room, "alice", spawn("cube-1", color="red")))

    assert spawned.reliable
    assert spawned.exclude == "alice"
    assert spawned.message.type == pb.ENTITY_SPAWN
    assert spawned.message.sender_id == "alice"
    assert dict(spawned.message.entity_spawn.components) == {"color": "red"}


def test_spawning_an_existing_id_of_ones_own_is_bad_message() -> None:
    room = room_with("alice")
    send(room, "alice", spawn("cube-1"))

    error = only_error(send(room, "alice", spawn("cube-1", message_id="c-2")))

    assert error.code == ErrorCode.BAD_MESSAGE
    assert error.ref_message_id == "c-2"


def test_spawning_an_id_owned_by_another_is_not_owner() -> None:
    room = room_with("alice", "bob")
    send(room, "bob", spawn("cube-1", color="blue"))

    error = only_error(send(room, "alice", spawn("cube-1", color="red")))

    assert error.code == ErrorCode.NOT_OWNER
    assert room.entities["cube-1"].owner_id == "bob"
    assert room.entities["cube-1"].components == {"color": "blue"}


def test_spawn_up_to_the_room_entity_limit_is_accepted() -> None:
    room = room_with("alice", "bob", limits=RoomLimits(entities=2))
    send(room, "alice", spawn("a-1"))

    outcome = send(room, "bob", spawn("b-1"))

    assert only_broadcast(outcome).reliable
    assert len(room.entities) == 2


def test_spawn_past_the_room_entity_limit_is_too_large() -> None:
    room = room_with("alice", "bob", limits=RoomLimits(entities=2))
    send(room, "alice", spawn("a-1"))
    send(room, "bob", spawn("b-1"))

    error = only_error(send(room, "bob", spawn("b-2")))

    assert error.code == ErrorCode.TOO_LARGE
    assert list(room.entities) == ["a-1", "b-1"]


def test_spawn_up_to_the_per_client_entity_limit_is_accepted() -> None:
    room = room_with("alice", limits=RoomLimits(entities_per_client=2))
    send(room, "alice", spawn("a-1"))

    outcome = send(room, "alice", spawn("a-2"))

    assert only_broadcast(outcome).reliable


def test_spawn_past_the_per_client_entity_limit_is_too_large() -> None:
    room = room_with("alice", limits=RoomLimits(entities_per_client=2))
    send(room, "alice", spawn("a-1"))
    send(room, "alice", spawn("a-2"))

    error = only_error(send(room, "alice", spawn("a-3")))

    assert error.code == ErrorCode.TOO_LARGE
    assert list(room.entities) == ["a-1", "a-2"]


def test_per_client_entity_limit_does_not_bind_other_clients() -> None:
    room = room_with("alice", "bob", limits=RoomLimits(entities_per_client=1))
    send(room, "alice", spawn("a-1"))

    outcome = send(room, "bob", spawn("b-1"))

    assert only_broadcast(outcome).reliable


def test_despawn_frees_a_slot_under_the_per_client_limit() -> None:
    room = room_with("alice", limits=RoomLimits(entities_per_client=1))
    send(room, "alice", spawn("a-1"))
    send(room, "alice", pb.Message(entity_despawn=pb.EntityDespawn(entity_id="a-1")))

    outcome = send(room, "alice", spawn("a-2"))

    assert only_broadcast(outcome).reliable


def test_spawn_with_components_up_to_the_entity_limit_is_accepted() -> None:
    room = room_with("alice", limits=RoomLimits(components_per_entity=2))

    outcome = send(room, "alice", spawn("a-1", color="red", size="2"))

    assert only_broadcast(outcome).reliable


def test_spawn_with_more_components_than_the_entity_limit_is_too_large() -> None:
    room = room_with("alice", limits=RoomLimits(components_per_entity=2))

    error = only_error(send(room, "alice", spawn("a-1", color="red", size="2", mass="5")))

    assert error.code == ErrorCode.TOO_LARGE
    assert room.entities == {}


# --- entity update ---------------------------------------------------------------


def test_entity_update_merges_components() -> None:
    room = room_with("alice")
    send(room, "alice", spawn("cube-1", color="red", size="1"))

    send(room, "alice", update("cube-1", color=b"blue", mass=b"5"))

    assert room.entities["cube-1"].components == {"color": "blue", "size": "1", "mass": "5"}


def test_entity_update_broadcast_is_reliable_and_excludes_the_sender() -> None:
    room = room_with("alice", "bob")
    send(room, "alice", spawn("cube-1"))

    updated = only_broadcast(send(room, "alice", update("cube-1", color=b"blue")))

    assert updated.reliable
    assert updated.exclude == "alice"
    assert updated.message.type == pb.ENTITY_UPDATE
    assert dict(updated.message.entity_update.components) == {"color": b"blue"}


def test_non_utf8_component_bytes_become_base64_text_in_the_snapshot() -> None:
    room = room_with("alice", "bob")
    send(room, "alice", spawn("cube-1"))

    send(room, "alice", update("cube-1", mesh=b"\xff\x00\xfe"))

    (cube,) = room.world_state(for_client="bob", now_ms=LATER_MS).entities
    assert cube.components["mesh"] == "base64:/wD+"


def test_utf8_component_bytes_stay_text_in_the_snapshot() -> None:
    room = room_with("alice")
    send(room, "alice", spawn("cube-1"))

    send(room, "alice", update("cube-1", label="Grüße".encode()))

    assert room.entities["cube-1"].components["label"] == "Grüße"


def test_entity_update_by_a_non_owner_is_not_owner() -> None:
    room = room_with("alice", "bob")
    send(room, "bob", spawn("cube-1", color="red"))

    error = only_error(send(room, "alice", update("cube-1", color=b"blue")))

    assert error.code == ErrorCode.NOT_OWNER
    assert room.entities["cube-1"].components == {"color": "red"}


def test_entity_update_reaching_the_component_limit_is_accepted() -> None:
    room = room_with("alice", limits=RoomLimits(components_per_entity=2))
    send(room, "alice", spawn("cube-1", color="red"))

    outcome = send(room, "alice", update("cube-1", size=b"2"))

    assert only_broadcast(outcome).reliable
    assert len(room.entities["cube-1"].components) == 2


def test_entity_update_past_the_component_limit_is_too_large() -> None:
    room = room_with("alice", limits=RoomLimits(components_per_entity=2))
    send(room, "alice", spawn("cube-1", color="red", size="2"))

    error = only_error(send(room, "alice", update("cube-1", mass=b"5")))

    assert error.code == ErrorCode.TOO_LARGE
    assert room.entities["cube-1"].components == {"color": "red", "size": "2"}


def test_entity_update_of_existing_components_at_the_limit_is_accepted() -> None:
    room = room_with("alice", limits=RoomLimits(components_per_entity=2))
    send(room, "alice", spawn("cube-1", color="red", size="2"))

    outcome = send(room, "alice", update("cube-1", color=b"blue"))

    assert only_broadcast(outcome).reliable


# --- entity despawn -------------------------------------------------------------


def test_despawn_by_the_owner_removes_the_entity_and_broadcasts() -> None:
    room = room_with("alice", "bob")
    send(room, "alice", spawn("cube-1"))

    gone = only_broadcast(
        send(room, "alice", pb.Message(entity_despawn=pb.EntityDespawn(entity_id="cube-1")))
    )

    assert room.entities == {}
    assert gone.reliable
    assert gone.exclude == "alice"
    assert gone.message.type == pb.ENTITY_DESPAWN


def test_despawn_by_a_non_owner_is_not_owner() -> None:
    room = room_with("alice", "bob")
    send(room, "bob", spawn("cube-1"))
    message = pb.Message(message_id="c-9", entity_despawn=pb.EntityDespawn(entity_id="cube-1"))

    error = only_error(send(room, "alice", message))

    assert error.code == ErrorCode.NOT_OWNER
    assert error.ref_message_id == "c-9"
    assert list(room.entities) == ["cube-1"]


# --- chat ---------------------------------------------------------------------


def test_chat_is_stamped_with_sender_and_time() -> None:
    room = room_with("alice", "bob")
    message = chat("hi all")
    message.chat_message.from_client_id = "bob"  # a client cannot speak for another
    message.chat_message.timestamp = 1

    said = only_broadcast(send(room, "alice", message, now_ms=LATER_MS)).message

    assert said.chat_message.from_client_id == "alice"
    assert said.chat_message.timestamp == LATER_MS
    assert said.sender_id == "alice"
    assert said.timestamp == LATER_MS
    assert said.type == pb.CHAT_MESSAGE


def test_chat_is_reliable_and_excludes_the_sender() -> None:
    room = room_with("alice", "bob")

    said = only_broadcast(send(room, "alice", chat()))

    assert said.reliable
    assert said.exclude == "alice"


def test_chat_text_is_handed_over_for_persistence() -> None:
    room = room_with("alice")

    outcome = send(room, "alice", chat("remember me"))

    assert outcome.chat_text == "remember me"


def test_only_chat_hands_over_text_for_persistence() -> None:
    room = room_with("alice")

    outcome = send(room, "alice", spawn("cube-1"))

    assert outcome.chat_text is None


# --- ack, ping ------------------------------------------------------------------


def test_reliable_message_with_a_message_id_is_acked() -> None:
    room = room_with("alice", "bob")

    outcome = send(room, "alice", chat(message_id="c-5"), now_ms=LATER_MS)

    (ack,) = outcome.replies
    assert ack.ack.message_id == "c-5"
    assert ack.type == pb.ACK
    assert ack.timestamp == LATER_MS


@pytest.mark.parametrize(
    "message",
    [
        pytest.param(chat(), id="reliable-without-message-id"),
        pytest.param(move(message_id="c-1"), id="volatile-with-message-id"),
        pytest.param(pb.Message(message_id="c-1", ack=pb.Ack(up_to_seq=3)), id="ack"),
        pytest.param(spawn("bobs-cube", message_id="c-1"), id="refused"),
    ],
)
def test_no_ack_without_a_message_id_and_a_reliable_broadcast(message: pb.Message) -> None:
    room = room_with("alice", "bob")
    send(room, "bob", spawn("bobs-cube"))

    outcome = send(room, "alice", message)

    assert not [r for r in outcome.replies if r.WhichOneof("payload") == "ack"]


def test_ping_is_answered_with_pong_carrying_both_times() -> None:
    room = room_with("alice")
    ping = pb.Message(message_id="p-1", ping=pb.Ping(client_time_ms=123))

    outcome = send(room, "alice", ping, now_ms=LATER_MS)

    (pong,) = outcome.replies
    assert outcome.broadcasts == []
    assert pong.type == pb.PONG
    assert pong.pong.client_time_ms == 123
    assert pong.pong.server_time_ms == LATER_MS
    assert pong.message_id == "p-1"


def test_client_ack_produces_nothing() -> None:
    room = room_with("alice")

    outcome = send(room, "alice", pb.Message(ack=pb.Ack(up_to_seq=4)))

    assert outcome == Outcome()


# --- moderation -------------------------------------------------------------------


@pytest.mark.parametrize(
    "message",
    [
        pytest.param(pb.Message(kick_player=pb.KickPlayer(target_client_id="bob")), id="kick"),
        pytest.param(
            pb.Message(mute_player=pb.MutePlayer(target_client_id="bob", muted=True)), id="mute"
        ),
        pytest.param(pb.Message(lock_room=pb.LockRoom(locked=True)), id="lock"),
    ],
)
def test_moderation_without_rights_is_forbidden(message: pb.Message) -> None:
    room = room_with("alice", "bob", "carol")  # bob: neither staff nor host
    message.message_id = "mod-1"
    if message.HasField("kick_player"):
        message.kick_player.target_client_id = "carol"
    if message.HasField("mute_player"):
        message.mute_player.target_client_id = "carol"

    error = only_error(send(room, "bob", message))

    assert error.code == ErrorCode.FORBIDDEN
    assert error.ref_message_id == "mod-1"


def test_error_reply_is_stamped_as_an_error() -> None:
    room = room_with("alice", "bob")

    outcome = send(room, "bob", pb.Message(lock_room=pb.LockRoom(locked=True)), now_ms=LATER_MS)

    (reply,) = outcome.replies
    assert reply.type == pb.ERROR
    assert reply.timestamp == LATER_MS


# --- presence updates ----------------------------------------------------------


def test_presence_update_renames_the_sender() -> None:
    room = room_with("alice", "bob")

    send(room, "alice", rename("Ada"))

    (alice,) = room.world_state(for_client="bob", now_ms=LATER_MS).players
    assert alice.display_name == "Ada"


def test_presence_update_is_broadcast_as_update_excluding_the_sender() -> None:
    room = room_with("alice", "bob")

    renamed = only_broadcast(send(room, "alice", rename("Ada")))

    assert renamed.reliable
    assert renamed.exclude == "alice"
    assert renamed.message.type == pb.PRESENCE_UPDATE
    assert renamed.message.presence_event.event_type == pb.UPDATE
    assert renamed.message.presence_event.client_id == "alice"
    assert renamed.message.presence_event.data.display_name == "Ada"
    assert renamed.message.presence_event.data.host_client_id == "alice"


def test_presence_update_cannot_name_another_client() -> None:
    room = room_with("alice", "bob")
    message = rename("Evil Bob")
    message.presence_event.client_id = "bob"

    renamed = only_broadcast(send(room, "alice", message))

    assert renamed.message.presence_event.client_id == "alice"
    assert room.players["bob"].display_name == "Bob"


def test_presence_update_without_a_name_keeps_the_name() -> None:
    room = room_with("alice")

    send(room, "alice", rename(""))

    assert room.players["alice"].display_name == "Alice"


def test_later_client_hello_renames_the_sender() -> None:
    room = room_with("alice", "bob")
    hello = pb.Message(
        client_hello=pb.ClientHello(display_name="Ada", avatar_url="https://example.com/a.glb")
    )

    renamed = only_broadcast(send(room, "alice", hello))

    assert renamed.message.presence_event.event_type == pb.UPDATE
    assert room.players["alice"].display_name == "Ada"
    assert room.players["alice"].avatar_url == "https://example.com/a.glb"


def test_client_hello_with_only_capabilities_is_not_broadcast() -> None:
    # PROTOCOL.md section 5: a ClientHello that changes no name or avatar is not
    # broadcast; clients send one after every resume, which section 6 keeps
    # invisible to the room.
    room = room_with("alice", "bob")
    hello = pb.Message(client_hello=pb.ClientHello(capabilities=["batch", "ack"]))

    assert send(room, "alice", hello).broadcasts == []


def test_client_hello_repeating_the_current_name_and_avatar_is_not_broadcast() -> None:
    room = room_with("alice", "bob")
    config = pb.AvatarConfig(body_type="robot")
    first = pb.Message(
        client_hello=pb.ClientHello(display_name="Ada", avatar_url="a.glb", avatar_config=config)
    )
    only_broadcast(send(room, "alice", first))

    assert send(room, "alice", first).broadcasts == []


def test_client_hello_changing_only_the_avatar_config_is_broadcast() -> None:
    room = room_with("alice", "bob")
    send(
        room,
        "alice",
        pb.Message(client_hello=pb.ClientHello(avatar_config=pb.AvatarConfig(height=1.7))),
    )
    taller = pb.Message(client_hello=pb.ClientHello(avatar_config=pb.AvatarConfig(height=1.9)))

    updated = only_broadcast(send(room, "alice", taller))

    assert updated.message.presence_event.data.avatar_config.height == pytest.approx(1.9)


# --- server message ids -----------------------------------------------------------


def test_reliable_broadcasts_carry_server_message_ids_in_order() -> None:
    room = make_room()
    ids = [only_broadcast(room.join(player("alice"), now_ms=NOW_MS)).message.message_id]
    ids.append(only_broadcast(room.join(player("bob"), now_ms=NOW_MS)).message.message_id)
    ids.append(only_broadcast(send(room, "alice", chat(message_id="c-1"))).message.message_id)
    ids.append(only_broadcast(send(room, "bob", spawn("b-1"))).message.message_id)

    assert ids == ["m1", "m2", "m3", "m4"]


def test_volatile_broadcasts_use_no_server_message_id() -> None:
    room = room_with("alice", "bob")  # m1, m2
    send(room, "alice", move())

    chat_id = only_broadcast(send(room, "alice", chat())).message.message_id

    assert chat_id == "m3"


def test_leave_numbers_every_broadcast() -> None:
    room = room_with("alice", "bob")  # m1, m2
    send(room, "alice", spawn("a-1"))  # m3

    outcome = room.leave("alice", now_ms=LATER_MS)

    assert [b.message.message_id for b in outcome.broadcasts] == ["m4", "m5", "m6"]


# --- rooms spread over instances: the registry elects, the room records changes


def registry_room(*client_ids: str, host: str) -> RoomState:
    """A room whose host the registry chose (``elects_host=False``)."""
    counter = itertools.count(1)
    room = RoomState("lobby", next_id=lambda: f"m{next(counter)}", elects_host=False)
    for client_id in client_ids:
        room.join(player(client_id), now_ms=NOW_MS, host_client_id=host)
    room.take_changes()
    return room


def test_join_takes_the_host_the_registry_elected() -> None:
    room = registry_room("bob", host="alice")  # alice is on another instance
    assert room.host_client_id == "alice"


def test_without_election_the_host_leaving_hands_nothing_over() -> None:
    room = registry_room("alice", "bob", host="alice")
    outcome = room.leave("alice", now_ms=LATER_MS)
    assert [b.message.presence_event.event_type for b in outcome.broadcasts] == [pb.LEAVE]
    assert room.host_client_id == "alice"  # until the registry's hand-over


def test_hand_over_to_a_member_of_another_instance_is_an_update_for_everyone() -> None:
    room = registry_room("bob", host="alice")
    carol = Player(client_id="carol", user_id="u-carol", display_name="Carol")
    (handover,) = room.hand_over(carol, now_ms=LATER_MS)
    event = handover.message.presence_event
    assert (event.event_type, event.client_id, event.data.host_client_id) == (
        pb.UPDATE,
        "carol",
        "carol",
    )
    assert (handover.reliable, handover.exclude, room.host_client_id) == (True, "", "carol")


def test_hand_over_to_no_one_empties_the_host_silently() -> None:
    room = registry_room("bob", host="alice")
    assert room.hand_over(None, now_ms=LATER_MS) == []
    assert room.host_client_id == ""


def test_departure_is_the_leave_then_one_despawn_per_entity() -> None:
    room = registry_room("bob", host="bob")
    broadcasts = room.departure("ghost", ["e1", "e2"], now_ms=LATER_MS)
    assert [b.message.WhichOneof("payload") for b in broadcasts] == [
        "presence_event",
        "entity_despawn",
        "entity_despawn",
    ]
    assert [b.message.entity_despawn.entity_id for b in broadcasts[1:]] == ["e1", "e2"]
    assert all(b.reliable and b.exclude == "ghost" for b in broadcasts)


def test_take_changes_reports_moved_players_and_entities_once() -> None:
    room = registry_room("alice", host="alice")
    send(room, "alice", spawn("lamp"))
    send(room, "alice", move())
    send(room, "alice", move("lamp", x=4.0))
    changes = room.take_changes()
    assert [p.client_id for p in changes.players] == ["alice"]
    assert [(e.entity_id, e.position.x) for e in changes.entities] == [("lamp", 4.0)]
    assert changes.messages == 3
    assert not room.take_changes()


def test_take_changes_reports_a_despawn_by_owner() -> None:
    room = registry_room("alice", host="alice")
    send(room, "alice", spawn("lamp"))
    room.take_changes()
    send(room, "alice", pb.Message(entity_despawn=pb.EntityDespawn(entity_id="lamp")))
    changes = room.take_changes()
    assert (changes.entities, changes.removed_entities) == ([], [("alice", "lamp")])


def test_a_leaving_member_takes_its_pending_changes_with_it() -> None:
    room = registry_room("alice", "bob", host="alice")
    send(room, "bob", spawn("chair"))
    send(room, "bob", move())
    room.leave("bob", now_ms=LATER_MS)
    changes = room.take_changes()
    assert (changes.players, changes.entities) == ([], [])


# --- moderation by clients: staff, or the host for lock only


def staff_room() -> RoomState:
    """Alice hosts, Mo is staff, Bob is a plain member."""
    room = make_room()
    room.join(player("alice"), now_ms=NOW_MS)
    room.join(
        Player(client_id="mo", user_id="user-mo", display_name="Mo", moderator=True), now_ms=NOW_MS
    )
    room.join(player("bob"), now_ms=NOW_MS)
    return room


def test_staff_kick_is_announced_to_the_room_and_ordered_for_every_instance() -> None:
    room = staff_room()
    outcome = send(room, "mo", pb.Message(kick_player=pb.KickPlayer(target_client_id="bob")))
    kicked = only_broadcast(outcome)
    assert (kicked.message.player_kicked.kicked_client_id, kicked.exclude) == ("bob", "mo")
    assert kicked.message.player_kicked.kicked_by_client_id == "mo"
    assert kicked.reliable and kicked.message.type == pb.PLAYER_KICKED
    assert outcome.moderation == ModerationOrder(Action.KICK, "bob", "", "mo")


def test_the_host_may_lock_the_room_but_not_kick() -> None:
    room = staff_room()
    locked = send(room, "alice", pb.Message(lock_room=pb.LockRoom(locked=True, reason="full")))
    assert only_broadcast(locked).message.room_locked.locked is True
    assert locked.moderation is not None and locked.moderation.action is Action.LOCK
    kick = send(room, "alice", pb.Message(kick_player=pb.KickPlayer(target_client_id="bob")))
    assert only_error(kick).code == ErrorCode.FORBIDDEN


@pytest.mark.parametrize("target", ["", "mo"])
def test_a_kick_must_name_another_member(target: str) -> None:
    room = staff_room()
    outcome = send(room, "mo", pb.Message(kick_player=pb.KickPlayer(target_client_id=target)))
    assert only_error(outcome).code == ErrorCode.BAD_MESSAGE


def test_a_muted_member_is_not_heard_until_unmuted() -> None:
    room = staff_room()
    mute = pb.Message(mute_player=pb.MutePlayer(target_client_id="bob", muted=True))
    muted = only_broadcast(send(room, "mo", mute)).message.player_muted
    assert (muted.muted_client_id, muted.muted) == ("bob", True)

    assert only_error(send(room, "bob", chat("hello?"))).code == ErrorCode.MUTED
    voice = pb.Message(voice_data=pb.VoiceData(audio_data=b"ab"))
    assert send(room, "bob", voice) == Outcome()

    unmute = pb.Message(mute_player=pb.MutePlayer(target_client_id="bob", muted=False))
    send(room, "mo", unmute)
    assert only_broadcast(send(room, "bob", chat("back"))).message.chat_message.message == "back"


def test_an_order_from_the_admin_is_announced_without_a_sender() -> None:
    room = staff_room()
    outcome = room.moderate(ModerationOrder(Action.MUTE, "bob", "spam"), now_ms=LATER_MS)
    muted = only_broadcast(outcome)
    assert (muted.exclude, muted.message.player_muted.reason) == ("", "spam")
    assert "bob" in room.muted


@pytest.mark.parametrize("action", list(Action))
def test_an_order_survives_the_channel_layer(action: Action) -> None:
    order = ModerationOrder(action, "bob", "why", "mo", 60)
    assert ModerationOrder.from_event(order.as_event()) == order
