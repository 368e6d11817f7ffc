"""May one more member enter a room? Locked and full rooms refuse (4423), bans 4403.

The room's ``locked`` flag and ``max_occupancy`` live in the database (staff
set them in the admin). They are read through a short per-process cache, so a
connect costs no database round trip while the value is fresh: a change in
the admin takes effect for new connections within ``ROOM_ACCESS_TTL_SECONDS``.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from channels.db import database_sync_to_async

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


def _read(room_id: str) -> RoomAccess:
    room = selectors.room_get(room_id=room_id)
    if room is None:
        return RoomAccess()
    return RoomAccess(
        locked=room.locked,
        max_occupancy=room.max_occupancy,
        banned=selectors.room_banned_user_ids(room_id=room_id),
    )


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

    async def get(self, room_id: str) -> RoomAccess:
        """The room's access rules, from the cache while fresh."""
        now = self.clock()
        cached = self._entries.get(room_id)
        if cached is not None and now - cached[0] < self.ttl:
            return cached[1]
        access = await database_sync_to_async(_read)(room_id)
        self._entries[room_id] = (self.clock(), access)
        self._entries.move_to_end(room_id)
        while len(self._entries) > self.max_rooms:
            self._entries.popitem(last=False)
        return access

    def forget(self, room_id: str) -> None:
        """Drop a room's cached rules (after a lock or ban, on every instance)."""
        self._entries.pop(room_id, None)


get_room_access = per_event_loop(RoomAccessCache)
