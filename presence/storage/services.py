"""Database writes of presence; called on connect, disconnect and chat only."""

from __future__ import annotations

import ipaddress
from datetime import timedelta
from typing import Any

from django.contrib.auth import get_user_model
from django.db import models, transaction
from django.db.models import F
from django.db.models.functions import Greatest
from django.utils import timezone

from presence.models import ChatMessage, ConnectionSession, ModerationAction, Room, RoomBan
from presence.storage.db import retried_once


def _fit(value: str, field: str, model: type[models.Model]) -> str:
    # Client-supplied strings are cut to the column width and lose any NUL:
    # PostgreSQL would reject them, and losing the session record is worse
    # than losing a string's tail. (Message fields with NUL are refused at the
    # door, presence.protocol.validation; this covers headers such as User-Agent.)
    column = model._meta.get_field(field)
    assert isinstance(column, models.Field)  # a column, not the reverse side of a relation
    max_length = column.max_length
    value = value.replace("\x00", "\ufffd")
    return value[:max_length] if max_length is not None else value


def _ip_or_none(value: str | None) -> str | None:
    # The peer address is whatever the server reports ("unknown" without one).
    try:
        return str(ipaddress.ip_address(value)) if value else None
    except ValueError:
        return None


@retried_once
def connection_sessions_open(*, sessions: list[dict[str, Any]]) -> list[int]:
    """Record new connections in one transaction, creating their rooms if needed.

    Each item has the keyword arguments of :func:`connection_session_open`
    plus ``connected_at``; a room's peak occupancy only ever rises. Returns
    the new rows' pks, in order.
    """
    if not sessions:
        return []
    user_ids = {s["django_user_id"] for s in sessions if s["django_user_id"] is not None}
    known_users = set(get_user_model().objects.filter(pk__in=user_ids).values_list("pk", flat=True))
    peaks: dict[str, tuple[int, Any]] = {}
    for record in sessions:
        peak, last = peaks.get(record["room_id"], (0, record["connected_at"]))
        peaks[record["room_id"]] = (
            max(peak, record["occupancy"]),
            max(last, record["connected_at"]),
        )
    with transaction.atomic():
        for room_id, (peak, last_active) in peaks.items():
            Room.objects.get_or_create(pk=room_id)
            # One UPDATE with GREATEST: concurrent connects cannot lose a higher peak.
            Room.objects.filter(pk=room_id).update(
                last_active_at=last_active,
                peak_occupancy=Greatest(F("peak_occupancy"), max(peak, 0)),
            )
        created = ConnectionSession.objects.bulk_create(
            [
                ConnectionSession(
                    room_id=r["room_id"],
                    user_id=r["django_user_id"] if r["django_user_id"] in known_users else None,
                    external_user_id=_fit(
                        r["external_user_id"], "external_user_id", ConnectionSession
                    ),
                    assigned_client_id=r["assigned_client_id"],
                    client_label=_fit(r["client_label"], "client_label", ConnectionSession),
                    display_name=_fit(r["display_name"], "display_name", ConnectionSession),
                    ip_address=_ip_or_none(r["ip_address"]),
                    user_agent=_fit(r["user_agent"], "user_agent", ConnectionSession),
                    connected_at=r["connected_at"],
                )
                for r in sessions
            ]
        )
    return [row.pk for row in created]


def connection_session_open(
    *,
    room_id: str,
    external_user_id: str,
    django_user_id: int | None,
    assigned_client_id: str,
    client_label: str,
    display_name: str,
    ip_address: str | None,
    user_agent: str,
    occupancy: int,
) -> int:
    """Record a new connection to a room, creating the room if needed; return the session pk."""
    record = {
        "room_id": room_id,
        "external_user_id": external_user_id,
        "django_user_id": django_user_id,
        "assigned_client_id": assigned_client_id,
        "client_label": client_label,
        "display_name": display_name,
        "ip_address": ip_address,
        "user_agent": user_agent,
        "occupancy": occupancy,
        "connected_at": timezone.now(),
    }
    [pk] = connection_sessions_open(sessions=[record])
    return pk


