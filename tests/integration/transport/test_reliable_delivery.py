"""Acks, re-sends, 4009 and idempotent client messages (PROTOCOL.md section 5), both layers."""

from __future__ import annotations

import pytest

from presence.protocol import pb
from presence.protocol.codes import CloseCode, ErrorCode
from tests.clients.communicator import ProtocolClient

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("channel_layer_kind", "quick_retries"),
]


@pytest.fixture
def quick_retries(settings, channel_layer_kind: str) -> None:
    """Re-sends every 0.2 s, two of them, a window of 4 messages."""
    settings.PRESENCE = {
        **settings.PRESENCE,
        "MESSAGE_RETRY_INTERVAL": 0.2,
        "MESSAGE_MAX_RETRIES": 2,
        "MESSAGE_QUEUE_SIZE": 4,
    }


async def joined(room: str, user: str, *, acks: bool = False) -> ProtocolClient:
    client = ProtocolClient(f"/ws/{room}?user_id={user}")
    await client.join()
    if acks:
        hello = pb.ClientHello(display_name=user, capabilities=["ack"])
        await client.send(pb.Message(client_hello=hello))
    return client


def chat(text: str, message_id: str = "") -> pb.Message:
    return pb.Message(message_id=message_id, chat_message=pb.ChatMessage(message=text))


async def test_server_hello_offers_the_ack_capability() -> None:
    alice = await joined("rd", "alice")
    assert "ack" in alice.hello.capabilities
    await alice.close()


async def test_an_unacked_message_is_resent_with_its_seq_then_the_socket_closes_4009() -> None:
    bob = await joined("rd", "bob", acks=True)
    alice = await joined("rd", "alice")
    await bob.recv_kind("presence_event")  # alice's JOIN
    await alice.send(chat("hello"))

    first = await bob.recv_kind("chat_message")
    again = [await bob.recv_kind("chat_message") for _ in range(2)]  # MESSAGE_MAX_RETRIES
    assert [m.seq for m in again] == [first.seq, first.seq]
    assert all(m.chat_message.message == "hello" for m in again)
    assert await bob.expect_close() == CloseCode.SLOW_CONSUMER
    await alice.close()


async def test_an_acked_message_is_not_resent() -> None:
    bob = await joined("rd", "bob", acks=True)
    alice = await joined("rd", "alice")
    join = await bob.recv_kind("presence_event")
    await alice.send(chat("hello"))
    message = await bob.recv_kind("chat_message")
    await bob.send(pb.Message(ack=pb.Ack(up_to_seq=message.seq)))
    assert join.seq < message.seq

    await alice.send(chat("later"))
    later = await bob.recv_kind("chat_message")
    assert (later.chat_message.message, later.seq) == ("later", message.seq + 1)
    await bob.send(pb.Message(ack=pb.Ack(up_to_seq=later.seq)))
    # Past the retry intervals and the 4009 deadline: nothing is re-sent.
    assert await bob.communicator.receive_nothing(timeout=0.8)
    await alice.close()
    await bob.close()


async def test_an_ack_beyond_the_last_seq_sent_is_an_error_and_acks_nothing() -> None:
    bob = await joined("rd", "bob", acks=True)
    alice = await joined("rd", "alice")
    join = await bob.recv_kind("presence_event")

    await bob.send(pb.Message(ack=pb.Ack(up_to_seq=999_999_999)))

    error = (await bob.recv_kind("error")).error
    assert error.code == ErrorCode.BAD_MESSAGE
    assert "999999999" in error.message and f"last seq sent ({join.seq})" in error.message
    # Nothing was acknowledged by it: the JOIN is still re-sent, with its seq.
    again = await bob.recv_kind("presence_event")
    assert again.seq == join.seq
    await alice.close()
    await bob.close()


async def test_a_client_without_ack_gets_no_resends() -> None:
    bob = await joined("rd", "bob")
    alice = await joined("rd", "alice")
    await bob.recv_kind("presence_event")
    await alice.send(chat("hello"))
    await bob.recv_kind("chat_message")
    # Past the retry intervals and the 4009 deadline: nothing is re-sent.
    assert await bob.communicator.receive_nothing(timeout=0.8)
    assert (await bob.ping(7)).WhichOneof("payload") == "pong"
    await alice.close()
    await bob.close()


async def test_more_unacked_messages_than_the_queue_closes_4009_not_a_silent_drop() -> None:
    bob = await joined("rd", "bob", acks=True)
    alice = await joined("rd", "alice")
    await bob.recv_kind("presence_event")  # seq 1: the window holds 4
    for n in range(4):
        await alice.send(chat(f"c{n}"))
    texts = []
    for _ in range(3):
        texts.append((await bob.recv_kind("chat_message")).chat_message.message)
    assert texts == ["c0", "c1", "c2"]
    assert await bob.expect_close() == CloseCode.SLOW_CONSUMER
    await alice.close()


async def test_a_repeated_message_id_is_applied_once_and_answered_each_time() -> None:
    alice = await joined("rd", "alice")
    bob = await joined("rd", "bob")
    await alice.recv_kind("presence_event")
    answers = []
    for _ in range(3):
        await bob.send(chat("once", message_id="m-1"))
        answers.append(await bob.recv_kind("ack"))
    assert [a.ack.message_id for a in answers] == ["m-1"] * 3
    await bob.send(chat("next", message_id="m-2"))
    await bob.recv_kind("ack")

    heard = [await alice.recv_kind("chat_message") for _ in range(2)]
    assert [m.chat_message.message for m in heard] == ["once", "next"]
    await alice.close()
    await bob.close()


async def test_a_repeated_message_id_gets_the_same_error_whatever_its_content() -> None:
    alice = await joined("rd", "alice")
    update = pb.Message(
        message_id="u-1", entity_update=pb.EntityUpdate(entity_id="nope", components={})
    )
    await alice.send(update)
    refused = await alice.recv_kind("error")
    spawn = pb.Message(message_id="u-1", entity_spawn=pb.EntitySpawn(entity_id="box"))
    await alice.send(spawn)  # same id, other content: the same answer, not applied
    again = await alice.recv_kind("error")
    assert again.error == refused.error
    assert again.error.ref_message_id == "u-1"

    bob = await joined("rd", "bob")
    assert list(bob.hello.initial_state.entities) == []
    await alice.close()
    await bob.close()
