"""Services and selectors of presence against the real database."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.db import connection

from presence.models import ChatMessage, ConnectionSession, Room
from presence.storage import selectors, services

pytestmark = pytest.mark.django_db


def open_session(**overrides: Any) -> int:
    """Open a session with plausible defaults; keyword arguments replace them."""
    values: dict[str, Any] = {
        "room_id": "lobby",
        "external_user_id": "user-1",
        "django_user_id": None,
        "assigned_client_id": "c-1",
        "client_label": "headset",
        "display_name": "Alice",
        "ip_address": "203.0.113.5",
        "user_agent": "Quest/1.0",
        "occupancy": 1,
    }
    values.update(overrides)
    return services.connection_session_open(**values)


def close_session(session_pk: int, **overrides: Any) -> None:
    """Close a session with plausible defaults; keyword arguments replace them."""
    values: dict[str, Any] = {
        "session_pk": session_pk,
        "close_code": 1000,
        "close_reason": "",
        "messages_in": 3,
        "messages_out": 4,
        "bytes_in": 300,
        "bytes_out": 400,
    }
    values.update(overrides)
    services.connection_session_close(**values)


def test_open_creates_room_and_session() -> None:
    pk = open_session(room_id="new.room_1-a", occupancy=1)

    room = Room.objects.get(pk="new.room_1-a")
    session = ConnectionSession.objects.get(pk=pk)
    assert room.peak_occupancy == 1
    assert room.last_active_at is not None
    assert session.room_id == "new.room_1-a"
    assert session.external_user_id == "user-1"
    assert session.assigned_client_id == "c-1"
    assert session.client_label == "headset"
    assert session.display_name == "Alice"
    assert session.ip_address == "203.0.113.5"
    assert session.is_open


def test_open_reuses_existing_room() -> None:
    open_session(room_id="lobby")
    open_session(room_id="lobby", assigned_client_id="c-2", occupancy=2)

    assert Room.objects.count() == 1
    assert Room.objects.get().sessions.count() == 2


def test_peak_occupancy_rises_with_occupancy() -> None:
    open_session(occupancy=1)
    open_session(occupancy=3)

    assert Room.objects.get(pk="lobby").peak_occupancy == 3


def test_peak_occupancy_never_decreases() -> None:
    open_session(occupancy=5)
    open_session(occupancy=2)

    assert Room.objects.get(pk="lobby").peak_occupancy == 5


@pytest.mark.django_db(transaction=True)
@pytest.mark.postgres  # SQLite serialises writers; runs in the PostgreSQL pass of `make test`
def test_concurrent_opens_keep_the_highest_peak() -> None:
    Room.objects.create(pk="busy")
    barrier = threading.Barrier(8)

    def connect(occupancy: int) -> None:
        try:
            barrier.wait(timeout=10)
            open_session(room_id="busy", assigned_client_id=f"c-{occupancy}", occupancy=occupancy)
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(connect, range(1, 9)))

    assert Room.objects.get(pk="busy").peak_occupancy == 8
    assert ConnectionSession.objects.filter(room_id="busy").count() == 8


def test_open_links_existing_django_user() -> None:
    user = get_user_model().objects.create_user(username="alice", password="x")

    pk = open_session(django_user_id=user.pk)

    assert ConnectionSession.objects.get(pk=pk).user == user


def test_unknown_django_user_id_becomes_none() -> None:
    pk = open_session(django_user_id=987654)

    assert ConnectionSession.objects.get(pk=pk).user is None


def test_long_user_agent_is_truncated() -> None:
    pk = open_session(user_agent="A" * 1000)

    assert ConnectionSession.objects.get(pk=pk).user_agent == "A" * 256


def test_long_display_name_is_truncated() -> None:
    pk = open_session(display_name="B" * 200)

    assert ConnectionSession.objects.get(pk=pk).display_name == "B" * 64


def test_empty_ip_address_is_stored_as_null() -> None:
    pk = open_session(ip_address="")

    assert ConnectionSession.objects.get(pk=pk).ip_address is None


def test_close_records_code_reason_and_counters() -> None:
    pk = open_session()

    close_session(
        pk,
        close_code=4001,
        close_reason="lost",
        messages_in=10,
        messages_out=20,
        bytes_in=1000,
        bytes_out=2_000_000_000_000,
    )

    session = ConnectionSession.objects.get(pk=pk)
    assert not session.is_open
    assert session.disconnected_at is not None
    assert session.disconnected_at >= session.connected_at
    assert (session.close_code, session.close_reason) == (4001, "lost")
    assert (session.messages_in, session.messages_out) == (10, 20)
    assert (session.bytes_in, session.bytes_out) == (1000, 2_000_000_000_000)


def test_second_close_does_not_overwrite_the_first() -> None:
    pk = open_session()
    close_session(pk, close_code=1000, close_reason="", messages_in=1)
    first = ConnectionSession.objects.get(pk=pk)

    close_session(pk, close_code=1006, close_reason="lost", messages_in=99)

    second = ConnectionSession.objects.get(pk=pk)
    assert second.disconnected_at == first.disconnected_at
    assert (second.close_code, second.close_reason, second.messages_in) == (1000, "", 1)


def test_close_touches_room_last_active_at() -> None:
    pk = open_session()
    opened_at = Room.objects.get(pk="lobby").last_active_at

    close_session(pk)

    room = Room.objects.get(pk="lobby")
    assert room.last_active_at is not None and opened_at is not None
    assert room.last_active_at >= opened_at
    assert room.last_active_at == ConnectionSession.objects.get(pk=pk).disconnected_at


def test_close_of_unknown_session_does_nothing() -> None:
    close_session(123456)

    assert not ConnectionSession.objects.exists()


def test_chat_message_is_stored() -> None:
    session_pk = open_session()

    pk = services.chat_message_store(
        room_id="lobby",
        session_pk=session_pk,
        sender_client_id="c-1",
        sender_name="Alice",
        text="hello room",
    )

    message = ChatMessage.objects.get(pk=pk)
    assert message.room_id == "lobby"
    assert message.session_id == session_pk
    assert (message.sender_client_id, message.sender_name, message.text) == (
        "c-1",
        "Alice",
        "hello room",
    )
    assert message.sent_at is not None


def test_chat_message_of_deleted_session_is_kept_without_session() -> None:
    session_pk = open_session()
    ConnectionSession.objects.filter(pk=session_pk).delete()

    pk = services.chat_message_store(
        room_id="lobby", session_pk=session_pk, sender_client_id="c-1", sender_name="", text="hi"
    )

    assert ChatMessage.objects.get(pk=pk).session is None


def test_present_sessions_are_open_ones_oldest_first() -> None:
    first = open_session(assigned_client_id="c-1")
    gone = open_session(assigned_client_id="c-2")
    third = open_session(assigned_client_id="c-3")
    open_session(room_id="elsewhere", assigned_client_id="c-4")
    close_session(gone)

    present = list(selectors.room_present_sessions(room_id="lobby"))

    assert [session.pk for session in present] == [first, third]


def test_room_get_returns_room_or_none() -> None:
    open_session(room_id="lobby")

    room = selectors.room_get(room_id="lobby")

    assert room is not None and room.pk == "lobby"
    assert selectors.room_get(room_id="missing") is None
