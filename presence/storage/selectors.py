"""Database reads of presence."""

from __future__ import annotations

from django.db.models import QuerySet
from django.utils import timezone

from presence.models import ConnectionSession, Room, RoomBan
from presence.storage.db import retried_once


@retried_once
def room_get(*, room_id: str) -> Room | None:
    """The room with this id, or None if it was never used."""
    return Room.objects.filter(pk=room_id).first()


def room_present_sessions(*, room_id: str) -> QuerySet[ConnectionSession]:
    """The open sessions of a room, oldest first."""
    return (
        ConnectionSession.objects.filter(room_id=room_id, disconnected_at__isnull=True)
        .select_related("user")
        .order_by("connected_at", "pk")
    )


@retried_once
def room_banned_user_ids(*, room_id: str) -> frozenset[str]:
    """The user ids banned from the room right now."""
    bans = RoomBan.objects.filter(room_id=room_id, until__gt=timezone.now())
    return frozenset(bans.values_list("user_id", flat=True))
