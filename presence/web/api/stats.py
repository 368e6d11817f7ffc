"""``GET /ws/stats`` and ``GET /ws/{room_id}/stats``: who is where, from the presence registry.

The registry is cluster-wide with ``REDIS_URL`` (every instance's connections),
this process's own without it. It belongs to the server's event loop
(``get_hub`` keeps one hub per loop); DRF views are sync and run in a worker
thread, so the reads are sent back to that loop with ``async_to_sync``. Per-room
numbers live here, never in Prometheus labels.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from typing import Any, ParamSpec, TypedDict, TypeVar

from asgiref.sync import async_to_sync
from django.core.exceptions import ValidationError
from rest_framework import status
from rest_framework.exceptions import APIException
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from presence.cluster.instance import get_hub
from presence.cluster.registry import Connection, RegistryUnavailable, RoomView
from presence.models import room_id_validator
from presence.web.api.permissions import IsStaffOrDebug

logger = logging.getLogger(__name__)

# Rooms read from the registry at once by /ws/stats: one Lua call (and, on
# Redis, one pooled connection) each; bounds what one request can hold.
VIEW_CONCURRENCY = 16

P = ParamSpec("P")
T = TypeVar("T")


class RoomSummary(TypedDict):
    room_id: str
    connection_count: int
    message_count: int
    entity_count: int
    host_client_id: str


class InstanceSummary(TypedDict):
    instance_id: str
    connection_count: int


class ClusterStats(TypedDict):
    total_connections: int
    active_rooms: int
    rooms: list[RoomSummary]
    instances: list[InstanceSummary]
    timestamp: str


class ConnectionStats(TypedDict):
    id: str  # the server-assigned client id
    client_id: str  # the client's own label (``client_id`` query parameter)
    user_id: str
    display_name: str
    instance_id: str
    connected_at: str | None


class RoomStats(RoomSummary):
    connections: list[ConnectionStats]
    timestamp: str


class StatsUnavailable(APIException):
    """The registry (Redis) did not answer."""

    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    default_detail = "The presence registry is unavailable."
    default_code = "registry_unavailable"


class InvalidRoomId(APIException):
    """The path's room id breaks the room-id rule."""

    status_code = status.HTTP_400_BAD_REQUEST
    default_code = "invalid_room_id"


def iso_utc(ms: int) -> str:
    """Milliseconds since the epoch as ISO 8601 UTC, e.g. ``2026-01-02T03:04:05.678Z``."""
    seconds, millis = divmod(ms, 1000)
    moment = datetime.fromtimestamp(seconds, UTC).replace(microsecond=millis * 1000)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _connection(connection: Connection) -> ConnectionStats:
    return {
        "id": connection.client_id,
        "client_id": connection.client_label,
        "user_id": connection.user_id,
        "display_name": connection.display_name,
        "instance_id": connection.instance_id,
        "connected_at": iso_utc(connection.connected_at_ms) if connection.connected_at_ms else None,
    }


async def stats_cluster() -> ClusterStats:
    """Every room with members on any instance, with totals; run on the hub's loop."""
    hub = get_hub()
    room_ids = await hub.registry.room_ids()
    views: list[RoomView] = []
    for start in range(0, len(room_ids), VIEW_CONCURRENCY):
        chunk = room_ids[start : start + VIEW_CONCURRENCY]
        views += await asyncio.gather(*(hub.registry.view(r) for r in chunk))
    views = [v for v in views if v.connections]  # emptied since room_ids()
    per_instance: dict[str, int] = {}
    for view in views:
        for connection in view.connections:
            per_instance[connection.instance_id] = per_instance.get(connection.instance_id, 0) + 1
    return {
        "total_connections": sum(per_instance.values()),
        "active_rooms": len(views),
        "rooms": [_summary(v) for v in views],
        "instances": [
            {"instance_id": i, "connection_count": n} for i, n in sorted(per_instance.items())
        ],
        "timestamp": iso_utc(hub.now_ms()),
    }


async def stats_room(*, room_id: str) -> RoomStats:
    """One room's connections in join order (any instance); run on the hub's loop."""
    hub = get_hub()
    view = await hub.registry.view(room_id)
    return {
        **_summary(view),
        "connections": [_connection(c) for c in view.connections],
        "timestamp": iso_utc(hub.now_ms()),
    }


def _summary(view: RoomView) -> RoomSummary:
    return {
        "room_id": view.room_id,
        "connection_count": len(view.connections),
        "message_count": view.message_count,
        "entity_count": view.entity_count,
        "host_client_id": view.host_client_id,
    }


def _on_server_loop(
    read: Callable[P, Coroutine[Any, Any, T]], *args: P.args, **kwargs: P.kwargs
) -> T:
    # From a sync view's worker thread, async_to_sync runs ``read`` on the loop
    # that serves the request (the server's), where this process's hub lives.
    try:
        return async_to_sync(read)(*args, **kwargs)
    except RegistryUnavailable as exc:
        logger.warning("stats: registry unavailable (%s)", type(exc).__name__)
        raise StatsUnavailable() from exc


class ClusterStatsView(APIView):
    """``GET /ws/stats``: every room with members, cluster-wide."""

    permission_classes = [IsStaffOrDebug]
    renderer_classes = [JSONRenderer]
    schema = None  # operational JSON (README "Stats"), not in /api/schema/

    def get(self, request: Request) -> Response:
        """Answer with :class:`ClusterStats`."""
        return Response(_on_server_loop(stats_cluster))


class RoomStatsView(APIView):
    """``GET /ws/{room_id}/stats``: one room's connections; an empty room is all zeros."""

    permission_classes = [IsStaffOrDebug]
    renderer_classes = [JSONRenderer]
    schema = None  # operational JSON (README "Stats"), not in /api/schema/

    def get(self, request: Request, room_id: str) -> Response:
        """Answer with :class:`RoomStats`; 400 for an id that breaks the room-id rule."""
        try:
            room_id_validator(room_id)
        except ValidationError as exc:
            raise InvalidRoomId(exc.messages[0]) from exc
        return Response(_on_server_loop(stats_room, room_id=room_id))
