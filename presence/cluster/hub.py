"""Rooms of this process and the fan-out between their members.

Each process (each event loop) has one :class:`Hub`. It keeps the state of the
rooms its members are in and delivers to its own members directly: reliable
messages at once, poses once per room tick as one :class:`TickBatch` (newest
pose per entity, encoded once). What its members send goes once per tick per
room to the channel-layer group ``room.<id>``, where the other processes' hubs
read it through their one channel and deliver it to their own members.

Membership, hosts and entities are also recorded in the :mod:`presence.cluster.registry`
(in Redis with ``REDIS_URL``): the registry elects hosts for rooms spread over
instances and gives a joiner the whole room. State changes reach the registry
before the group message that announces them; poses reach it a few times a
second (:mod:`presence.cluster.keeper`). When Redis fails, every local member is
closed with 4012 and the keeper tidies up once it answers again.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from channels.layers import BaseChannelLayer

from presence import metrics
from presence.cluster.bridge import LayerBridge, LayerFailed
from presence.cluster.registry import (
    Arrival,
    Departure,
    InProcessRegistry,
    Registry,
    RegistryUnavailable,
    RoomSnapshot,
)
from presence.cluster.rooms import LocalRoom, Member
from presence.protocol import core_pb2 as pb
from presence.protocol.codec import EncodedMessage
from presence.protocol.codes import CloseCode
from presence.protocol.moderation import Action, ModerationOrder
from presence.protocol.room import Broadcast, Outcome, Player, RoomChanges, RoomState

logger = logging.getLogger(__name__)

DEFAULT_TICK_HZ = 20.0
# Poses of one entity kept per tick. A sender at the tick rate whose frames
# jitter across a tick boundary keeps both instead of losing one; a faster
# sender is cut to its newest two per tick.
DEFAULT_POSES_PER_ENTITY = 2


class BackendUnavailable(Exception):
    """The channel layer (Redis) could not be reached."""


class Draining(Exception):
    """The instance is shutting down and takes no new members."""


def _initial_state(
    snapshot: RoomSnapshot, local: RoomState, *, for_client: str, now_ms: int
) -> pb.WorldState:
    """The room as the registry holds it, with this process's fresher poses."""
    players = [
        local.players[p.client_id].snapshot() if p.client_id in local.players else p
        for p in snapshot.players
        if p.client_id != for_client
    ]
    entities = [
        local.entities[e.id].snapshot() if e.id in local.entities else e for e in snapshot.entities
    ]
    return pb.WorldState(players=players, entities=entities, last_update=now_ms)


async def _forget(client_ids: list[str]) -> None:
    """Default for what to do about connections lost with their instance: nothing."""


def _ignore(room_id: str) -> None:
    """Default for what to do when a room's access rules changed: nothing."""


