"""Rooms of this process and the fan-out between their members.

Each process (each event loop) has one :class:`Hub`. It keeps the state of the
rooms its members are in and delivers to its own members directly: reliable
messages at once, poses once per room tick as one :class:`TickBatch` (newest
pose per entity, encoded once). What its members send goes once per tick per
room to the channel-layer group ``room.<id>``, where the other processes' hubs
read it through their one channel and deliver it to their own members.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
import uuid
from collections.abc import Callable
from typing import Any, Protocol

from channels.layers import BaseChannelLayer, InMemoryChannelLayer, get_channel_layer

from presence.conf import presence_settings
from presence.per_loop import per_event_loop
from presence.protocol import core_pb2 as pb
from presence.protocol.batch import Entry, TickBatch
from presence.protocol.codec import EncodedMessage
from presence.protocol.room import Broadcast, Outcome, Player, RoomState

logger = logging.getLogger(__name__)

FANOUT_EVENT = "presence.fanout"
READER_RETRY_SECONDS = 1.0  # back-off when the channel layer fails to deliver
DEFAULT_TICK_HZ = 20.0
# Poses of one entity kept per tick. A sender at the tick rate whose frames
# jitter across a tick boundary keeps both instead of losing one; a faster
# sender is cut to its newest two per tick.
DEFAULT_POSES_PER_ENTITY = 2


class BackendUnavailable(Exception):
    """The channel layer (Redis) could not be reached."""


class Member(Protocol):
    """A local connection the hub delivers to; both calls only queue, never block."""

    client_id: str

    def deliver_reliable(self, encoded: EncodedMessage) -> None:
        """Queue one reliable message (the member numbers it)."""

    def deliver_volatile(self, batch: TickBatch) -> None:
        """Queue one tick's volatile messages (the member skips its own)."""


def room_group(room_id: str) -> str:
    """The channel-layer group of a room (room ids are already group-safe)."""
    return f"room.{room_id}"


class LocalRoom:
    """A room's state, this process's members of it, and its unsent poses."""

    __slots__ = ("members", "pending", "pending_per_key", "state")

    def __init__(self, state: RoomState) -> None:
        self.state = state
        self.members: dict[str, Member] = {}
        self.pending: list[Broadcast] = []  # volatile, waiting for the next tick
        self.pending_per_key: dict[str, int] = {}

    def queue_volatile(self, broadcast: Broadcast, per_key: int) -> None:
        """Queue a pose for the tick, keeping the newest ``per_key`` of its entity."""
        self.pending.append(broadcast)
        key = broadcast.volatile_key
        if not key:
            return
        count = self.pending_per_key.get(key, 0) + 1
        if count > per_key:
            oldest = next(i for i, b in enumerate(self.pending) if b.volatile_key == key)
            del self.pending[oldest]
            count -= 1
        self.pending_per_key[key] = count

    def take_pending(self) -> list[Broadcast]:
        """The queued poses, oldest first; the queue is left empty."""
        pending, self.pending = self.pending, []
        self.pending_per_key.clear()
        return pending


def _entries(broadcasts: list[Broadcast]) -> list[Entry]:
    # Unkeyed messages (voice) are never coalesced: each gets a key of its own.
    unkeyed = itertools.count()
    return [
        Entry(b.exclude, b.volatile_key or f"#{next(unkeyed)}", b.encoded()) for b in broadcasts
    ]


def _deliver_volatile(room: LocalRoom, broadcasts: list[Broadcast]) -> None:
    if not broadcasts:
        return
    if (
        len(room.members) == 1
        and broadcasts[0].exclude in room.members
        and all(b.exclude == broadcasts[0].exclude for b in broadcasts)
    ):
        return  # only the sender is here
    batch = TickBatch(_entries(broadcasts), newest_only=False)
    for member in list(room.members.values()):
        member.deliver_volatile(batch)


def _deliver_reliable(room: LocalRoom, broadcast: Broadcast) -> None:
    encoded = broadcast.encoded()
    for client_id, member in list(room.members.items()):
        if client_id != broadcast.exclude:
            member.deliver_reliable(encoded)


