"""Resume, grace and takeover on one instance (PROTOCOL.md section 6), both layers."""

from __future__ import annotations

import pytest

from presence.protocol import pb
from presence.protocol.codes import CloseCode, ErrorCode
from tests.clients.communicator import ProtocolClient

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("channel_layer_kind", "short_windows"),
]

GRACE = 0.5
WINDOW = 3.0


@pytest.fixture
def short_windows(settings, channel_layer_kind: str) -> None:
    """A grace of 0.5 s, a resume window of 3 s, 6 kept messages."""
    settings.PRESENCE = {
        **settings.PRESENCE,
        "PRESENCE_LEAVE_GRACE_SECONDS": GRACE,
        "PRESENCE_RESUME_WINDOW_SECONDS": WINDOW,
        "MESSAGE_QUEUE_SIZE": 6,
    }


async def joined(room: str, user: str, **params: str | int) -> ProtocolClient:
    query = "&".join(f"{k}={v}" for k, v in {"user_id": user, **params}.items())
    client = ProtocolClient(f"/ws/{room}?{query}")
    await client.join()
    return client


async def resumed(room: str, user: str, old: ProtocolClient, last_seq: int) -> ProtocolClient:
    assert old.hello is not None
    return await joined(room, user, session_id=old.hello.session_id, last_seq=last_seq)


async def drop(client: ProtocolClient) -> None:
    """The socket goes without a close frame (1006): the session stays."""
    await client.communicator.disconnect(code=1006)


def chat(text: str, message_id: str = "") -> pb.Message:
    return pb.Message(message_id=message_id, chat_message=pb.ChatMessage(message=text))


async def membership(client: ProtocolClient) -> pb.Message:
    """The next JOIN or LEAVE (host hand-overs, UPDATEs, are skipped)."""
    return await client.recv_until(lambda m: kind(m) in ("JOIN", "LEAVE"))


def kind(message: pb.Message) -> str:
    payload = message.WhichOneof("payload") or ""
    if payload == "presence_event":
        return pb.PresenceEventType.Name(message.presence_event.event_type)
    return payload


async def test_resume_inside_the_grace_replays_exactly_what_was_missed_unseen_by_the_room() -> None:
    alice = await joined("rs", "alice")
    bob = await joined("rs", "bob")
    join = await alice.recv_kind("presence_event")
    await bob.send(chat("before"))
    before = await alice.recv_kind("chat_message")
    assert before.seq == join.seq + 1
    await drop(alice)

    for n in range(3):
        await bob.send(chat(f"missed {n}"))
    back = await resumed("rs", "alice", alice, before.seq)

    assert back.hello.resumed
    assert back.hello.session_id == alice.hello.session_id
    assert back.client_id == alice.client_id
    assert not back.hello.HasField("initial_state")
    replay = [await back.recv() for _ in range(3)]
    assert [(m.seq, m.chat_message.message) for m in replay] == [
        (before.seq + 1, "missed 0"),
        (before.seq + 2, "missed 1"),
        (before.seq + 3, "missed 2"),
    ]
    await bob.send(chat("live"))
    live = await back.recv_kind("chat_message")
    assert (live.seq, live.chat_message.message) == (before.seq + 4, "live")
    # bob saw neither a LEAVE nor a JOIN: his next reliable message is alice's chat
    await back.send(chat("i am back"))
    heard = await bob.recv_until(lambda m: kind(m) not in ("ack", "pong"))
    assert heard.chat_message.message == "i am back"
    await back.close()
    await bob.close()


async def test_a_client_close_1000_leaves_at_once_and_ends_the_session() -> None:
    alice = await joined("rs", "alice")
    bob = await joined("rs", "bob")
    await alice.recv_kind("presence_event")
    await alice.close()  # 1000
    leave = await bob.recv_kind("presence_event")
    assert kind(leave) == "LEAVE"

    again = await resumed("rs", "alice", alice, 1)
    assert not again.hello.resumed
    await again.close()
    await bob.close()


async def test_the_room_hears_leave_once_the_grace_is_over() -> None:
    alice = await joined("rs", "alice")
    bob = await joined("rs", "bob")
    spawn = pb.Message(entity_spawn=pb.EntitySpawn(entity_id="alice-box", template_id="t"))
    await alice.send(spawn)
    await bob.recv_kind("entity_spawn")
    await drop(alice)
    assert await bob.communicator.receive_nothing(timeout=GRACE * 0.6)  # present in the grace

    leave = await bob.recv_kind("presence_event")
    assert (kind(leave), leave.presence_event.client_id) == ("LEAVE", alice.client_id)
    despawn = await bob.recv_kind("entity_despawn")
    assert despawn.entity_despawn.entity_id == "alice-box"
    await bob.close()


async def test_resume_after_the_grace_replays_its_own_leave_and_the_room_hears_join() -> None:
    alice = await joined("rs", "alice")
    bob = await joined("rs", "bob")
    join = await alice.recv_kind("presence_event")
    await drop(alice)
    leave = await membership(bob)  # the grace ran out
    assert kind(leave) == "LEAVE"

    back = await resumed("rs", "alice", alice, join.seq)
    assert back.hello.resumed
    own_leave = await back.recv()
    assert (kind(own_leave), own_leave.presence_event.client_id) == ("LEAVE", alice.client_id)
    assert own_leave.seq == join.seq + 1
    rejoin = await membership(bob)
    assert (kind(rejoin), rejoin.presence_event.client_id) == ("JOIN", alice.client_id)
    await back.close()
    await bob.close()


