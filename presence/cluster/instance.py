"""This process's hub, wired to its registry, keeper, shutdown and history.

The one place that composes the cluster layer: :func:`get_hub` builds the
running event loop's :class:`Hub` on first use, with the Redis registry when
``REDIS_URL`` is set, starts the keeper that heart-beats and sweeps, and
installs the SIGTERM drain. The hub itself imports none of them.
"""

from __future__ import annotations

from channels.layers import get_channel_layer

from presence import metrics
from presence.cluster.hub import Hub
from presence.cluster.keeper import start_keeper
from presence.cluster.recent_chat import get_recent_chat
from presence.cluster.redis_registry import RedisRegistry
from presence.cluster.redis_sessions import RedisSessions
from presence.cluster.registry import InProcessRegistry, Registry
from presence.cluster.sessions import InProcessSessions, SessionStore
from presence.cluster.shutdown import drain_on_sigterm
from presence.conf import presence_settings
from presence.per_loop import per_event_loop
from presence.storage.history import close_lost_sessions
from presence.transport.room_access import get_room_access


def _forget_room_access(room_id: str) -> None:
    get_room_access().forget(room_id)


def _new_hub() -> Hub:
    conf = presence_settings()
    registry: Registry = InProcessRegistry()
    window = conf.PRESENCE_RESUME_WINDOW_SECONDS
    sessions: SessionStore = InProcessSessions(window_seconds=window)
    if conf.REDIS_URL:
        registry = RedisRegistry(
            conf.REDIS_URL,
            prefix=conf.REDIS_CHANNEL_PREFIX,
            lease_seconds=conf.REGISTRY_LEASE_SECONDS,
            grace_seconds=conf.PRESENCE_LEAVE_GRACE_SECONDS,
        )
        sessions = RedisSessions(
            conf.REDIS_URL,
            prefix=conf.REDIS_CHANNEL_PREFIX,
            queue_size=conf.MESSAGE_QUEUE_SIZE,
            window_seconds=window,
            held_extra_seconds=max(conf.REGISTRY_LEASE_SECONDS, conf.PRESENCE_LEAVE_GRACE_SECONDS)
            + conf.REGISTRY_HEARTBEAT_SECONDS,
        )
    hub = Hub(
        get_channel_layer(),
        registry=registry,
        tick_hz=conf.TICK_HZ,
        fast_tick_hz=conf.TICK_FAST_HZ,
        poses_per_entity=conf.TICK_POSES_PER_ENTITY,
        on_lost=close_lost_sessions,
        on_access_changed=_forget_room_access,
        sessions=sessions,
        grace_seconds=conf.PRESENCE_LEAVE_GRACE_SECONDS,
        window_seconds=window,
        recent_chat=get_recent_chat(),
    )
    metrics.count_core_layer_drops()
    start_keeper(hub, conf)
    drain_on_sigterm(hub)
    return hub


get_hub = per_event_loop(_new_hub)
