"""The room-access cache: rooms without rules cost no database read of their own."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from channels.db import database_sync_to_async
from django.utils import timezone

from presence.models import Room, RoomBan
from presence.transport import room_access
from presence.transport.room_access import NO_RULES, RoomAccessCache

pytestmark = pytest.mark.django_db(transaction=True)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def room_reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The rooms read one by one (the per-room query), in order."""
    reads: list[str] = []
    read = room_access._read

    def counted(room_id: str) -> Any:
        reads.append(room_id)
        return read(room_id)

    monkeypatch.setattr(room_access, "_read", counted)
    return reads


async def test_rooms_without_rules_need_no_read_of_their_own(room_reads: list[str]) -> None:
    await database_sync_to_async(Room.objects.create)(pk="vault", locked=True)
    cache = RoomAccessCache()

    for n in range(20):
        assert await cache.get(f"open-{n}") is NO_RULES
    assert (await cache.get("vault")).locked

    assert room_reads == ["vault"]


async def test_a_ban_in_force_makes_a_room_ruled(room_reads: list[str]) -> None:
    await database_sync_to_async(Room.objects.create)(pk="lounge")
    await database_sync_to_async(RoomBan.objects.create)(
        room_id="lounge", user_id="mallory", until=timezone.now() + timedelta(hours=1)
    )

    access = await RoomAccessCache().get("lounge")

    assert access.banned == frozenset({"mallory"})
    assert room_reads == ["lounge"]


async def test_a_room_locked_in_this_process_is_refused_at_the_next_connect() -> None:
    cache = RoomAccessCache()
    assert await cache.get("vault") is NO_RULES

    await database_sync_to_async(Room.objects.create)(pk="vault", locked=True)

    assert (await cache.get("vault")).locked


async def test_a_change_made_elsewhere_is_seen_within_the_ttl() -> None:
    await database_sync_to_async(Room.objects.create)(pk="vault")
    clock = Clock()
    cache = RoomAccessCache(clock=clock)
    assert await cache.get("vault") is NO_RULES

    # update() sends no signal: as if another process had saved it.
    await database_sync_to_async(Room.objects.filter(pk="vault").update)(locked=True)
    assert await cache.get("vault") is NO_RULES  # still fresh
    clock.now += room_access.ROOM_ACCESS_TTL_SECONDS

    assert (await cache.get("vault")).locked


async def test_forget_reads_the_rules_again() -> None:
    await database_sync_to_async(Room.objects.create)(pk="vault")
    cache = RoomAccessCache(clock=Clock())
    assert await cache.get("vault") is NO_RULES
    await database_sync_to_async(Room.objects.filter(pk="vault").update)(max_occupancy=3)

    cache.forget("vault")

    assert (await cache.get("vault")).max_occupancy == 3


async def test_too_many_ruled_rooms_fall_back_to_a_read_per_room(
    room_reads: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(room_access, "MAX_CACHED_ROOMS", 2)
    for name in ("a", "b", "c"):
        await database_sync_to_async(Room.objects.create)(pk=name, locked=True)

    assert await RoomAccessCache().get("open") == NO_RULES

    assert room_reads == ["open"]
