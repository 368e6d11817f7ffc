"""Issue 11's metrics move as it happens, on ``/metrics`` and in ``/metrics/report``."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.test import AsyncClient

from presence.protocol import pb
from presence.protocol.codes import CloseCode
from tests.clients.communicator import ProtocolClient
from tests.integration.web.test_metrics import moved, scrape

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("quick")]


@pytest.fixture
def quick(settings: Any) -> None:
    settings.PRESENCE = {
        **settings.PRESENCE,
        "MESSAGE_RETRY_INTERVAL": 0.1,
        "MESSAGE_MAX_RETRIES": 1,
        "PRESENCE_LEAVE_GRACE_SECONDS": 5.0,
    }


async def joined(room: str, user: str, **params: str | int) -> ProtocolClient:
    query = "&".join(f"{k}={v}" for k, v in {"user_id": user, **params}.items())
    client = ProtocolClient(f"/ws/{room}?{query}")
    await client.join()
    return client


def chat(text: str, message_id: str = "") -> pb.Message:
    return pb.Message(message_id=message_id, chat_message=pb.ChatMessage(message=text))


async def test_resends_and_a_4009_for_unacked_messages_are_counted() -> None:
    before = await scrape()
    bob = await joined("mr", "bob")
    await bob.send(pb.Message(client_hello=pb.ClientHello(capabilities=["ack"])))
    alice = await joined("mr", "alice")
    await bob.recv_kind("presence_event")
    await alice.send(chat("unacked"))
    assert await bob.expect_close() == CloseCode.SLOW_CONSUMER
    after = await scrape()
    assert moved(before, after, "presence_reliable_resends_total") >= 1
    assert moved(before, after, "presence_slow_consumer_closes_total", cause="unacked") == 1
    await alice.close()


async def test_duplicates_resumes_and_replays_are_counted_and_reported() -> None:
    before = await scrape()
    alice = await joined("mr", "alice")
    bob = await joined("mr", "bob")
    join = await alice.recv_kind("presence_event")
    await bob.send(chat("once", message_id="m-1"))
    await bob.recv_kind("ack")
    await bob.send(chat("once", message_id="m-1"))
    await bob.recv_kind("ack")
    await alice.recv_kind("chat_message")
    await alice.communicator.disconnect(code=1006)
    await bob.send(chat("while away"))
    back = await joined("mr", "alice", session_id=alice.hello.session_id, last_seq=join.seq)
    assert back.hello.resumed
    await back.recv_kind("chat_message")
    lost = await joined("mr", "carol", session_id="f" * 32, last_seq=0)
    assert not lost.hello.resumed

    after = await scrape()
    assert moved(before, after, "presence_duplicate_messages_total") == 1
    assert moved(before, after, "presence_resumes_total", outcome="resumed") == 1
    assert moved(before, after, "presence_resumes_total", outcome="resync") == 1
    assert moved(before, after, "presence_replayed_messages_total") == 2  # "once", "while away"
    report = (await AsyncClient().get("/metrics/report")).content.decode()
    section = re.search(
        r"^Reliable delivery\n  re-sent: \d+\n  replayed: (\d+)\n  duplicates dropped: (\d+)\n"
        r"  resumed: (\d+)\n  resync: (\d+)\n  slow consumer closes \(4009\): "
        r"overflow \d+, unacked \d+, outbox \d+$",
        report,
        re.MULTILINE,
    )
    assert section, report
    replayed, duplicates, resumed, resync = (int(v) for v in section.groups())
    assert replayed == after.value("presence_replayed_messages_total")
    assert duplicates == after.value("presence_duplicate_messages_total")
    assert (resumed, resync) == (
        after.value("presence_resumes_total", outcome="resumed"),
        after.value("presence_resumes_total", outcome="resync"),
    )
    for client in (back, bob, lost):
        await client.close()
