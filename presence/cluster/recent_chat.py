"""The last chat lines of each room, for a joiner's ``initial_state.recent_chat``.

PROTOCOL.md section 3, ``WorldState.recent_chat`` (field 4): the room's last
``PRESENCE_CHAT_HISTORY`` chat messages, oldest first, the same on every
instance. With ``REDIS_URL`` they are a Redis list per room, trimmed to the
limit with every line (``P:room:{room}:chat``, kept ``RECENT_CHAT_TTL_SECONDS``
after the last line); otherwise they live in the process. Joins read them
here, never from the database (which keeps every line: the HTTP history).
"""

from __future__ import annotations

import logging
from collections import OrderedDict, deque
from typing import Protocol, cast

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from presence import metrics, signals
from presence.per_loop import per_event_loop
from presence.protocol import core_pb2 as pb

logger = logging.getLogger(__name__)

# A room nobody chats in for a week forgets its recent lines (the database keeps them).
RECENT_CHAT_TTL_SECONDS = 7 * 24 * 3600
# Rooms remembered by the in-process store; room ids come from clients, so it is bounded.
MAX_ROOMS_IN_PROCESS = 10_000
REDIS_TIMEOUT_SECONDS = 2.0


class RecentChat(Protocol):
    """Where the last lines of every room are kept."""

    limit: int

    async def push(self, room_id: str, chat: pb.ChatMessage) -> None:
        """Keep ``chat`` as the room's newest line (dropping the oldest past the limit)."""

    async def read(self, room_id: str) -> list[pb.ChatMessage]:
        """The room's last lines, oldest first (empty when off or unreachable)."""


class InProcessRecentChat:
    """The last lines of each room in this process (no ``REDIS_URL``)."""

    def __init__(self, limit: int, *, max_rooms: int = MAX_ROOMS_IN_PROCESS) -> None:
        self.limit = limit
        self.max_rooms = max_rooms
        self._rooms: OrderedDict[str, deque[bytes]] = OrderedDict()

    async def push(self, room_id: str, chat: pb.ChatMessage) -> None:
        """Append ``chat``; the least recently used room is forgotten past ``max_rooms``."""
        if self.limit <= 0:
            return
        lines = self._rooms.get(room_id)
        if lines is None:
            lines = self._rooms[room_id] = deque(maxlen=self.limit)
        lines.append(chat.SerializeToString())
        self._rooms.move_to_end(room_id)
        while len(self._rooms) > self.max_rooms:
            self._rooms.popitem(last=False)

    async def read(self, room_id: str) -> list[pb.ChatMessage]:
        """The room's last lines, oldest first."""
        if self.limit <= 0:
            return []
        return [pb.ChatMessage.FromString(line) for line in self._rooms.get(room_id, ())]


class RedisRecentChat:
    """The last lines of each room in Redis, shared by every instance."""

    def __init__(self, redis_url: str, *, prefix: str, limit: int) -> None:
        self.limit = limit
        self.prefix = prefix
        self.client = aioredis.Redis.from_url(
            redis_url,
            socket_timeout=REDIS_TIMEOUT_SECONDS,
            socket_connect_timeout=REDIS_TIMEOUT_SECONDS,
            retry=Retry(NoBackoff(), 1),
        )

    def key(self, room_id: str) -> str:
        """The room's list."""
        return f"{self.prefix}:room:{room_id}:chat"

    async def push(self, room_id: str, chat: pb.ChatMessage) -> None:
        """RPUSH, LTRIM to the limit and renew the TTL in one round trip; a failure is logged.

        The line is in the database already: a Redis outage costs joiners this
        line of their recent chat, not the sender its message.
        """
        if self.limit <= 0:
            return
        key = self.key(room_id)
        try:
            async with self.client.pipeline(transaction=True) as pipe:
                pipe.rpush(key, chat.SerializeToString())
                pipe.ltrim(key, -self.limit, -1)
                pipe.expire(key, RECENT_CHAT_TTL_SECONDS)
                await pipe.execute()
        except (TimeoutError, RedisError, OSError) as exc:
            metrics.count_layer_failure("recent_chat")
            logger.warning("could not keep a chat line for joiners (%r)", exc)

    async def read(self, room_id: str) -> list[pb.ChatMessage]:
        """The room's last lines, oldest first; empty (and logged) if Redis fails."""
        if self.limit <= 0:
            return []
        try:
            lines = await self.client.lrange(self.key(room_id), -self.limit, -1)
        except (TimeoutError, RedisError, OSError) as exc:
            logger.warning("could not read a room's recent chat (%r)", exc)
            return []
        # The client does not decode responses: every line is bytes.
        return [pb.ChatMessage.FromString(cast(bytes, line)) for line in lines]

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self.client.aclose()


def recent_chat_for(redis_url: str, *, prefix: str, limit: int) -> RecentChat:
    """The store the settings call for: Redis with ``redis_url``, else this process."""
    if redis_url:
        return RedisRecentChat(redis_url, prefix=prefix, limit=limit)
    return InProcessRecentChat(limit)


def _from_settings() -> RecentChat:
    from presence.conf import presence_settings

    conf = presence_settings()
    return recent_chat_for(
        conf.REDIS_URL, prefix=conf.REDIS_CHANNEL_PREFIX, limit=conf.CHAT_HISTORY
    )


# The running loop's store: the hub's (presence.cluster.instance) and the API's.
get_recent_chat = per_event_loop(_from_settings)


async def chat_recorded(
    store: RecentChat, room_id: str, chat: pb.ChatMessage, sender_name: str, *, now: bool = False
) -> None:
    """A chat line was stored: keep it for joiners and signal ``chat_message``.

    The signal is queued (the hot path), or with ``now`` sent before this
    returns (an API call, whose event loop may end right after it).
    """
    await store.push(room_id, chat)
    event = {
        "room_id": room_id,
        "from_client_id": chat.from_client_id,
        "sender_name": sender_name,
        "text": chat.message,
        "timestamp": chat.timestamp,
    }
    if now:
        await signals.get_dispatcher().send("chat_message", **event)
    else:
        signals.emit("chat_message", **event)
