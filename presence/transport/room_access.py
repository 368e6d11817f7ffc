"""May one more member enter a room? Locked and full rooms refuse (4423), bans 4403.

The room's ``locked`` flag and ``max_occupancy`` live in the database (staff
set them in the admin). They are read through a short per-process cache, so a
connect costs no database round trip while the value is fresh: a change in
the admin takes effect for new connections within ``ROOM_ACCESS_TTL_SECONDS``.

Most rooms have no rules at all. Instead of one round trip per new room, the
cache reads the ids of the rooms that have any (locked, a maximum, a ban in
force) in one query, at most once per TTL; a room not among them needs no
round trip of its own.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from channels.db import database_sync_to_async
from django.db.models.signals import post_delete, post_save

from presence.models import Room, RoomBan
from presence.per_loop import per_event_loop
from presence.protocol.codes import CloseCode, ErrorCode
from presence.storage import selectors

ROOM_ACCESS_TTL_SECONDS = 2.0
MAX_CACHED_ROOMS = 10_000  # room ids come from clients: the cache is bounded


@dataclass(frozen=True, slots=True)
class RoomAccess:
    """What the admin says about a room."""

    locked: bool = False
    max_occupancy: int | None = None
    banned: frozenset[str] = frozenset()  # user ids kept out for now

    def refusal(self, occupancy: int, user_id: str = "") -> tuple[ErrorCode, CloseCode, str] | None:
        """Why one more member (``user_id``) cannot enter, with ``occupancy`` present."""
        if user_id and user_id in self.banned:
            return ErrorCode.FORBIDDEN, CloseCode.FORBIDDEN, "you are banned from this room"
        if self.locked:
            return ErrorCode.ROOM_LOCKED, CloseCode.ROOM_UNAVAILABLE, "the room is locked"
        if self.max_occupancy is not None and occupancy >= self.max_occupancy:
            return ErrorCode.ROOM_FULL, CloseCode.ROOM_UNAVAILABLE, "the room is full"
        return None


NO_RULES = RoomAccess()
# Bumped by every save or delete of a room or a ban in this process: the set
# of ruled rooms is read again before the next connect (other processes see
# the change within the TTL).
_rules_changes = 0


def _rules_changed(**_: object) -> None:
    global _rules_changes
    _rules_changes += 1


for _model in (Room, RoomBan):
    for _signal in (post_save, post_delete):
        _signal.connect(
            _rules_changed, sender=_model, dispatch_uid=f"presence.room_access.{_model.__name__}"
        )


def _read(room_id: str) -> RoomAccess:
    room = selectors.room_get(room_id=room_id)
    if room is None:
        return RoomAccess()
    return RoomAccess(
        locked=room.locked,
        max_occupancy=room.max_occupancy,
        banned=selectors.room_banned_user_ids(room_id=room_id),
    )


def _ruled_rooms() -> frozenset[str] | None:
    """Ids of the rooms with any rule; None when there are too many to keep."""
    return selectors.room_ids_with_rules(limit=MAX_CACHED_ROOMS)


class RoomAccessCache:
    """A bounded, short-lived cache of :class:`RoomAccess` by room id."""

    def __init__(
        self,
        *,
        ttl: float = ROOM_ACCESS_TTL_SECONDS,
        clock: Callable[[], float] = time.monotonic,
        max_rooms: int = MAX_CACHED_ROOMS,
    ) -> None:
        self.ttl = ttl
        self.clock = clock
        self.max_rooms = max_rooms
        self._entries: OrderedDict[str, tuple[float, RoomAccess]] = OrderedDict()
        # Rooms with any rule, and when that was read (None: too many, or unread).
        self._ruled: frozenset[str] | None = None
        self._ruled_at = -math.inf
        self._ruled_reading: asyncio.Future[None] | None = None
        self._forgets = 0  # a read begun before a forget() is not fresh
        self._ruled_changes = -1  # _rules_changes when the set was read

    async def _fresh_ruled(self) -> frozenset[str] | None:
        stale = self._ruled_changes != _rules_changes
        if stale or self.clock() - self._ruled_at >= self.ttl:
            if self._ruled_reading is None:  # one read for every connect waiting on it
                self._ruled_reading = asyncio.ensure_future(self._read_ruled())
            reading = self._ruled_reading
            await asyncio.shield(reading)
        return self._ruled

    async def _read_ruled(self) -> None:
        started, forgets, changes = self.clock(), self._forgets, _rules_changes
        try:
            self._ruled = await database_sync_to_async(_ruled_rooms)()
            if forgets == self._forgets:
                self._ruled_at = started
                self._ruled_changes = changes
        finally:
            self._ruled_reading = None

    async def get(self, room_id: str) -> RoomAccess:
        """The room's access rules, from the cache while fresh."""
        now = self.clock()
        cached = self._entries.get(room_id)
        if cached is not None and now - cached[0] < self.ttl:
            return cached[1]
        ruled = await self._fresh_ruled()
        if ruled is not None and room_id not in ruled:
            return NO_RULES
        access = await database_sync_to_async(_read)(room_id)
        self._entries[room_id] = (self.clock(), access)
        self._entries.move_to_end(room_id)
        while len(self._entries) > self.max_rooms:
            self._entries.popitem(last=False)
        return access

    def forget(self, room_id: str) -> None:
        """Drop a room's cached rules (after a lock or ban, on every instance)."""
        self._entries.pop(room_id, None)
        self._ruled_at = -math.inf
        self._forgets += 1


get_room_access = per_event_loop(RoomAccessCache)
