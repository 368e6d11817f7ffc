"""Rooms of this process and the fan-out between their members.

Each process (each event loop) has one :class:`Hub`. It keeps the state of the
rooms its members are in, delivers a broadcast to its own members directly,
encoded once, and hands it to the channel layer group ``room.<id>`` once for
the other processes. Its one channel-layer channel reads what the others
publish. A per-room tick (latest pose per entity, one group message per tick)
replaces :meth:`Hub.publish` without touching the consumer.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
import uuid
import weakref
from collections.abc import Callable, Iterable
from typing import Any, Protocol

from channels.layers import BaseChannelLayer, get_channel_layer

from presence.protocol import core_pb2 as pb
from presence.protocol.codec import EncodedMessage
from presence.protocol.room import Broadcast, Outcome, Player, RoomState

logger = logging.getLogger(__name__)

FANOUT_EVENT = "presence.fanout"
READER_RETRY_SECONDS = 1.0  # back-off when the channel layer fails to deliver


class BackendUnavailable(Exception):
    """The channel layer (Redis) could not be reached."""


class Member(Protocol):
    """A local connection the hub delivers to."""

    client_id: str

    def deliver(self, encoded: EncodedMessage, *, reliable: bool, key: str) -> None:
        """Queue one message for this connection (never blocks)."""


def room_group(room_id: str) -> str:
    """The channel-layer group of a room (room ids are already group-safe)."""
    return f"room.{room_id}"


class LocalRoom:
    """A room's state and this process's members of it."""

    __slots__ = ("members", "state")

    def __init__(self, state: RoomState) -> None:
        self.state = state
        self.members: dict[str, Member] = {}


class Hub:
    """This process's rooms, local delivery and channel-layer fan-out."""

    def __init__(
        self,
        layer: BaseChannelLayer | None,
        *,
        clock: Callable[[], float] = time.time,
        instance_id: str | None = None,
    ) -> None:
        self.layer = layer
        self.clock = clock
        self.instance_id = instance_id or uuid.uuid4().hex[:12]
        self.rooms: dict[str, LocalRoom] = {}
        self._ids = itertools.count(1)
        self._subscribed: set[str] = set()
        self._subscription_lock = asyncio.Lock()
        self._channel_name: str | None = None
        self._reader: asyncio.Task[None] | None = None

    def now_ms(self) -> int:
        """The hub clock in milliseconds since the epoch."""
        return int(self.clock() * 1000)

    def _next_message_id(self) -> str:
        return f"{self.instance_id}-{next(self._ids)}"

    def room(self, room_id: str) -> LocalRoom | None:
        """The local room, if any member of this process is in it."""
        return self.rooms.get(room_id)

    # --- membership -------------------------------------------------------

    async def join(
        self, room_id: str, member: Member, player: Player
    ) -> tuple[pb.ServerHello, list[Broadcast]]:
        """Add ``member`` to the room; return its ``ServerHello`` and the JOIN.

        Local members already have the JOIN; the caller queues the hello, then
        publishes the JOIN to the other processes. Nothing reaches the
        joiner before its hello: no await lies between registering and returning.
        """
        await self._subscribe(room_id)
        room = self.rooms.get(room_id)
        if room is None:
            state = RoomState(room_id, next_id=self._next_message_id)
            room = self.rooms[room_id] = LocalRoom(state)
        now_ms = self.now_ms()
        outcome = room.state.join(player, now_ms=now_ms)
        room.members[member.client_id] = member
        hello = pb.ServerHello(
            assigned_client_id=player.client_id,
            room_id=room_id,
            host_client_id=room.state.host_client_id,
            initial_state=room.state.world_state(for_client=player.client_id, now_ms=now_ms),
        )
        self._deliver_local(room, outcome.broadcasts)
        return hello, outcome.broadcasts

    async def leave(self, room_id: str, member: Member) -> None:
        """Remove ``member``: LEAVE, despawns and host hand-over reach the others."""
        room = self.rooms.get(room_id)
        if room is None or room.members.get(member.client_id) is not member:
            return
        del room.members[member.client_id]
        outcome = room.state.leave(member.client_id, now_ms=self.now_ms())
        self._deliver_local(room, outcome.broadcasts)
        if not room.members:
            del self.rooms[room_id]
        try:
            await self._publish_remote(room_id, outcome.broadcasts)
        finally:
            if room_id not in self.rooms:
                await self._unsubscribe(room_id)

    # --- messages ---------------------------------------------------------

    def apply(self, room_id: str, client_id: str, kind: str, message: pb.Message) -> Outcome:
        """Apply a client message to the room and deliver it locally."""
        room = self.rooms[room_id]
        outcome = room.state.handle(client_id, kind, message, now_ms=self.now_ms())
        self._deliver_local(room, outcome.broadcasts)
        return outcome

    async def publish(self, room_id: str, broadcasts: list[Broadcast]) -> None:
        """Hand ``broadcasts`` to the other processes."""
        await self._publish_remote(room_id, broadcasts)

    def _deliver_local(self, room: LocalRoom, broadcasts: Iterable[Broadcast]) -> None:
        for broadcast in broadcasts:
            if len(room.members) == (broadcast.exclude in room.members):
                continue  # nobody else here; skip the encoding
            encoded = broadcast.encoded()
            for client_id, member in list(room.members.items()):
                if client_id != broadcast.exclude:
                    member.deliver(encoded, reliable=broadcast.reliable, key=broadcast.volatile_key)

    async def _publish_remote(self, room_id: str, broadcasts: list[Broadcast]) -> None:
        if self.layer is None or not broadcasts:
            return
        items = [[b.encoded().proto, b.reliable, b.exclude, b.volatile_key] for b in broadcasts]
        event = {"type": FANOUT_EVENT, "origin": self.instance_id, "room": room_id, "items": items}
        try:
            await self.layer.group_send(room_group(room_id), event)
        except Exception as exc:  # the layer raises whatever its client raises
            raise BackendUnavailable(str(exc)) from exc

    def _receive_remote(self, event: dict[str, Any]) -> None:
        if event.get("type") != FANOUT_EVENT or event.get("origin") == self.instance_id:
            return
        room = self.rooms.get(event.get("room", ""))
        if room is None:
            return
        for proto, reliable, exclude, key in event["items"]:
            encoded = EncodedMessage(proto)
            for client_id, member in list(room.members.items()):
                if client_id != exclude:
                    member.deliver(encoded, reliable=reliable, key=key)

    # --- channel-layer subscription ----------------------------------------

    async def _subscribe(self, room_id: str) -> None:
        if self.layer is None or room_id in self._subscribed:
            return
        async with self._subscription_lock:
            if room_id in self._subscribed:
                return
            if self._channel_name is None:
                self._channel_name = await self.layer.new_channel(prefix="presence-hub.")
            try:
                await self.layer.group_add(room_group(room_id), self._channel_name)
            except Exception as exc:
                raise BackendUnavailable(str(exc)) from exc
            self._subscribed.add(room_id)
            if self._reader is None or self._reader.done():
                self._reader = asyncio.create_task(self._read(), name="presence-hub-reader")

    async def _unsubscribe(self, room_id: str) -> None:
        if self.layer is None or self._channel_name is None:
            return
        async with self._subscription_lock:
            if room_id in self.rooms or room_id not in self._subscribed:
                return
            self._subscribed.discard(room_id)
            try:
                await self.layer.group_discard(room_group(room_id), self._channel_name)
            except Exception:
                logger.warning("group_discard failed for a room; it expires on its own")
            if not self._subscribed and self._reader is not None:
                self._reader.cancel()
                self._reader = None

    async def _read(self) -> None:
        assert self.layer is not None and self._channel_name is not None
        while True:
            try:
                event = await self.layer.receive(self._channel_name)
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("channel layer receive failed; retrying")
                await asyncio.sleep(READER_RETRY_SECONDS)
                continue
            try:
                self._receive_remote(event)
            except Exception:
                logger.exception("dropping an undeliverable fan-out event")


_hubs: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Hub] = weakref.WeakKeyDictionary()


def get_hub() -> Hub:
    """The hub of the running event loop (one per process in production)."""
    loop = asyncio.get_running_loop()
    hub = _hubs.get(loop)
    if hub is None:
        hub = _hubs[loop] = Hub(get_channel_layer())
    return hub