class Hub:
    """This process's rooms, local delivery, the tick and channel-layer fan-out."""

    def __init__(
        self,
        layer: BaseChannelLayer | None,
        *,
        clock: Callable[[], float] = time.time,
        instance_id: str | None = None,
        tick_hz: float = DEFAULT_TICK_HZ,
        poses_per_entity: int = DEFAULT_POSES_PER_ENTITY,
    ) -> None:
        self.layer = layer
        # The in-process layer has no other process to reach: skip the round trip.
        self.remote = layer is not None and not isinstance(layer, InMemoryChannelLayer)
        self.clock = clock
        self.instance_id = instance_id or uuid.uuid4().hex[:12]
        self.tick_seconds = 1.0 / tick_hz if tick_hz > 0 else 0.0
        self.poses_per_entity = poses_per_entity
        self.rooms: dict[str, LocalRoom] = {}
        self._ids = itertools.count(1)
        self._subscribed: set[str] = set()
        self._subscription_lock = asyncio.Lock()
        self._channel_name: str | None = None
        self._reader: asyncio.Task[None] | None = None
        self._ticker: asyncio.Task[None] | None = None

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
        publishes the JOIN to the other processes. Nothing reaches the joiner
        before its hello: no await lies between registering and returning.
        """
        await self._subscribe(room_id)
        room = self.rooms.get(room_id)
        if room is None:
            state = RoomState(room_id, next_id=self._next_message_id)
            room = self.rooms[room_id] = LocalRoom(state)
        now_ms = self.now_ms()
        outcome = room.state.join(player, now_ms=now_ms)
        # Route before registering: poses queued so far are already in the
        # joiner's snapshot and must not reach it ahead of its hello.
        due = self._route(room, outcome.broadcasts)
        room.members[member.client_id] = member
        self._ensure_ticker()
        hello = pb.ServerHello(
            assigned_client_id=player.client_id,
            room_id=room_id,
            host_client_id=room.state.host_client_id,
            initial_state=room.state.world_state(for_client=player.client_id, now_ms=now_ms),
        )
        return hello, due

    async def leave(self, room_id: str, member: Member) -> None:
        """Remove ``member``: LEAVE, despawns and host hand-over reach the others."""
        room = self.rooms.get(room_id)
        if room is None or room.members.get(member.client_id) is not member:
            return
        del room.members[member.client_id]
        outcome = room.state.leave(member.client_id, now_ms=self.now_ms())
        due = self._route(room, outcome.broadcasts)
        if not room.members:
            due.extend(self._flush(room))
            del self.rooms[room_id]
        try:
            await self._publish_remote(room_id, due)
        finally:
            if room_id not in self.rooms:
                await self._unsubscribe(room_id)

    # --- messages ---------------------------------------------------------

    def apply(self, room_id: str, client_id: str, kind: str, message: pb.Message) -> Outcome:
        """Apply a client message to the room and deliver what is due locally.

        The returned outcome's ``broadcasts`` are what :meth:`publish` must
        hand to the other processes now; poses wait for the room's tick.
        """
        room = self.rooms[room_id]
        outcome = room.state.handle(client_id, kind, message, now_ms=self.now_ms())
        outcome.broadcasts = self._route(room, outcome.broadcasts)
        return outcome

    async def publish(self, room_id: str, broadcasts: list[Broadcast]) -> None:
        """Hand ``broadcasts`` to the other processes."""
        await self._publish_remote(room_id, broadcasts)

    def _route(self, room: LocalRoom, broadcasts: list[Broadcast]) -> list[Broadcast]:
        """Deliver locally what is due now; return what to publish now.

        Volatile messages wait for the tick (or go at once without a tick). A
        reliable message first flushes the poses queued before it, so members
        see things in the order they happened.
        """
        due: list[Broadcast] = []
        for broadcast in broadcasts:
            if not broadcast.reliable:
                room.queue_volatile(broadcast, self.poses_per_entity)
                continue
            due.extend(self._flush(room))
            _deliver_reliable(room, broadcast)
            due.append(broadcast)
        if not self.tick_seconds:
            due.extend(self._flush(room))
        return due

    def _flush(self, room: LocalRoom) -> list[Broadcast]:
        """Deliver the room's pending poses as one tick batch; return them."""
        pending = room.take_pending()
        _deliver_volatile(room, pending)
        return pending

    def _ensure_ticker(self) -> None:
        if self.tick_seconds and (self._ticker is None or self._ticker.done()):
            self._ticker = asyncio.create_task(self._tick_loop(), name="presence-hub-tick")

    async def _tick_loop(self) -> None:
        """Once per tick: each room's newest poses, delivered and published once."""
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        while self.rooms:
            next_at += self.tick_seconds
            delay = next_at - loop.time()
            if delay < 0:  # behind schedule: skip the missed ticks, never burst
                next_at, delay = loop.time(), 0.0
            await asyncio.sleep(delay)
            await self.tick()

    async def tick(self) -> None:
        """Deliver and publish every room's pending poses (the tick loop calls this)."""
        for room_id, room in list(self.rooms.items()):
            due = self._flush(room)
            if not due:
                continue
            try:
                await self._publish_remote(room_id, due)
            except BackendUnavailable:
                logger.warning("poses of a room could not reach the other instances")

    # --- other processes ----------------------------------------------------

    async def _publish_remote(self, room_id: str, broadcasts: list[Broadcast]) -> None:
        if not self.remote or not broadcasts:
            return
        assert self.layer is not None
        items = [[b.encoded().proto, b.reliable, b.exclude, b.volatile_key] for b in broadcasts]
        event = {"type": FANOUT_EVENT, "origin": self.instance_id, "room": room_id, "items": items}
        try:
            await self.layer.group_send(room_group(room_id), event)
        except Exception as exc:  # the layer raises whatever its client raises
            logger.warning("channel layer refused a group send: %r", exc)
            raise BackendUnavailable(str(exc)) from exc

    def _receive_remote(self, event: dict[str, Any]) -> None:
        if event.get("type") != FANOUT_EVENT or event.get("origin") == self.instance_id:
            return
        room = self.rooms.get(event.get("room", ""))
        if room is None:
            return
        volatile: list[Broadcast] = []
        for proto, reliable, exclude, key in event["items"]:
            broadcast = Broadcast(pb.Message(), reliable, exclude, key)
            broadcast._encoded = EncodedMessage(proto)
            if not reliable:
                volatile.append(broadcast)
                continue
            _deliver_volatile(room, volatile)
            volatile = []
            _deliver_reliable(room, broadcast)
        _deliver_volatile(room, volatile)

    async def _subscribe(self, room_id: str) -> None:
        if not self.remote or room_id in self._subscribed:
            return
        assert self.layer is not None
        async with self._subscription_lock:
            if room_id in self._subscribed:
                return
            try:
                if self._channel_name is None:
                    self._channel_name = await self.layer.new_channel(prefix="presence-hub.")
                await self.layer.group_add(room_group(room_id), self._channel_name)
            except Exception as exc:
                logger.warning("channel layer refused a subscription: %r", exc)
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
                # The pub/sub layer forgets a channel whose receive was cancelled:
                # the next subscription starts on a new one.
                self._channel_name = None

    async def _read(self) -> None:
        assert self.layer is not None and self._channel_name is not None
        this_task = asyncio.current_task()
        while True:
            # Python 3.11's wait_for (inside redis-py) can swallow a cancellation
            # that races with a reply: check for it instead of looping forever.
            if not self._subscribed or (this_task is not None and this_task.cancelling()):
                return
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


def _new_hub() -> Hub:
    conf = presence_settings()
    return Hub(
        get_channel_layer(), tick_hz=conf.TICK_HZ, poses_per_entity=conf.TICK_POSES_PER_ENTITY
    )


get_hub = per_event_loop(_new_hub)
