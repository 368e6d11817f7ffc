"""Which characters each text field accepts, end to end through the database.

Runs on SQLite and again on PostgreSQL (the PostgreSQL pass of ``make test``),
which refuses NUL in text columns: a character the database cannot store
must be refused at the door with a clear ``BAD_MESSAGE``, never turn into
an internal error (4011) that loses the line.
"""

from __future__ import annotations

from typing import Any

import pytest
from channels.db import database_sync_to_async
from django.conf import settings as django_settings

from presence.models import ChatMessage, ConnectionSession
from presence.protocol import pb
from presence.protocol.codes import CloseCode, ErrorCode
from presence.storage import services
from tests.clients.communicator import ProtocolClient, pose

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _dev_auth(settings: Any) -> None:
    settings.PRESENCE = {**django_settings.PRESENCE, "DEV_AUTH": True, "REDIS_URL": ""}


async def _joined(user: str, query: str = "") -> ProtocolClient:
    client = ProtocolClient(f"/ws/texts?user_id={user}{query}")
    await client.join()
    return client


def _stored_texts() -> list[str]:
    return list(ChatMessage.objects.order_by("pk").values_list("text", flat=True))


async def test_nul_in_chat_is_refused_and_the_connection_goes_on() -> None:
    alice, bob = await _joined("alice"), await _joined("bob")
    await alice.recv_kind("presence_event")
    await alice.send(pb.Message(message_id="m-nul", chat_message=pb.ChatMessage(message="a\x00b")))
    error = (await alice.recv_kind("error")).error
    assert (error.code, error.ref_message_id) == (ErrorCode.BAD_MESSAGE, "m-nul")
    assert "U+0000" in error.message
    await alice.send(pb.Message(message_id="m-ok", chat_message=pb.ChatMessage(message="fine")))
    assert (await alice.recv_kind("ack")).ack.message_id == "m-ok"
    assert (await bob.recv_kind("chat_message")).chat_message.message == "fine"
    assert await database_sync_to_async(_stored_texts)() == ["fine"]
    await alice.close()
    await bob.close()


@pytest.mark.parametrize("text", ["two\nlines\r\n", "tab\there", "RTL \u200fmark 👩\u200d💻"])
async def test_chat_with_allowed_whitespace_and_format_characters_is_stored_as_sent(
    text: str,
) -> None:
    alice, bob = await _joined("alice"), await _joined("bob")
    await alice.recv_kind("presence_event")
    await alice.send(pb.Message(message_id="m", chat_message=pb.ChatMessage(message=text)))
    assert (await alice.recv_kind("ack")).ack.message_id == "m"
    assert (await bob.recv_kind("chat_message")).chat_message.message == text
    assert await database_sync_to_async(_stored_texts)() == [text]
    await alice.close()
    await bob.close()


@pytest.mark.parametrize(
    ("query", "field"),
    [("&client_id=quest%00three", "client_id"), ("&display_name=Ada%00", "display_name")],
    ids=["client_id label", "display_name"],
)
async def test_nul_in_a_query_name_is_refused_4400_and_nothing_is_recorded(
    query: str, field: str
) -> None:
    control = await _joined("control")
    client = ProtocolClient(f"/ws/texts?user_id=mallory{query}")
    accepted, _ = await client.open()
    assert accepted
    error = (await client.recv_kind("error")).error
    assert error.code == ErrorCode.BAD_MESSAGE and error.message.startswith(field)
    assert await client.expect_close() == CloseCode.BAD_REQUEST
    await control.send(pose(1.0))  # the room goes on
    await control.send(pb.Message(ping=pb.Ping(client_time_ms=7)))
    assert (await control.recv_kind("pong")).pong.client_time_ms == 7
    users = await database_sync_to_async(
        lambda: list(ConnectionSession.objects.values_list("external_user_id", flat=True))
    )()
    assert "mallory" not in users
    await control.close()


def test_a_user_agent_with_nul_is_recorded_without_it() -> None:
    pk = services.connection_session_open(
        room_id="texts",
        external_user_id="u",
        django_user_id=None,
        assigned_client_id="c1",
        client_label="",
        display_name="U",
        ip_address=None,
        user_agent="bot/1.0\x00evil",
        occupancy=1,
    )
    assert ConnectionSession.objects.get(pk=pk).user_agent == "bot/1.0\ufffdevil"
