"""Moderation from the Django admin: read a room's live presence, give orders.

The admin's views are synchronous; under ASGI they run on a worker thread,
and ``async_to_sync`` takes each call back to the server's event loop, where
this process's hub and its registry live. An order is recorded first (the
audit row, and the lock or ban it sets), then announced to the room and
enforced on every instance (see :meth:`presence.hub.Hub.moderate`).
"""

from __future__ import annotations

from asgiref.sync import async_to_sync
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser

from presence import services
from presence.hub import get_hub
from presence.models import ModerationAction
from presence.protocol.moderation import Action, ModerationOrder
from presence.registry import RoomView


async def _view(room_id: str) -> RoomView:
    return await get_hub().registry.view(room_id)


async def _announce(room_id: str, order: ModerationOrder) -> None:
    await get_hub().moderate(room_id, order)


def live_view(room_id: str) -> RoomView:
    """Who is in the room now, on every instance (raises RegistryUnavailable)."""
    return async_to_sync(_view)(room_id)


def moderate_from_admin(
    *,
    room_id: str,
    action: Action,
    user: AbstractBaseUser | AnonymousUser,
    target_client_id: str = "",
    reason: str = "",
    ban_seconds: int = 0,
) -> ModerationAction:
    """Record an order given by ``user`` in the admin; announce and enforce it."""
    target_user_id = ""
    if target_client_id:
        connections = live_view(room_id).connections
        target_user_id = next(
            (c.user_id for c in connections if c.client_id == target_client_id), ""
        )
    record = services.moderation_record(
        room_id=room_id,
        action=str(action),
        actor_user_id=user.pk,
        target_client_id=target_client_id,
        target_user_id=target_user_id,
        reason=reason,
        ban_seconds=ban_seconds if action is Action.KICK else 0,
    )
    order = ModerationOrder(action, target_client_id, reason, "", ban_seconds)
    async_to_sync(_announce)(room_id, order)
    return record
