"""Database writes of presence; called on connect, disconnect and chat only."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.db import transaction
from django.db.models import F
from django.db.models.functions import Greatest
from django.utils import timezone

from presence.models import ChatMessage, ConnectionSession, Room


def _fit(value: str, field: str, model: type[ConnectionSession] | type[ChatMessage]) -> str:
    # Client-supplied strings are cut to the column width: PostgreSQL would reject
    # them and losing the session record is worse than losing a string's tail.
    max_length = model._meta.get_field(field).max_length
    return value[:max_length] if max_length is not None else value


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
    now = timezone.now()
    user_model = get_user_model()
    if django_user_id is not None and not user_model.objects.filter(pk=django_user_id).exists():
        django_user_id = None
    with transaction.atomic():
        Room.objects.get_or_create(pk=room_id)
        # One UPDATE with GREATEST: concurrent connects cannot lose a higher peak.
        Room.objects.filter(pk=room_id).update(
            last_active_at=now,
            peak_occupancy=Greatest(F("peak_occupancy"), max(occupancy, 0)),
        )
        session = ConnectionSession.objects.create(
            room_id=room_id,
            user_id=django_user_id,
            external_user_id=_fit(external_user_id, "external_user_id", ConnectionSession),
            assigned_client_id=assigned_client_id,
            client_label=_fit(client_label, "client_label", ConnectionSession),
            display_name=_fit(display_name, "display_name", ConnectionSession),
            ip_address=ip_address or None,
            user_agent=_fit(user_agent, "user_agent", ConnectionSession),
            connected_at=now,
        )
    return session.pk


def connection_session_close(
    *,
    session_pk: int,
    close_code: int,
    close_reason: str = "",
    messages_in: int,
    messages_out: int,
    bytes_in: int,
    bytes_out: int,
) -> None:
    """Record the end of a connection; a session already closed keeps its first close."""
    now = timezone.now()
    with transaction.atomic():
        closed = ConnectionSession.objects.filter(
            pk=session_pk, disconnected_at__isnull=True
        ).update(
            disconnected_at=now,
            close_code=close_code,
            close_reason=_fit(close_reason, "close_reason", ConnectionSession),
            messages_in=messages_in,
            messages_out=messages_out,
            bytes_in=bytes_in,
            bytes_out=bytes_out,
        )
        if closed:
            Room.objects.filter(sessions__pk=session_pk).update(last_active_at=now)


def chat_message_store(
    *,
    room_id: str,
    session_pk: int | None,
    sender_client_id: str,
    sender_name: str,
    text: str,
) -> int:
    """Store one chat line of a room; return its pk."""
    with transaction.atomic():
        # An admin may have deleted the room or the session while the client was
        # connected; the line is still kept rather than failing on a foreign key.
        Room.objects.get_or_create(pk=room_id)
        if session_pk is not None and not ConnectionSession.objects.filter(pk=session_pk).exists():
            session_pk = None
        message = ChatMessage.objects.create(
            room_id=room_id,
            session_id=session_pk,
            sender_client_id=_fit(sender_client_id, "sender_client_id", ChatMessage),
            sender_name=_fit(sender_name, "sender_name", ChatMessage),
            text=text,
        )
    return message.pk
