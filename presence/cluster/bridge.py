"""The channel-layer bridge: one group per room, one reader per process.

What this process's members send goes once per tick per room to the group
``room.<id>``; every other process subscribed to the room reads it through
its one channel and hands it to its hub. With the in-process layer there is
no other process, and nothing crosses the bridge.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from channels.layers import BaseChannelLayer, InMemoryChannelLayer
from channels_redis.core import RedisChannelLayer
from channels_redis.pubsub import RedisPubSubChannelLayer

from presence import metrics
from presence.protocol.moderation import ModerationOrder
from presence.protocol.room import Broadcast

logger = logging.getLogger(__name__)

FANOUT_EVENT = "presence.fanout"
# A server-side API call (presence.rooms) for the instance named in "instance";
# it answers on the caller's "reply_to" channel with a REPLY_EVENT.
COMMAND_EVENT = "presence.command"
REPLY_EVENT = "presence.reply"
READER_RETRY_SECONDS = 1.0  # back-off when the channel layer fails to deliver


class LayerFailed(Exception):
    """The channel layer failed an operation (Redis unreachable)."""

    def __init__(self, operation: str, cause: Exception) -> None:
        super().__init__(f"{operation}: {cause!r}")
        self.operation = operation
        self.cause = cause


def room_group(room_id: str) -> str:
    """The channel-layer group of a room (room ids are already group-safe)."""
    return f"room.{room_id}"


def instance_group(instance_id: str) -> str:
    """The channel-layer group of one instance: events for the sessions it holds."""
    return f"instance.{instance_id}"


SESSION_EVENT = "presence.session"


class LayerBridge:
    """Group membership, publishing and reading for one process's hub."""

    def __init__(
        self,
        layer: BaseChannelLayer | None,
        *,
        origin: str,
        on_event: Callable[[dict[str, Any]], None],
        on_command: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        self.layer = layer
        self.origin = origin
        self.on_event = on_event
        self.on_command = on_command
        # The in-process layer has no other process to reach: skip the round trip.
        self.remote = layer is not None and not isinstance(layer, InMemoryChannelLayer)
        self.subscribed: set[str] = set()
        self.failed = False  # reset the layer's connections before the next use
        self._lock = asyncio.Lock()
        self._channel_name: str | None = None
        self._reader: asyncio.Task[None] | None = None

    async def publish(
        self,
        room_id: str,
        broadcasts: list[Broadcast],
        *,
        host: str | None = None,
        moderation: ModerationOrder | None = None,
    ) -> None:
        """One group message for the other processes; raise :class:`LayerFailed`."""
        if not self.remote or not (broadcasts or moderation):
            return
        assert self.layer is not None
        items = [[b.encoded().proto, b.reliable, b.exclude, b.volatile_key] for b in broadcasts]
        event: dict[str, Any] = {
            "type": FANOUT_EVENT,
            "origin": self.origin,
            "room": room_id,
            "items": items,
        }
        if host is not None:
            event["host"] = host
        if moderation is not None:
            event["moderation"] = moderation.as_event()
        try:
            await self.layer.group_send(room_group(room_id), event)
        except Exception:  # the layer raises whatever its client raises
            # One quick retry covers a pooled connection Redis dropped (a restart).
            metrics.count_layer_failure("group_send")
            try:
                await self.layer.group_send(room_group(room_id), event)
            except Exception as exc:
                raise LayerFailed("group_send", exc) from exc

    async def notify(self, instance_id: str, event: dict[str, Any]) -> None:
        """Send ``event`` to another instance's hub (best effort: journals settle the rest)."""
        if not self.remote:
            return
        assert self.layer is not None
        try:
            await self.layer.group_send(instance_group(instance_id), event)
        except Exception:
            metrics.count_layer_failure("group_send")
            logger.warning("could not tell an instance that its session moved")

    async def reply(self, channel: str, answer: dict[str, Any]) -> None:
        """Answer a command on the caller's channel; a caller gone or Redis down is logged."""
        if self.layer is None or not channel:
            return
        try:
            await self.layer.send(channel, {"type": REPLY_EVENT, **answer})
        except Exception as exc:  # the layer raises whatever its client raises
            metrics.count_layer_failure("send")
            logger.warning("could not answer a server-side API call (%r)", exc)

    async def subscribe(self, room_id: str) -> None:
        """Join the room's group (and start the reader); raise :class:`LayerFailed`."""
        if not self.remote or room_id in self.subscribed:
            return
        assert self.layer is not None
        async with self._lock:
            if room_id in self.subscribed:
                return
            try:
                if self.failed and not self.subscribed:
                    await self._reset()
                if self._channel_name is None:
                    # BaseChannelLayer's abstract new_channel takes no prefix; the
                    # layers that run (channels_redis, in-memory) do.
                    self._channel_name = await self.layer.new_channel(prefix="presence-hub.")  # type: ignore[call-arg]
                    await self.layer.group_add(instance_group(self.origin), self._channel_name)
                await self.layer.group_add(room_group(room_id), self._channel_name)
            except Exception as exc:
                raise LayerFailed("group_add", exc) from exc
            self.subscribed.add(room_id)
            if self._reader is None or self._reader.done():
                self._reader = asyncio.create_task(self._read(), name="presence-hub-reader")

    async def unsubscribe(self, room_id: str, *, still_needed: Callable[[], bool]) -> None:
        """Leave the room's group unless ``still_needed()`` says a member came back."""
        if self.layer is None or self._channel_name is None:
            return
        async with self._lock:
            if still_needed() or room_id not in self.subscribed:
                return
            self.subscribed.discard(room_id)
            try:
                await self.layer.group_discard(room_group(room_id), self._channel_name)
            except Exception:
                metrics.count_layer_failure("group_discard")
                logger.warning("group_discard failed for a room; it expires on its own")
            if not self.subscribed:
                if self._reader is not None:
                    self._reader.cancel()
                    self._reader = None
                # The pub/sub layer forgets a channel whose receive was cancelled:
                # the next subscription starts on a new one.
                self._channel_name = None

    async def _reset(self) -> None:
        """Start again on fresh connections after Redis failed.

        Only this process's side goes: the reader, its channel, the pub/sub
        layer's subscriptions and queues, the core layer's pools. Called with
        no room subscribed, so no member needs any of it.
        """
        assert self.layer is not None
        self.failed = False
        if self._reader is not None:
            self._reader.cancel()
            self._reader = None
        self._channel_name = None
        try:
            if isinstance(self.layer, RedisPubSubChannelLayer):
                await self.layer.flush()
            elif isinstance(self.layer, RedisChannelLayer):
                await self.layer.close_pools()
        except Exception:
            logger.warning("could not reset the channel layer's connections")

    def mark_failed(self) -> None:
        """Redis failed: every subscription is suspect; the next one starts afresh.

        Lingering subscriptions of empty rooms are forgotten too, so the first
        join after Redis answers again resets the layer's connections.
        """
        self.failed = True
        self.subscribed.clear()

    @property
    def reader(self) -> asyncio.Task[None] | None:
        """The reader task, while a room is subscribed."""
        return self._reader

    async def _read(self) -> None:
        assert self.layer is not None and self._channel_name is not None
        this_task = asyncio.current_task()
        while True:
            # Python 3.11's wait_for (inside redis-py) can swallow a cancellation
            # that races with a reply: check for it instead of looping forever.
            if not self.subscribed or (this_task is not None and this_task.cancelling()):
                return
            try:
                event = await self.layer.receive(self._channel_name)
            except asyncio.CancelledError:
                raise
            except Exception:
                metrics.count_layer_failure("receive")
                logger.exception("channel layer receive failed; retrying")
                await asyncio.sleep(READER_RETRY_SECONDS)
                continue
            if event.get("type") == COMMAND_EVENT:
                if event.get("instance") == self.origin and self.on_command is not None:
                    self.on_command(event)
                continue
            if event.get("type") == SESSION_EVENT:
                pass
            elif event.get("type") != FANOUT_EVENT or event.get("origin") == self.origin:
                continue
            try:
                self.on_event(event)
            except Exception:
                logger.exception("dropping an undeliverable fan-out event")
