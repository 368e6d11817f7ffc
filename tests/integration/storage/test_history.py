"""Connection history written in batches behind the hot path."""

from __future__ import annotations

import asyncio

import pytest
from channels.db import database_sync_to_async
from django.utils import timezone

from presence.models import ConnectionSession
from presence.storage.history import HistoryWriter, get_history
from presence.transport.lifespan import lifespan_app

pytestmark = pytest.mark.django_db(transaction=True)


def open_record(client_id: str, occupancy: int = 1) -> dict[str, object]:
    return {
        "connected_at": timezone.now(),
        "room_id": "lobby",
        "external_user_id": client_id,
        "django_user_id": None,
        "assigned_client_id": client_id,
        "client_label": "",
        "display_name": client_id,
        "ip_address": "127.0.0.1",
        "user_agent": "test",
        "occupancy": occupancy,
    }


def close_record(client_id: str) -> dict[str, object]:
    return {
        "assigned_client_id": client_id,
        "close_code": 1000,
        "messages_in": 1,
        "messages_out": 2,
        "bytes_in": 3,
        "bytes_out": 4,
    }


async def rows() -> list[tuple[str, int | None]]:
    query = ConnectionSession.objects.order_by("pk").values_list("assigned_client_id", "close_code")
    return await database_sync_to_async(lambda: list(query))()


async def test_queued_opens_are_not_written_until_the_batch_goes_out() -> None:
    writer = HistoryWriter(flush_seconds=3600)
    for name in ("a", "b", "c"):
        writer.opened(**open_record(name))

    assert await rows() == []
    await writer.flush()
    assert await rows() == [("a", None), ("b", None), ("c", None)]


async def test_the_batch_goes_out_by_itself_after_the_window() -> None:
    writer = HistoryWriter(flush_seconds=0.01)
    writer.opened(**open_record("a"))
    assert writer._task is not None

    await asyncio.wait_for(writer._task, 5)

    assert await rows() == [("a", None)]
    assert len(writer) == 0


async def test_an_open_and_its_close_in_one_batch_leave_a_closed_row() -> None:
    writer = HistoryWriter(flush_seconds=3600)
    writer.opened(**open_record("a"))
    writer.closed(**close_record("a"))

    await writer.flush()

    assert await rows() == [("a", 1000)]


async def test_lifespan_shutdown_writes_what_is_still_queued() -> None:
    get_history().opened(**open_record("late"))
    events: asyncio.Queue[dict[str, str]] = asyncio.Queue()
    sent: list[str] = []

    async def send(event: dict[str, str]) -> None:
        sent.append(event["type"])

    for kind in ("lifespan.startup", "lifespan.shutdown"):
        events.put_nowait({"type": kind})
    await asyncio.wait_for(lifespan_app({"type": "lifespan"}, events.get, send), 5)

    assert sent == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
    assert await rows() == [("late", None)]


async def test_one_bad_record_does_not_cost_the_rest_of_its_batch() -> None:
    writer = HistoryWriter(flush_seconds=3600)
    writer.opened(**open_record("good-1"))
    writer.opened(**{**open_record("bad"), "connected_at": "not a time"})
    writer.opened(**open_record("good-2"))

    await writer.flush()

    assert [name for name, _ in await rows()] == ["good-1", "good-2"]
    assert writer.dropped == 1


async def test_a_peer_without_an_ip_address_is_recorded_without_one() -> None:
    writer = HistoryWriter(flush_seconds=3600)
    writer.opened(**{**open_record("a"), "ip_address": "unknown"})

    await writer.flush()

    assert await rows() == [("a", None)]
