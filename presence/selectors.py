"""Database reads of presence."""

from __future__ import annotations

from django.db.models import QuerySet

from presence.models import ConnectionSession, Room


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
