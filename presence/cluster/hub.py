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

Nothing here waits for the channel layer: fan-out to the other processes is
queued for the :class:`~presence.cluster.publisher.Publisher`. Joins and
leaves of one room are linearized by a per-room lock, so a joiner's view of
the room and the LEAVEs it hears can never disagree (no ghost members).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from channels.layers import BaseChannelLayer

from presence import metrics, signals
from presence.cluster.bridge import SESSION_EVENT, LayerBridge, LayerFailed
from presence.cluster.catchup import CatchUp

# The hub's errors, defined with the session half; importers name them from here.
from presence.cluster.hub_sessions import BackendUnavailable as BackendUnavailable
from presence.cluster.hub_sessions import Draining as Draining
from presence.cluster.hub_sessions import (
    Heard,
    SessionHolding,
    adopt_player,
)
from presence.cluster.publisher import Publisher
from presence.cluster.recent_chat import InProcessRecentChat, RecentChat
from presence.cluster.registry import (
    Arrival,
    Departure,
    InProcessRegistry,
    Registry,
    RegistryUnavailable,
    RoomSnapshot,
)
from presence.cluster.rooms import HeldMember, LocalRoom, Member
from presence.cluster.sessions import (
    InProcessSessions,
    Journal,
    SessionStore,
)
from presence.cluster.tick_control import TickController
from presence.protocol import core_pb2 as pb
from presence.protocol.codec import EncodedMessage, leading_message_id
from presence.protocol.codes import CloseCode
from presence.protocol.moderation import Action, ModerationOrder
from presence.protocol.room import Broadcast, Outcome, Player, RoomChanges, RoomState

logger = logging.getLogger(__name__)

DEFAULT_TICK_HZ = 20.0
# Poses of one entity kept per tick. A sender at the tick rate whose frames
# jitter across a tick boundary keeps both instead of losing one; a faster
# sender is cut to its newest two per tick.
DEFAULT_POSES_PER_ENTITY = 2
DEFAULT_CHAT_HISTORY = 50  # PRESENCE_CHAT_HISTORY's default
# A room left empty stays subscribed this long: members of a room that empties
# and fills again (reconnects, churn) do not pay a group_discard and a
# group_add, which channels_redis sends one at a time with every publish.
UNSUBSCRIBE_LINGER_SECONDS = 10.0


_ENTITY_SIGNALS = frozenset({"entity_spawn", "entity_despawn"})


def _initial_state(
    snapshot: RoomSnapshot,
    local: RoomState,
    *,
    for_client: str,
    now_ms: int,
    recent_chat: list[pb.ChatMessage] | None = None,
) -> pb.WorldState:
    """The room for a joiner: the registry's view, this process's own members as they are now.

    This process's state is the truth about its own members and their
    entities (it may not have reached the registry yet); the registry is the
    truth about the other instances' members, in join order.
    """
    players = [
        local.players[p.client_id].snapshot() if p.client_id in local.players else p
        for p in snapshot.players
        if p.client_id != for_client
    ]
    listed = {p.client_id for p in snapshot.players}
    players += [
        player.snapshot()
        for client_id, player in local.players.items()
        if client_id not in listed and client_id != for_client
    ]
    # The server's entities this process holds are newer than the registry's copy.
    entities = [
        e
        for e in snapshot.entities
        if e.owner_id not in local.players and e.id not in local.entities
    ]
    entities += [entity.snapshot() for entity in local.entities.values()]
    return pb.WorldState(
        players=players, entities=entities, last_update=now_ms, recent_chat=recent_chat or []
    )


async def _forget(client_ids: list[str]) -> None:
    """Default for what to do about connections lost with their instance: nothing."""


def _ignore(room_id: str) -> None:
    """Default for what to do when a room's access rules changed: nothing."""


def _chat_line(broadcast: Broadcast) -> bytes | None:
    """The encoded ``ChatMessage`` ``broadcast`` carries, if it is one."""
    message = broadcast.message
    if not message.ListFields():  # heard from another instance: only its bytes
        message = pb.Message.FromString(broadcast.encoded().proto)
    if not message.HasField("chat_message"):
        return None
    return message.chat_message.SerializeToString()