@retried_once
def connection_session_close(
    *,
    session_pk: int | None = None,
    assigned_client_id: str = "",
    close_code: int,
    close_reason: str = "",
    messages_in: int,
    messages_out: int,
    bytes_in: int,
    bytes_out: int,
) -> None:
    """Record the end of a connection (by pk or assigned client id).

    A session already closed keeps its first close.
    """
    now = timezone.now()
    which = (
        {"pk": session_pk} if session_pk is not None else {"assigned_client_id": assigned_client_id}
    )
    with transaction.atomic():
        closed = ConnectionSession.objects.filter(**which, disconnected_at__isnull=True).update(
            disconnected_at=now,
            close_code=close_code,
            close_reason=_fit(close_reason, "close_reason", ConnectionSession),
            messages_in=messages_in,
            messages_out=messages_out,
            bytes_in=bytes_in,
            bytes_out=bytes_out,
        )
        if closed:
            Room.objects.filter(**{f"sessions__{k}": v for k, v in which.items()}).update(
                last_active_at=now
            )


LOST_CLOSE_CODE = 1006  # abnormal closure: the instance died, no close frame was sent
LOST_REASON = "lost"


@retried_once
def connection_sessions_lost(*, assigned_client_ids: list[str]) -> int:
    """Close the open sessions of connections whose instance died; how many were open."""
    if not assigned_client_ids:
        return 0
    return ConnectionSession.objects.filter(
        assigned_client_id__in=assigned_client_ids, disconnected_at__isnull=True
    ).update(disconnected_at=timezone.now(), close_code=LOST_CLOSE_CODE, close_reason=LOST_REASON)


@retried_once
def chat_message_store(
    *,
    room_id: str,
    session_pk: int | None = None,
    sender_client_id: str,
    sender_name: str,
    text: str,
) -> int:
    """Store one chat line of a room; return its pk.

    Without ``session_pk`` the line is linked to the sender's session by its
    assigned client id, when that session is recorded.
    """
    with transaction.atomic():
        # An admin may have deleted the room or the session while the client was
        # connected; the line is still kept rather than failing on a foreign key.
        Room.objects.get_or_create(pk=room_id)
        sessions = ConnectionSession.objects.filter(
            **(
                {"pk": session_pk}
                if session_pk is not None
                else {"assigned_client_id": sender_client_id}
            )
        )
        session_pk = sessions.values_list("pk", flat=True).first()
        message = ChatMessage.objects.create(
            room_id=room_id,
            session_id=session_pk,
            sender_client_id=_fit(sender_client_id, "sender_client_id", ChatMessage),
            sender_name=_fit(sender_name, "sender_name", ChatMessage),
            text=text,
        )
    return message.pk


@retried_once
def moderation_record(
    *,
    room_id: str,
    action: str,
    actor_user_id: int | None = None,
    actor_client_id: str = "",
    target_client_id: str = "",
    target_user_id: str = "",
    reason: str = "",
    ban_seconds: int = 0,
) -> ModerationAction:
    """Record a moderation order; apply what lives in the database (lock, ban)."""
    now = timezone.now()
    with transaction.atomic():
        room, _ = Room.objects.get_or_create(pk=room_id)
        if action in (ModerationAction.Action.LOCK, ModerationAction.Action.UNLOCK):
            room.locked = action == ModerationAction.Action.LOCK
            room.save(update_fields=["locked"])
        banned_until = None
        if action == ModerationAction.Action.KICK and ban_seconds > 0 and target_user_id:
            banned_until = now + timedelta(seconds=ban_seconds)
            RoomBan.objects.create(
                room=room,
                user_id=_fit(target_user_id, "user_id", RoomBan),
                until=banned_until,
                reason=_fit(reason, "reason", RoomBan),
            )
        return ModerationAction.objects.create(
            room=room,
            action=action,
            actor_id=actor_user_id,
            actor_client_id=_fit(actor_client_id, "actor_client_id", ModerationAction),
            target_client_id=_fit(target_client_id, "target_client_id", ModerationAction),
            target_user_id=_fit(target_user_id, "target_user_id", ModerationAction),
            reason=_fit(reason, "reason", ModerationAction),
            banned_until=banned_until,
            created_at=now,
        )