class Hub:
    """This process's rooms, local delivery, the tick and channel-layer fan-out."""

    def __init__(
        self,
        layer: BaseChannelLayer | None,
        *,
        registry: Registry | None = None,
        clock: Callable[[], float] = time.time,
        instance_id: str | None = None,
        tick_hz: float = DEFAULT_TICK_HZ,
        poses_per_entity: int = DEFAULT_POSES_PER_ENTITY,
        on_lost: Callable[[list[str]], Awaitable[None]] = _forget,
        on_access_changed: Callable[[str], None] = _ignore,
    ) -> None:
        self.registry: Registry = registry if registry is not None else InProcessRegistry()
        self.on_lost = on_lost
        self.on_access_changed = on_access_changed
        self.clock = clock
        self.instance_id = instance_id or uuid.uuid4().hex[:12]
        self.bridge = LayerBridge(layer, origin=self.instance_id, on_event=self._receive_remote)
        self.tick_seconds = 1.0 / tick_hz if tick_hz > 0 else 0.0
        self.poses_per_entity = poses_per_entity
        self.rooms: dict[str, LocalRoom] = {}
        self._ids = itertools.count(1)
        self._ticker: asyncio.Task[None] | None = None
        self.keeper: Any = None  # presence.cluster.keeper.Keeper, when the registry is shared
        self.registered = False  # the registry has seen this instance (join or heartbeat)
        self.draining = False  # shutting down: joins are refused
        self.degraded = False  # Redis failed; the keeper reconciles when it answers
        self.emptied = asyncio.Event()  # set while no local member is left
        self.emptied.set()

    def now_ms(self) -> int:
        """The hub clock in milliseconds since the epoch."""
        return int(self.clock() * 1000)

    def _next_message_id(self) -> str:
        return f"{self.instance_id}-{next(self._ids)}"

    # --- membership -------------------------------------------------------

    async def join(
        self, room_id: str, member: Member, player: Player, *, client_label: str = ""
    ) -> tuple[pb.ServerHello, list[Broadcast]]:
        """Add ``member`` to the room; return its ``ServerHello`` and the JOIN.

        The registry records the connection first and answers with the host
        and the room as every instance sees it. Local members already have
        the JOIN; the caller queues the hello, then publishes the JOIN to the
        other processes. Nothing reaches the joiner before its hello: no await
        lies between registering and returning.
        """
        if self.draining:
            raise Draining
        await self._subscribe(room_id)
        arrival = Arrival(room_id, self.instance_id, player, client_label, self.now_ms())
        try:
            snapshot = await self.registry.join(arrival)
        except RegistryUnavailable as exc:
            if room_id not in self.rooms:
                await self._unsubscribe(room_id)
            raise self.backend_failed("registry", exc) from exc
        self.check_registered(snapshot.instance_was_unknown)
        room = self.rooms.get(room_id)
        if room is None:
            state = RoomState(room_id, next_id=self._next_message_id, elects_host=False)
            room = self.rooms[room_id] = LocalRoom(state)
            metrics.ROOMS_ACTIVE.inc()
        now_ms = self.now_ms()
        outcome = room.state.join(player, now_ms=now_ms, host_client_id=snapshot.host_client_id)
        # Route before registering: poses queued so far are already in the
        # joiner's snapshot and must not reach it ahead of its hello.
        due = self._route(room, outcome.broadcasts)
        room.members[member.client_id] = member
        self.emptied.clear()
        self._ensure_ticker()
        hello = pb.ServerHello(
            assigned_client_id=player.client_id,
            room_id=room_id,
            host_client_id=snapshot.host_client_id,
            initial_state=_initial_state(
                snapshot, room.state, for_client=player.client_id, now_ms=now_ms
            ),
        )
        return hello, due

    async def leave(self, room_id: str, member: Member) -> None:
        """Remove ``member``: LEAVE, despawns and host hand-over reach the others."""
        room = self.rooms.get(room_id)
        if room is None or room.members.get(member.client_id) is not member:
            return
        del room.members[member.client_id]  # nothing more is delivered to it
        pending: list[Broadcast] = []
        if not room.members:  # forget the room now: nothing below may stop that
            pending = room.take_pending()
            del self.rooms[room_id]
            metrics.ROOMS_ACTIVE.dec()
            if not self.rooms:
                self.emptied.set()
        departure: Departure | None = None
        try:
            # Shielded: a connection cancelled while leaving still leaves the registry.
            departure = await asyncio.shield(
                self.registry.leave(room_id, self.instance_id, member.client_id)
            )
        except RegistryUnavailable as exc:
            self.backend_failed("registry", exc)  # the keeper removes it later
        now_ms = self.now_ms()
        broadcasts = room.state.leave(member.client_id, now_ms=now_ms).broadcasts
        host = None
        if departure is not None and departure.host_changed:
            broadcasts.extend(room.state.hand_over(departure.new_host, now_ms=now_ms))
            host = room.state.host_client_id
        # A member who joined meanwhile is in a new local room: it hears the leave.
        current = self.rooms.get(room_id, room)
        due = [*pending, *self._route(current, broadcasts)]
        try:
            await self._publish(room_id, due, host=host)
        finally:
            if room_id not in self.rooms:
                await self._unsubscribe(room_id)

    async def occupancy(self, room_id: str) -> int:
        """Members of the room on every instance."""
        try:
            return await self.registry.occupancy(room_id)
        except RegistryUnavailable as exc:
            raise self.backend_failed("registry", exc) from exc

    def local_members(self) -> list[Member]:
        """Every member of this process, in every room."""
        return [m for room in self.rooms.values() for m in room.members.values()]

    def abort_all(self, close_code: CloseCode, text: str) -> None:
        """Close every local member with ``close_code``."""
        for member in self.local_members():
            member.abort(close_code, text)

    def abort_clients(self, client_ids: set[str], close_code: CloseCode, text: str) -> None:
        """Close the local members among ``client_ids``."""
        for member in self.local_members():
            if member.client_id in client_ids:
                member.abort(close_code, text)

    def check_registered(self, was_unknown: bool) -> None:
        """The registry did not know this instance: if it knew it before, it swept it.

        The other instances have seen its members leave; they must reconnect.
        """
        if was_unknown and self.registered and self.local_members():
            logger.warning("this instance was swept as dead; closing its connections")
            self.abort_all(CloseCode.BACKEND_UNAVAILABLE, "backend unavailable")
        self.registered = True

    def backend_failed(self, operation: str, exc: Exception) -> BackendUnavailable:
        """Redis failed: count it, close every local member with 4012, and say so."""
        metrics.count_layer_failure(operation)
        if not self.degraded:
            logger.warning("Redis failed (%s: %r); closing local connections", operation, exc)
        self.degraded = True
        self.bridge.failed = True
        self.abort_all(CloseCode.BACKEND_UNAVAILABLE, "backend unavailable")
        return BackendUnavailable(str(exc))

    async def announce(self, departures: list[Departure], *, lost: bool = True) -> None:
        """Tell every instance about connections the registry removed (swept or retired).

        ``lost``: their instance died, so their history rows are closed as lost.
        """
        for gone in departures:
            room, state = self._room_and_state(gone.room_id)
            now_ms = self.now_ms()
            state.players.pop(gone.client_id, None)
            for entity_id in gone.entity_ids:
                state.entities.pop(entity_id, None)
            broadcasts = state.departure(gone.client_id, gone.entity_ids, now_ms=now_ms)
            host = None
            if gone.host_changed:
                broadcasts.extend(state.hand_over(gone.new_host, now_ms=now_ms))
                host = state.host_client_id
            due = self._route_if_local(room, broadcasts)
            try:
                await self._publish(gone.room_id, due, host=host)
            except BackendUnavailable:
                logger.warning("could not announce a departure to the other instances")
        if departures and lost:
            await self.on_lost([d.client_id for d in departures])

    def _room_and_state(self, room_id: str) -> tuple[LocalRoom | None, RoomState]:
        """The local room, if any, and a state to build the room's messages with."""
        room = self.rooms.get(room_id)
        if room is not None:
            return room, room.state
        return None, RoomState(room_id, next_id=self._next_message_id, elects_host=False)

    def _route_if_local(
        self, room: LocalRoom | None, broadcasts: list[Broadcast]
    ) -> list[Broadcast]:
        """Deliver to the local room, if any; what to publish either way."""
        return self._route(room, broadcasts) if room is not None else broadcasts

    async def sync(self) -> None:
        """Write every room's changed players and entities (poses) to the registry."""
        changes = {room_id: room.state.take_changes() for room_id, room in self.rooms.items()}
        await self._write({room_id: c for room_id, c in changes.items() if c})

    async def _write(self, changes: dict[str, RoomChanges]) -> None:
        if not changes:
            return
        try:
            await self.registry.write(changes)
        except RegistryUnavailable as exc:
            raise self.backend_failed("registry", exc) from exc

    # --- messages ---------------------------------------------------------

    def apply(self, room_id: str, client_id: str, kind: str, message: pb.Message) -> Outcome:
        """Apply a client message to the room and deliver what is due locally.

        The returned outcome's ``broadcasts`` are what :meth:`publish` must
        hand to the other processes now; poses wait for the room's tick.
        """
        room = self.rooms[room_id]
        outcome = room.state.handle(client_id, kind, message, now_ms=self.now_ms())
        outcome.broadcasts = self._route(room, outcome.broadcasts)
        if outcome.moderation is not None:
            self.enforce(room_id, outcome.moderation)
        return outcome

    async def publish(
        self,
        room_id: str,
        broadcasts: list[Broadcast],
        *,
        moderation: ModerationOrder | None = None,
    ) -> None:
        """Record what changed in the registry, then hand ``broadcasts`` to the others.

        Changes ride with reliable messages; poses alone wait for :meth:`sync`.
        A ``moderation`` order travels along, for every instance to enforce.
        """
        room = self.rooms.get(room_id)
        if room is not None and any(b.reliable for b in broadcasts):
            changes = room.state.take_changes()
            if changes:
                await self._write({room_id: changes})
        if moderation is not None:  # its database part is written by now
            self.on_access_changed(room_id)
            await self._record_mute(room_id, moderation)
        await self._publish(room_id, broadcasts, moderation=moderation)

    async def moderate(self, room_id: str, order: ModerationOrder) -> None:
        """Announce and enforce an order from staff in the admin, on every instance."""
        room, state = self._room_and_state(room_id)
        broadcasts = state.moderate(order, now_ms=self.now_ms()).broadcasts
        due = self._route_if_local(room, broadcasts)
        self.enforce(room_id, order)
        await self._record_mute(room_id, order)
        await self._publish(room_id, due, moderation=order)

    async def _record_mute(self, room_id: str, order: ModerationOrder) -> None:
        """A mute or unmute, marked on the target's registry entry for every reader."""
        if order.action in (Action.MUTE, Action.UNMUTE):
            try:
                await self.registry.set_muted(
                    room_id, order.target_client_id, order.action is Action.MUTE
                )
            except RegistryUnavailable as exc:
                raise self.backend_failed("registry", exc) from exc

    def enforce(self, room_id: str, order: ModerationOrder) -> None:
        """Carry ``order`` out for this process's members of the room."""
        self.on_access_changed(room_id)  # a lock, an unlock or a ban applies to joins at once
        room = self.rooms.get(room_id)
        if room is None:
            return
        room.state.obey(order)
        if order.action is Action.KICK:
            member = room.members.get(order.target_client_id)
            if member is not None:
                member.abort(CloseCode.FORBIDDEN, "kicked from the room")

    async def user_of(self, room_id: str, client_id: str) -> str:
        """The user id of a member of the room, on any instance ("" if not there)."""
        room = self.rooms.get(room_id)
        if room is not None and client_id in room.state.players:
            return room.state.players[client_id].user_id
        try:
            view = await self.registry.view(room_id)
        except RegistryUnavailable:
            return ""
        return next((c.user_id for c in view.connections if c.client_id == client_id), "")

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
            due.extend(room.flush())
            room.deliver_reliable(broadcast)
            due.append(broadcast)
        if not self.tick_seconds:
            due.extend(room.flush())
        return due

    def _ensure_ticker(self) -> None:
        if self.tick_seconds and (self._ticker is None or self._ticker.done()):
            self._ticker = asyncio.create_task(self._tick_loop(), name="presence-hub-tick")

    async def _tick_loop(self) -> None:
        """Once per tick: each room's newest poses, delivered and published once."""
        loop = asyncio.get_running_loop()
        this_task = asyncio.current_task()
        next_at = loop.time()
        # A cancellation swallowed inside redis-py (Python 3.11) must still end it.
        while self.rooms and not (this_task and this_task.cancelling()):
            next_at += self.tick_seconds
            delay = next_at - loop.time()
            if delay < 0:  # behind schedule: skip the missed ticks, never burst
                next_at, delay = loop.time(), 0.0
            await asyncio.sleep(delay)
            await self.tick()

    async def tick(self) -> None:
        """Deliver and publish every room's pending poses (the tick loop calls this)."""
        for room_id, room in list(self.rooms.items()):
            due = room.flush()
            if not due:
                continue
            try:
                await self._publish(room_id, due)
            except BackendUnavailable:
                logger.warning("poses of a room could not reach the other instances")

    # --- other processes ----------------------------------------------------

    async def _publish(
        self,
        room_id: str,
        broadcasts: list[Broadcast],
        *,
        host: str | None = None,
        moderation: ModerationOrder | None = None,
    ) -> None:
        """Hand ``broadcasts`` to the other processes; ``host`` when the host changed."""
        try:
            await self.bridge.publish(room_id, broadcasts, host=host, moderation=moderation)
        except LayerFailed as failed:
            raise self.backend_failed(failed.operation, failed.cause) from failed

    def _receive_remote(self, event: dict[str, Any]) -> None:
        room_id = event.get("room", "")
        try:
            self._deliver_remote(self.rooms.get(room_id), event)
        finally:
            if "moderation" in event:
                self.enforce(room_id, ModerationOrder.from_event(event["moderation"]))

    def _deliver_remote(self, room: LocalRoom | None, event: dict[str, Any]) -> None:
        if room is None:
            return
        if "host" in event:  # another instance handed the host role on
            room.state.host_client_id = event["host"]
        volatile: list[Broadcast] = []
        for proto, reliable, exclude, key in event["items"]:
            broadcast = Broadcast(pb.Message(), reliable, exclude, key)
            broadcast._encoded = EncodedMessage(proto)
            if not reliable:
                volatile.append(broadcast)
                continue
            room.deliver_volatile(volatile)
            volatile = []
            room.deliver_reliable(broadcast)
        room.deliver_volatile(volatile)

    async def _subscribe(self, room_id: str) -> None:
        try:
            await self.bridge.subscribe(room_id)
        except LayerFailed as failed:
            raise self.backend_failed(failed.operation, failed.cause) from failed

    async def _unsubscribe(self, room_id: str) -> None:
        await self.bridge.unsubscribe(room_id, still_needed=lambda: room_id in self.rooms)