class Hub(SessionHolding):
    """This process's rooms, local delivery, the tick and channel-layer fan-out."""

    def __init__(
        self,
        layer: BaseChannelLayer | None,
        *,
        registry: Registry | None = None,
        clock: Callable[[], float] = time.time,
        instance_id: str | None = None,
        tick_hz: float = DEFAULT_TICK_HZ,
        fast_tick_hz: float = 0.0,
        poses_per_entity: int = DEFAULT_POSES_PER_ENTITY,
        on_lost: Callable[[list[str]], Awaitable[None]] = _forget,
        on_access_changed: Callable[[str], None] = _ignore,
        recent_chat: RecentChat | None = None,
        sessions: SessionStore | None = None,
        grace_seconds: float = 10.0,
        window_seconds: float = 60.0,
    ) -> None:
        self.registry: Registry = registry if registry is not None else InProcessRegistry()
        self.sessions: SessionStore = (
            sessions if sessions is not None else InProcessSessions(window_seconds=window_seconds)
        )
        self.grace_seconds = grace_seconds
        self.window_seconds = window_seconds
        self.journal = Journal(
            self.sessions, on_rejected=self._session_taken, on_failure=self._journal_failed
        )
        # Session id -> the local member holding it (attached, or detached in its window).
        self.holders: dict[str, HeldMember] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self.on_lost = on_lost
        self.on_access_changed = on_access_changed
        self.clock = clock
        self.instance_id = instance_id or uuid.uuid4().hex[:12]
        self.catchup = CatchUp(origin=self.instance_id)
        # The room's last chat lines for joiners (presence.cluster.recent_chat).
        self.recent_chat: RecentChat = recent_chat or InProcessRecentChat(DEFAULT_CHAT_HISTORY)
        self.bridge = LayerBridge(
            layer,
            origin=self.instance_id,
            on_event=self._receive_remote,
            on_command=self._receive_command,
        )
        self.publisher = Publisher(
            self.bridge,
            write=self._write_before_publishing,
            on_failure=self.backend_failed,
            still_needed=self._room_in_use,
        )
        self.unsubscribe_linger = UNSUBSCRIBE_LINGER_SECONDS
        self.tick_seconds = 1.0 / tick_hz if tick_hz > 0 else 0.0
        # Shorter ticks while the process has CPU to spare (presence.cluster.tick_control);
        # fast_tick_hz at or below tick_hz keeps the tick fixed.
        self.fast_tick_seconds = (
            1.0 / fast_tick_hz if fast_tick_hz > tick_hz > 0 else self.tick_seconds
        )
        self.poses_per_entity = poses_per_entity
        self.rooms: dict[str, LocalRoom] = {}
        self._room_locks: dict[str, tuple[asyncio.Lock, int]] = {}  # lock, users
        # What other instances announced to a room while a member was joining
        # it: the joiner hears it after its hello.
        self._heard_while_joining: dict[str, Heard] = {}
        self._ids = itertools.count(1)
        self._ticker: asyncio.Task[None] | None = None
        self._commands: set[asyncio.Task[None]] = set()  # API calls being answered
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
        self,
        room_id: str,
        member: Member,
        player: Player,
        *,
        client_label: str = "",
        greet: Callable[[pb.ServerHello], None] | None = None,
    ) -> tuple[pb.ServerHello, list[Broadcast]]:
        """Add ``member`` to the room; return its ``ServerHello`` and the JOIN.

        The registry records the connection first and answers with the host
        and the room as every instance sees it. Local members already have
        the JOIN; the caller publishes it to the other processes. ``greet``
        queues the hello to the joiner: it is called once the member is
        registered and before anything else reaches it (what other
        instances announced while the registry answered follows the hello).
        """
        if self.draining:
            raise Draining
        async with self._room_order(room_id):
            return await self._join(room_id, member, player, client_label, greet)

    async def _join(
        self,
        room_id: str,
        member: Member,
        player: Player,
        client_label: str,
        greet: Callable[[pb.ServerHello], None] | None,
        *,
        resume: bool = False,
        heard: Heard | None = None,
    ) -> tuple[pb.ServerHello, list[Broadcast]]:
        await self._subscribe(room_id)
        arrival = Arrival(room_id, self.instance_id, player, client_label, self.now_ms())
        if heard is None:
            heard = self._heard_while_joining[room_id] = Heard()
        try:
            # The recent chat is read alongside (it never raises): one wait, not two.
            joined = (
                self.registry.join(arrival, resume=True) if resume else self.registry.join(arrival)
            )
            snapshot, recent_chat = await asyncio.gather(joined, self.recent_chat.read(room_id))
        except RegistryUnavailable as exc:
            if room_id not in self.rooms:
                self._unsubscribe_later(room_id)
            raise self.backend_failed("registry", exc) from exc
        finally:
            del self._heard_while_joining[room_id]
        self.check_registered(snapshot.instance_was_unknown)
        room = self.rooms.get(room_id)
        if room is None:
            state = RoomState(room_id, next_id=self._next_message_id, elects_host=False)
            room = self.rooms[room_id] = LocalRoom(state)
            metrics.ROOMS_ACTIVE.inc()
        now_ms = self.now_ms()
        # A hand-over heard while the registry answered is at least as new as
        # the snapshot's host.
        host = heard.host if heard.host is not None else snapshot.host_client_id
        if snapshot.moved:  # resumed in its grace: present all along, nothing to announce
            adopt_player(room.state, snapshot, player, host)
            due: list[Broadcast] = []
        else:
            outcome = room.state.join(player, now_ms=now_ms, host_client_id=host)
            # Route before registering: poses queued so far are already in the
            # joiner's snapshot and must not reach it ahead of its hello.
            due = self._route(room, outcome.broadcasts)
        room.members[member.client_id] = member
        self.emptied.clear()
        self._ensure_ticker()
        hello = pb.ServerHello(
            assigned_client_id=player.client_id,
            room_id=room_id,
            host_client_id=room.state.host_client_id,
            initial_state=_initial_state(
                snapshot,
                room.state,
                for_client=player.client_id,
                now_ms=now_ms,
                recent_chat=recent_chat,
            ),
        )
        if greet is not None:
            greet(hello)
        if not snapshot.moved:  # a member resumed in its grace never left
            signals.emit(
                "member_joined",
                room_id=room_id,
                client_id=player.client_id,
                user_id=player.user_id,
                display_name=player.display_name,
                instance_id=self.instance_id,
            )
        # What other instances announced while the registry answered may be
        # newer than the snapshot: the joiner hears it after its hello (a LEAVE
        # of someone the snapshot no longer lists is harmless; a missed one
        # would leave a ghost). A chat line heard meanwhile may also be in the
        # recent chat just read: the joiner gets it once, in its hello.
        in_hello = set() if resume else {c.SerializeToString() for c in recent_chat}
        for broadcast in heard.broadcasts:
            if in_hello and _chat_line(broadcast) in in_hello:
                continue
            member.deliver_reliable(broadcast.encoded())
        return hello, due

    def _drop_if_empty(self, room_id: str, room: LocalRoom) -> None:
        if room.members or self.rooms.get(room_id) is not room:
            return
        del self.rooms[room_id]
        metrics.ROOMS_ACTIVE.dec()
        if not self.rooms:
            self.emptied.set()
        self._unsubscribe_later(room_id)

    async def leave(self, room_id: str, member: Member, *, close_code: int = 1000) -> None:
        """Remove ``member``: LEAVE, despawns and host hand-over reach the others.

        ``close_code``: how its connection ended (``member_left``'s reason).
        """
        room = self.rooms.get(room_id)
        if room is None or room.members.get(member.client_id) is not member:
            return
        # Shielded: a connection cancelled while leaving still leaves the room.
        await asyncio.shield(self._leave_in_order(room_id, member, close_code))

    async def _leave_in_order(self, room_id: str, member: Member, close_code: int) -> None:
        async with self._room_order(room_id):
            room = self.rooms.get(room_id)
            if room is not None and room.members.get(member.client_id) is member:
                await self._leave(room_id, room, member, close_code)

    async def _leave(
        self,
        room_id: str,
        room: LocalRoom,
        member: Member,
        close_code: int,
        *,
        listening: bool = False,
    ) -> None:
        """``listening``: a detached session's grace ended; it hears its own LEAVE and stays."""
        if not listening:
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
            departure = await self.registry.leave(room_id, self.instance_id, member.client_id)
        except RegistryUnavailable as exc:
            self.backend_failed("registry", exc)  # the keeper removes it later
        if listening and departure is None and self.registry.shared:
            # Resumed on another instance (or swept) meanwhile: not ours to announce.
            room.state.players.pop(member.client_id, None)
            return
        now_ms = self.now_ms()
        player = room.state.players.get(member.client_id)
        broadcasts = room.state.leave(member.client_id, now_ms=now_ms).broadcasts
        if player is not None:  # its LEAVE is published here (not already announced)
            self._signal_departure(
                room_id, player.client_id, player.user_id, broadcasts, close_code=close_code
            )
        host = None
        if departure is not None and departure.host_changed:
            broadcasts.extend(room.state.hand_over(departure.new_host, now_ms=now_ms))
            host = room.state.host_client_id
        due = list(pending)
        for broadcast in broadcasts:
            due += self._route(room, [broadcast])
            if listening and broadcast.exclude == member.client_id:
                # Its own LEAVE and despawns, in order, for its replay (PROTOCOL.md section 6).
                member.deliver_reliable(broadcast.encoded())
        self._publish(room_id, due, host=host)
        if room_id not in self.rooms:
            self._unsubscribe_later(room_id)

    @contextlib.asynccontextmanager
    async def _room_order(self, room_id: str) -> AsyncIterator[None]:
        """Joins and leaves of one room, one at a time, in arrival order."""
        lock, users = self._room_locks.get(room_id) or (asyncio.Lock(), 0)
        self._room_locks[room_id] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._room_locks[room_id]
            if users == 1:
                del self._room_locks[room_id]
            else:
                self._room_locks[room_id] = (lock, users - 1)

    def _room_in_use(self, room_id: str) -> bool:
        return room_id in self.rooms or room_id in self._room_locks

    def _unsubscribe_later(self, room_id: str) -> None:
        """Leave the room's group after the linger, unless a member came back."""
        if not self.bridge.remote:
            return
        if self.unsubscribe_linger <= 0:
            self.publisher.unsubscribe(room_id)
            return
        loop = asyncio.get_running_loop()
        loop.call_later(self.unsubscribe_linger, self._unsubscribe_if_unused, room_id)

    def _unsubscribe_if_unused(self, room_id: str) -> None:
        if not self._room_in_use(room_id):
            self.publisher.unsubscribe(room_id)

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
        self.bridge.mark_failed()
        self.abort_all(CloseCode.BACKEND_UNAVAILABLE, "backend unavailable")
        return BackendUnavailable(str(exc))

    async def announce(self, departures: list[Departure], *, lost: bool = True) -> None:
        """Tell every instance about connections the registry removed (swept or retired).

        ``lost``: their instance died, so their history rows are closed as lost.
        """
        for gone in departures:
            room, state = self._room_and_state(gone.room_id)
            now_ms = self.now_ms()
            player = state.players.pop(gone.client_id, None)
            for entity_id in gone.entity_ids:
                state.entities.pop(entity_id, None)
            broadcasts = state.departure(gone.client_id, gone.entity_ids, now_ms=now_ms)
            self._signal_departure(
                gone.room_id,
                gone.client_id,
                player.user_id if player is not None else "",
                broadcasts,
                close_code=0,
                reason="lost" if lost else "closed",
            )
            host = None
            if gone.host_changed:
                broadcasts.extend(state.hand_over(gone.new_host, now_ms=now_ms))
                host = state.host_client_id
            due = self._route_if_local(gone.room_id, room, broadcasts)
            self._publish(gone.room_id, due, host=host)
        if departures and lost:
            await self.on_lost([d.client_id for d in departures])

    def _room_and_state(self, room_id: str) -> tuple[LocalRoom | None, RoomState]:
        """The local room, if any, and a state to build the room's messages with."""
        room = self.rooms.get(room_id)
        if room is not None:
            return room, room.state
        return None, RoomState(room_id, next_id=self._next_message_id, elects_host=False)

    def _route_if_local(
        self, room_id: str, room: LocalRoom | None, broadcasts: list[Broadcast]
    ) -> list[Broadcast]:
        """Deliver to the local room, if any; what to publish either way (logged)."""
        if room is not None:
            return self._route(room, broadcasts)
        reliable = [b for b in broadcasts if b.reliable]
        if reliable:
            self._log_reliable(room_id, reliable)
        return broadcasts

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
        if kind in _ENTITY_SIGNALS and outcome.broadcasts:  # it was applied
            self._signal_entity(room_id, kind, message, client_id)
        return outcome

    def _signal_entity(self, room_id: str, kind: str, message: pb.Message, owner: str) -> None:
        if kind == "entity_spawn":
            spawn = message.entity_spawn
            signals.emit(
                "entity_spawned",
                room_id=room_id,
                entity_id=spawn.entity_id,
                template_id=spawn.template_id,
                owner_id=owner,
                components=dict(spawn.components),
            )
        else:
            entity_id = message.entity_despawn.entity_id
            signals.emit("entity_despawned", room_id=room_id, entity_id=entity_id, owner_id=owner)

    def _signal_departure(
        self,
        room_id: str,
        client_id: str,
        user_id: str,
        broadcasts: list[Broadcast],
        *,
        close_code: int,
        reason: str = "",
    ) -> None:
        """``member_left`` and an ``entity_despawned`` per entity it took along."""
        signals.emit(
            "member_left",
            room_id=room_id,
            client_id=client_id,
            user_id=user_id,
            reason=reason or signals.leave_reason(close_code),
            close_code=close_code,
        )
        for broadcast in broadcasts:
            if broadcast.message.HasField("entity_despawn"):
                entity_id = broadcast.message.entity_despawn.entity_id
                signals.emit(
                    "entity_despawned", room_id=room_id, entity_id=entity_id, owner_id=client_id
                )

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
        changes = None
        if room is not None and any(b.reliable for b in broadcasts):
            changes = room.state.take_changes()
        if moderation is not None:  # its database part is written by now
            self.on_access_changed(room_id)
            await self._record_mute(room_id, moderation)
        self.publisher.send(room_id, broadcasts, moderation=moderation, changes=changes)

    async def moderate(self, room_id: str, order: ModerationOrder) -> None:
        """Announce and enforce an order from staff in the admin, on every instance."""
        room, state = self._room_and_state(room_id)
        broadcasts = state.moderate(order, now_ms=self.now_ms()).broadcasts
        due = self._route_if_local(room_id, room, broadcasts)
        self.enforce(room_id, order)
        await self._record_mute(room_id, order)
        self._publish(room_id, due, moderation=order)

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
        return await self._member_user(room_id, client_id) or ""

    async def has_member(self, room_id: str, client_id: str) -> bool:
        """Whether ``client_id`` is in the room on any instance (``True`` if Redis cannot say)."""
        return await self._member_user(room_id, client_id) != ""

    async def _member_user(self, room_id: str, client_id: str) -> str | None:
        """A member's user id; "" when not in the room; ``None`` when the registry failed."""
        room = self.rooms.get(room_id)
        if room is not None and client_id in room.state.players:
            return room.state.players[client_id].user_id
        try:
            view = await self.registry.view(room_id)
        except RegistryUnavailable:
            return None
        return next((c.user_id for c in view.connections if c.client_id == client_id), "")

    def _route(self, room: LocalRoom, broadcasts: list[Broadcast]) -> list[Broadcast]:
        """Deliver locally what is due now; return what to publish now.

        Volatile messages wait for the tick (or go at once without a tick). A
        reliable message first flushes the poses queued before it, so members
        see things in the order they happened, and goes into the room log as it
        is delivered: a resume here that claims from the log after that (once
        the journal is durable) finds it, though its sender may not have
        published it yet.
        """
        due: list[Broadcast] = []
        logged: list[Broadcast] = []
        for broadcast in broadcasts:
            if not broadcast.reliable:
                room.queue_volatile(broadcast, self.poses_per_entity)
                continue
            due.extend(room.flush())
            if self.journal.needed:
                self.catchup.note(room.state.room_id, broadcast.message.message_id)
            heard = self._heard_while_joining.get(room.state.room_id)
            if heard is not None:  # a member resuming hears it after its replay
                heard.broadcasts.append(broadcast)
            room.deliver_reliable(broadcast)
            due.append(broadcast)
            logged.append(broadcast)
        if logged:
            self._log_reliable(room.state.room_id, logged)
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
        control = None
        if self.fast_tick_seconds < self.tick_seconds:
            control = TickController(
                slow_seconds=self.tick_seconds, fast_seconds=self.fast_tick_seconds
            )
        interval = self.fast_tick_seconds
        next_at = loop.time()
        # A cancellation swallowed inside redis-py (Python 3.11) must still end it.
        while self.rooms and not (this_task and this_task.cancelling()):
            next_at += interval
            delay = next_at - loop.time()
            if delay < 0:  # behind schedule: skip the missed ticks, never burst
                next_at, delay = loop.time(), 0.0
            await asyncio.sleep(delay)
            lateness = loop.time() - next_at
            await self.tick()
            if control is not None:
                interval = control.next_interval(max(0.0, lateness))

    async def tick(self) -> None:
        """Deliver and publish every room's pending poses (the tick loop calls this)."""
        for room_id, room in list(self.rooms.items()):
            due = room.flush()
            if due:
                self._publish(room_id, due)

    # --- other processes ----------------------------------------------------

    def _publish(
        self,
        room_id: str,
        broadcasts: list[Broadcast],
        *,
        host: str | None = None,
        moderation: ModerationOrder | None = None,
    ) -> None:
        """Queue ``broadcasts`` for the other processes; ``host`` when the host changed."""
        self.publisher.send(room_id, broadcasts, host=host, moderation=moderation)

    def _receive_command(self, event: dict[str, Any]) -> None:
        """A server-side API call (presence.rooms) for a room of this instance: run it, answer."""
        task = asyncio.create_task(self._answer_command(event), name="presence-hub-command")
        self._commands.add(task)
        task.add_done_callback(self._commands.discard)

    async def _answer_command(self, event: dict[str, Any]) -> None:
        from presence.cluster.commands import run_command  # it builds on this module

        reply = await run_command(self, str(event.get("room", "")), event.get("command") or {})
        await self.bridge.reply(str(event.get("reply_to", "")), reply)

    def _receive_remote(self, event: dict[str, Any]) -> None:
        if event.get("type") == SESSION_EVENT:
            self._session_event(event)
            return
        room_id = event.get("room", "")
        try:
            self._deliver_remote(self.rooms.get(room_id), event)
        finally:
            if "moderation" in event:
                self.enforce(room_id, ModerationOrder.from_event(event["moderation"]))

    def _deliver_remote(self, room: LocalRoom | None, event: dict[str, Any]) -> None:
        heard = self._heard_while_joining.get(event.get("room", ""))
        if room is None and heard is None:
            return
        if "host" in event:  # another instance handed the host role on
            if room is not None:
                room.state.host_client_id = event["host"]
            if heard is not None:
                heard.host = event["host"]
        volatile: list[Broadcast] = []
        room_id = event.get("room", "")
        for proto, reliable, exclude, key in event["items"]:
            broadcast = Broadcast(pb.Message(), reliable, exclude, key)
            broadcast._encoded = EncodedMessage(proto)
            if not reliable:
                volatile.append(broadcast)
                continue
            if self.journal.needed and not self.catchup.note(room_id, leading_message_id(proto)):
                continue  # already caught up from the room log
            if heard is not None:
                heard.broadcasts.append(broadcast)
            if room is not None:
                room.deliver_volatile(volatile)
                room.deliver_reliable(broadcast)
            volatile = []
        if room is not None:
            room.deliver_volatile(volatile)

    async def _subscribe(self, room_id: str) -> None:
        try:
            await self.bridge.subscribe(room_id)
        except LayerFailed as failed:
            raise self.backend_failed(failed.operation, failed.cause) from failed
