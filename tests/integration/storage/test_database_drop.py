"""A dropped database connection costs nothing a client sent (PostgreSQL pass).

The server's backend for the consumers' database thread is terminated with
``pg_terminate_backend``, as a PostgreSQL restart or an operator would; the
next chat line is still stored and acknowledged, and so are connection
history and moderation records.
"""

from __future__ import annotations

from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from django.conf import settings as django_settings
from django.db import connection

from presence.models import ChatMessage, ConnectionSession
from presence.protocol import pb
from presence.storage import services
from presence.storage.history import get_history
from tests.clients.communicator import ProtocolClient

pytestmark = [
    pytest.mark.django_db(transaction=True),
    # SQLite has no server to lose; runs in the PostgreSQL pass of `make test`.
    pytest.mark.postgres,
]


@pytest.fixture(autouse=True)
def _dev_auth(settings: Any) -> None:
    settings.PRESENCE = {**django_settings.PRESENCE, "DEV_AUTH": True, "REDIS_URL": ""}


def _backend_pid() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        (pid,) = cursor.fetchone()
    return int(pid)


def _terminate(pid: int) -> bool:
    """End backend ``pid`` from a connection of another thread."""
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_terminate_backend(%s)", [pid])
            (ended,) = cursor.fetchone()
        return bool(ended)
    finally:
        connection.close()


async def _terminate_the_consumers_backend() -> bool:
    """Terminate the backend of the thread the consumers' database calls run on."""
    pid = await database_sync_to_async(_backend_pid)()
    return await sync_to_async(_terminate, thread_sensitive=False)(pid)


async def test_chat_after_the_backend_was_terminated_is_stored_and_acked() -> None:
    alice, bob = ProtocolClient("/ws/db?user_id=alice"), ProtocolClient("/ws/db?user_id=bob")
    await alice.join()
    await bob.join()
    await alice.send(pb.Message(message_id="m1", chat_message=pb.ChatMessage(message="before")))
    assert (await alice.recv_kind("ack")).ack.message_id == "m1"
    assert await _terminate_the_consumers_backend()
    await alice.send(pb.Message(message_id="m2", chat_message=pb.ChatMessage(message="after")))
    assert (await alice.recv_kind("ack")).ack.message_id == "m2"
    assert (await bob.recv_kind("chat_message")).chat_message.message == "before"
    assert (await bob.recv_kind("chat_message")).chat_message.message == "after"
    texts = await database_sync_to_async(
        lambda: list(ChatMessage.objects.order_by("pk").values_list("text", flat=True))
    )()
    assert texts == ["before", "after"]
    await alice.close()
    await bob.close()


async def test_connection_history_is_written_after_the_backend_was_terminated() -> None:
    first = ProtocolClient("/ws/db?user_id=first")
    await first.join()
    await get_history().flush()
    assert await _terminate_the_consumers_backend()
    second = ProtocolClient("/ws/db?user_id=second")
    await second.join()
    await second.close()
    await first.close()
    await get_history().flush()
    rows = await database_sync_to_async(
        lambda: sorted(ConnectionSession.objects.values_list("external_user_id", "close_code"))
    )()
    assert rows == [("first", 1000), ("second", 1000)]


def test_a_service_write_is_retried_once_on_a_fresh_connection() -> None:
    services.chat_message_store(room_id="db", sender_client_id="c", sender_name="", text="one")
    # Break this thread's own connection under Django's feet: the next write
    # meets a dead socket, not a health-checked one.
    pid = _backend_pid()
    other = connection.copy()
    try:
        with other.cursor() as cursor:
            cursor.execute("SELECT pg_terminate_backend(%s)", [pid])
    finally:
        other.close()
    services.chat_message_store(room_id="db", sender_client_id="c", sender_name="", text="two")
    assert list(ChatMessage.objects.order_by("pk").values_list("text", flat=True)) == [
        "one",
        "two",
    ]
