"""Database reads of presence."""

from __future__ import annotations

from django.db.models import Q, QuerySet
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
def room_ids_with_rules(*, limit: int) -> frozenset[str] | None:
    """Ids of the rooms locked, with a maximum or with a ban in force; None past ``limit``."""
    ruled = Room.objects.filter(Q(locked=True) | Q(max_occupancy__isnull=False))
    banned = RoomBan.objects.filter(until__gt=timezone.now())
    ids = set(ruled.values_list("pk", flat=True)[: limit + 1])
    ids.update(banned.values_list("room_id", flat=True).distinct()[: limit + 1])
    return None if len(ids) > limit else frozenset(ids)


@retried_once
def room_banned_user_ids(*, room_id: str) -> frozenset[str]:
    """The user ids banned from the room right now."""
    bans = RoomBan.objects.filter(room_id=room_id, until__gt=timezone.now())
    return frozenset(bans.values_list("user_id", flat=True))