async def test_takeover_closes_the_old_half_open_socket_with_4010() -> None:
    alice = await joined("rs", "alice")
    bob = await joined("rs", "bob")
    await alice.recv_kind("presence_event")
    back = await resumed("rs", "alice", alice, 1)  # alice's old socket is still open

    assert back.hello.resumed
    assert await alice.expect_close() == CloseCode.SESSION_TAKEN_OVER
    await bob.send(chat("to the new socket"))
    heard = await back.recv_kind("chat_message")
    assert heard.chat_message.message == "to the new socket"
    assert await bob.communicator.receive_nothing(timeout=0.2)  # no LEAVE, no JOIN
    await back.close()
    await bob.close()


async def test_a_message_id_answered_before_the_drop_is_answered_again_not_applied() -> None:
    alice = await joined("rs", "alice")
    bob = await joined("rs", "bob")
    await alice.recv_kind("presence_event")
    await bob.send(chat("once", message_id="m-1"))
    await bob.recv_kind("ack")
    await alice.recv_kind("chat_message")
    await drop(bob)

    back = await resumed("rs", "bob", bob, 0)
    await back.send(chat("once", message_id="m-1"))  # its retry after the resume
    again = await back.recv_kind("ack")
    assert again.ack.message_id == "m-1"
    await back.send(chat("twice", message_id="m-2"))
    await back.recv_kind("ack")
    heard = await alice.recv_kind("chat_message")
    assert heard.chat_message.message == "twice"
    await back.close()
    await alice.close()


async def resync_expected(client: ProtocolClient) -> None:
    """``resumed: false``, a full initial state, then RESYNC_REQUIRED before anything numbered."""
    assert client.hello is not None
    assert not client.hello.resumed
    assert client.hello.HasField("initial_state")
    error = await client.recv()
    assert error.WhichOneof("payload") == "error", error
    assert error.error.code == ErrorCode.RESYNC_REQUIRED
    assert error.seq == 0


async def test_an_unknown_session_is_a_new_session_with_resync_required() -> None:
    alice = await joined("rs", "alice", session_id="0" * 32, last_seq=3)
    await resync_expected(alice)
    assert alice.hello.session_id != "0" * 32
    await alice.close()


async def test_last_seq_beyond_what_was_sent_resyncs_and_ends_the_old_session() -> None:
    alice = await joined("rs", "alice")
    bob = await joined("rs", "bob")
    join = await alice.recv_kind("presence_event")
    await drop(alice)
    again = await resumed("rs", "alice", alice, join.seq + 5)
    await resync_expected(again)
    assert again.client_id != alice.client_id
    # The old session ended at once: the room heard its LEAVE (before the grace).
    events = [await membership(bob) for _ in range(2)]
    assert {(kind(e), e.presence_event.client_id) for e in events} == {
        ("LEAVE", alice.client_id),
        ("JOIN", again.client_id),
    }
    await again.close()
    await bob.close()


async def test_a_gap_that_can_no_longer_be_filled_resyncs() -> None:
    alice = await joined("rs", "alice")
    bob = await joined("rs", "bob")
    join = await alice.recv_kind("presence_event")
    await drop(alice)
    for n in range(5):  # the window keeps 6: seq join+1 .. join+5 plus the JOIN
        await bob.send(chat(f"c{n}"))
    await bob.ping(1)
    await bob.send(chat("one too many"))  # join.seq is pushed out
    await bob.ping(2)
    again = await resumed("rs", "alice", alice, join.seq - 1)
    await resync_expected(again)
    await again.close()
    await bob.close()


async def test_an_expired_session_resyncs() -> None:
    alice = await joined("rs", "alice")
    await drop(alice)
    bob = await joined("rs", "bob")
    await membership(bob)  # alice's LEAVE, after the grace
    await bob.recv_kind("presence_event")  # bob is the host now
    assert await bob.communicator.receive_nothing(timeout=WINDOW - GRACE + 0.3)
    again = await resumed("rs", "alice", alice, 0)
    await resync_expected(again)
    await again.close()
    await bob.close()


async def test_another_identity_cannot_resume_and_leaves_the_session_alone() -> None:
    alice = await joined("rs", "alice")
    bob = await joined("rs", "bob")
    await alice.recv_kind("presence_event")
    await drop(alice)
    mallory = await resumed("rs", "mallory", alice, 0)
    await resync_expected(mallory)
    assert mallory.client_id != alice.client_id

    back = await resumed("rs", "alice", alice, 0)
    assert back.hello.resumed
    await back.close()
    await mallory.close()
    await bob.close()


@pytest.mark.parametrize(
    "query",
    [
        "session_id=" + "a" * 32,  # no last_seq
        "last_seq=3",  # no session_id
        "session_id=xyz&last_seq=1",
        "session_id=" + "a" * 32 + "&last_seq=-1",
        "session_id=" + "a" * 32 + "&last_seq=1.5",
    ],
)
async def test_a_malformed_resume_request_is_refused_4400_saying_what_to_send(query: str) -> None:
    client = ProtocolClient(f"/ws/rs?user_id=alice&{query}")
    accepted, _ = await client.open()
    assert accepted
    error = await client.recv()
    assert error.error.code == ErrorCode.BAD_MESSAGE
    assert "session_id" in error.error.message and "last_seq" in error.error.message
    assert await client.expect_close() == CloseCode.BAD_REQUEST


async def test_a_message_written_to_the_old_socket_but_not_processed_is_replayed() -> None:
    alice = await joined("rs", "alice")
    bob = await joined("rs", "bob")
    join = await alice.recv_kind("presence_event")
    await bob.send(chat("in flight"))
    await alice.recv_kind("chat_message")  # written; the client says it did not process it
    await drop(alice)

    back = await resumed("rs", "alice", alice, join.seq)
    replayed = await back.recv()
    assert (replayed.seq, replayed.chat_message.message) == (join.seq + 1, "in flight")
    await back.close()
    await bob.close()
