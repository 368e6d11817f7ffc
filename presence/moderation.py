"""Moderation from the Django admin: read a room's live presence, give orders.

The admin's views are synchronous; under ASGI they run on a worker thread,
and ``async_to_sync`` takes each call back to the server's event loop, where
this process's hub and its registry live. An order is recorded first (the
audit row, and the lock or ban it sets), then announced to the room and
enforced on every instance (see :meth:`presence.cluster.hub.Hub.moderate`).
"""

from __future__ import annotations

from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser

from presence import signals
from presence.cluster.instance import get_hub
from presence.cluster.registry import RoomView
from presence.models import ModerationAction
from presence.protocol.moderation import Action, ModerationOrder
from presence.storage import services


async def _view(room_id: str) -> RoomView:
    return await get_hub().registry.view(room_id)


async def _user_of(room_id: str, client_id: str) -> str:
    return await get_hub().user_of(room_id, client_id) if client_id else ""


async def _announce(room_id: str, order: ModerationOrder, actor_user_id: int | None) -> None:
    await get_hub().moderate(room_id, order)
    signal(room_id, order, actor_user_id=actor_user_id)


def signal(room_id: str, order: ModerationOrder, *, actor_user_id: int | None) -> None:
    """Queue the ``moderation_action`` signal of a recorded ``order`` (on the running loop)."""
    signals.emit(
        "moderation_action",
        room_id=room_id,
        action=str(order.action),
        target_client_id=order.target_client_id,
        by_client_id=order.by_client_id,
        actor_user_id=actor_user_id,
        reason=order.reason,
    )


def _record(
    room_id: str, order: ModerationOrder, *, actor_user_id: int | None, target_user_id: str
) -> ModerationAction:
    return services.moderation_record(
        room_id=room_id,
        action=str(order.action),
        actor_user_id=actor_user_id,
        actor_client_id=order.by_client_id,
        target_client_id=order.target_client_id,
        target_user_id=target_user_id,
        reason=order.reason,
        ban_seconds=order.ban_seconds if order.action is Action.KICK else 0,
    )


async def record(
    room_id: str, order: ModerationOrder, *, actor_user_id: int | None
) -> ModerationAction:
    """The audit row of a client's ``order`` (with the lock it sets), before it is heard."""
    target_user_id = await _user_of(room_id, order.target_client_id)
    return await database_sync_to_async(_record)(
        room_id, order, actor_user_id=actor_user_id, target_user_id=target_user_id
    )


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
) -> None:
    """Record an order given by ``user`` in the admin; announce and enforce it."""
    order = ModerationOrder(action, target_client_id, reason, "", ban_seconds)
    # The admin's own thread writes the row (its request's connection), then
    # the order goes to the hub on the server's loop.
    target_user_id = async_to_sync(_user_of)(room_id, target_client_id)
    _record(room_id, order, actor_user_id=user.pk, target_user_id=target_user_id)
    async_to_sync(_announce)(room_id, order, user.pk)
