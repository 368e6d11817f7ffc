"""The session half of the hub: resume, grace, takeover, catch-up (issue 11).

Mixed into :class:`presence.cluster.hub.Hub`. A session is *held* by one
local member (attached, or detached in its window): :meth:`resume` claims a
session for a new connection and moves it here unseen by the room while its
member is in its grace; :meth:`detach` starts the grace of a member whose
socket dropped, after which the room hears its LEAVE and the member keeps
listening (numbering) until the resume window ends; :meth:`catch_up`
delivers from the room logs what the channel layer lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from presence import metrics
from presence.cluster.bridge import SESSION_EVENT
from presence.cluster.catchup import Cursor
from presence.cluster.registry import RegistryUnavailable, RoomSnapshot
from presence.cluster.rooms import HeldMember, LocalRoom
from presence.cluster.sessions import Claimed, LogEntry, Refused, SessionRecord
from presence.protocol import core_pb2 as pb
from presence.protocol.codec import EncodedMessage, leading_message_id
from presence.protocol.room import Broadcast, Entity, Player, RoomChanges, RoomState

if TYPE_CHECKING:
    from contextlib import AbstractAsyncContextManager

    from presence.cluster.bridge import LayerBridge
    from presence.cluster.catchup import CatchUp
    from presence.cluster.registry import Departure, Registry
    from presence.cluster.rooms import Member
    from presence.cluster.sessions import Journal, SessionStore

logger = logging.getLogger(__name__)

# The close codes a departure's ``member_left`` signal names when the socket is
# long gone: the grace ran out (no close frame), the session was ended by its
# own identity (taken over), or its window overflowed (slow consumer).
GRACE_OVER = 1006
SESSION_ENDED = 4010
SESSION_LOST = 4009


class BackendUnavailable(Exception):
    """The channel layer (Redis) could not be reached."""


class Draining(Exception):
    """The instance is shutting down and takes no new members."""


@dataclass(slots=True)
class Heard:
    """Reliable events and the last hand-over heard while a member joins or resumes."""

    broadcasts: list[Broadcast] = field(default_factory=list)
    host: str | None = None


def adopt_player(state: RoomState, snapshot: RoomSnapshot, player: Player, host: str) -> None:
    """A member resumed from another instance: its player and entities as the registry has them."""
    known = next((p for p in snapshot.players if p.client_id == player.client_id), None)
    adopted = Player.from_snapshot(known, user_id=player.user_id) if known else player
    adopted.moderator = player.moderator
    state.players[player.client_id] = adopted
    state.host_client_id = host
    for snap in snapshot.entities:
        if snap.owner_id == player.client_id:
            state.entities[snap.id] = Entity(
                entity_id=snap.id,
                template_id=snap.template_id,
                owner_id=snap.owner_id,
                components=dict(snap.components),
                position=snap.position if snap.HasField("position") else None,
                rotation=snap.rotation if snap.HasField("rotation") else None,
            )


class SessionHolding:
    """Sessions held by this process's members (the hub's mixin)."""

    if TYPE_CHECKING:
        # What the mixin uses of :class:`presence.cluster.hub.Hub`, which defines them.
        registry: Registry
        sessions: SessionStore
        journal: Journal
        catchup: CatchUp
        bridge: LayerBridge
        holders: dict[str, HeldMember]
        rooms: dict[str, LocalRoom]
        instance_id: str
        grace_seconds: float
        window_seconds: float
        draining: bool
        degraded: bool
        emptied: asyncio.Event
        _tasks: set[asyncio.Task[None]]
        _heard_while_joining: dict[str, Heard]

        def _room_order(self, room_id: str) -> AbstractAsyncContextManager[None]: ...
        async def _subscribe(self, room_id: str) -> None: ...
        def _unsubscribe_later(self, room_id: str) -> None: ...
        def _drop_if_empty(self, room_id: str, room: LocalRoom) -> None: ...
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
        ) -> tuple[pb.ServerHello, list[Broadcast]]: ...
        async def _leave(
            self,
            room_id: str,
            room: LocalRoom,
            member: Member,
            close_code: int,
            *,
            listening: bool = False,
        ) -> None: ...
        async def announce(self, departures: list[Departure], *, lost: bool = True) -> None: ...
        def backend_failed(self, operation: str, exc: Exception) -> BackendUnavailable: ...

    async def resume(
        self,
        room_id: str,
        member: HeldMember,
        make_player: Callable[[], Player],
        *,
        session_id: str,
        claim: Callable[[], Awaitable[Claimed | Refused]],
        client_label: str = "",
    ) -> tuple[Claimed | Refused, pb.ServerHello | None, list[Broadcast]]:
        """Claim ``session_id`` for ``member``; on success its hello and what to publish.

        ``make_player`` builds the member's player once the claim named its client id.

        The room is heard from before the claim, so what the old holder could
        no longer number after it reaches ``member`` (``member.deliver_reliable``
        skips what its replay holds). A member still present (in its grace,
        here or on another instance) comes back unseen: no JOIN, entities and
        host role kept; one whose grace is over joins again (the room gets a
        JOIN). A local holder hands its window over (``member.adopt``) and is
        released: its socket, if still open, is closed with 4010.
        """
        if self.draining:
            raise Draining
        async with self._room_order(room_id):
            await self._subscribe(room_id)
            heard = self._heard_while_joining[room_id] = Heard()
            try:
                # What this instance numbered or logged so far is in the store
                # for the claim; what comes later is heard.
                if self.journal.needed and not await self.journal.durable(self.journal.added):
                    raise BackendUnavailable("session journal")  # counted by the journal
                result = await claim()
            except BaseException:
                del self._heard_while_joining[room_id]
                raise
            if isinstance(result, Refused):
                del self._heard_while_joining[room_id]
                if room_id not in self.rooms:
                    self._unsubscribe_later(room_id)
                return result, None, []
            player = make_player()  # the claimed session's client id
            room = self.rooms.get(room_id)
            old = self.holders.get(session_id)
            if old is not None and old is not member:
                if room is not None and room.members.get(player.client_id) is old:
                    room.members[player.client_id] = member  # swapped: nothing in between
                member.adopt(old)
                self._release(old)
                heard.broadcasts = []  # the old holder numbered them: they are in its window
            self.holders[session_id] = member
            if room is not None and player.client_id in room.state.players:
                del self._heard_while_joining[room_id]
                room.members[player.client_id] = member
                self.emptied.clear()
                hello = pb.ServerHello(
                    assigned_client_id=player.client_id,
                    room_id=room_id,
                    host_client_id=room.state.host_client_id,
                )
                for broadcast in heard.broadcasts:
                    member.deliver_reliable(broadcast.encoded())
                return result, hello, []
            hello, due = await self._join(
                room_id, member, player, client_label, None, resume=True, heard=heard
            )
            return result, hello, due

    def hold(self, session_id: str, member: HeldMember) -> None:
        """``member`` holds ``session_id`` on this instance."""
        self.holders[session_id] = member

    def _release(self, member: HeldMember) -> None:
        """Another connection took ``member``'s session: it stops, silently (4010 if open)."""
        if self.holders.get(member.session_id) is member:
            del self.holders[member.session_id]
        member.taken_over()

    def _session_taken(self, session_id: str, connection_id: str) -> None:
        """A journal write of ``connection_id`` was refused: another connection claimed it."""
        member = self.holders.get(session_id)
        if member is not None and member.connection_id == connection_id:
            self._forget_silently(member)

    def _forget_silently(self, member: HeldMember) -> None:
        """The session went elsewhere (or ended there): no LEAVE from here."""
        self._release(member)
        room = self.rooms.get(member.room_id)
        if room is None or room.members.get(member.client_id) is not member:
            return
        del room.members[member.client_id]
        room.state.players.pop(member.client_id, None)
        for entity_id in [
            e.entity_id for e in room.state.entities.values() if e.owner_id == member.client_id
        ]:
            del room.state.entities[entity_id]
        self._drop_if_empty(member.room_id, room)

    def _log_reliable(self, room_id: str, broadcasts: list[Broadcast]) -> None:
        """Reliable messages of this instance, for the room log (a resume's catch-up)."""
        if not self.journal.needed:
            return
        entries = []
        for broadcast in broadcasts:
            body = broadcast.encoded().proto
            entries.append(LogEntry(leading_message_id(body), broadcast.exclude, body))
        self.journal.log(room_id, entries)

    def _journal_failed(self, exc: Exception) -> None:
        self.backend_failed("sessions", exc)

    async def _write_before_publishing(self, changes: dict[str, RoomChanges]) -> None:
        """The publisher's round: journal first (answers, numbering), then the registry."""
        if self.journal.needed and not await self.journal.durable(self.journal.added):
            raise RegistryUnavailable("session journal")
        if changes:
            await self.registry.write(changes)

    def notify_holder(self, record: SessionRecord, action: str) -> None:
        """Tell the instance holding ``record``'s session that it was taken or ended."""
        event = {
            "type": SESSION_EVENT,
            "action": action,
            "session": record.session_id,
            "connection": record.connection_id,
        }
        if record.instance_id == self.instance_id or not self.bridge.remote:
            self._session_event(event)
        else:
            self._spawn(self.bridge.notify(record.instance_id, event))

    def _session_event(self, event: dict[str, Any]) -> None:
        member = self.holders.get(event.get("session", ""))
        if member is not None and member.connection_id == event.get("connection"):
            self._forget_silently(member)

    async def end_session(self, record: SessionRecord) -> None:
        """The same identity asked for its session non-resumably: it ends, the room hears LEAVE."""
        member = self.holders.get(record.session_id)
        if member is not None and member.connection_id == record.connection_id:
            self._release(member)
            room = self.rooms.get(record.room_id)
            if room is not None and room.members.get(member.client_id) is member:
                async with self._room_order(record.room_id):
                    room = self.rooms.get(record.room_id)
                    if room is not None and room.members.get(member.client_id) is member:
                        await self._leave(record.room_id, room, member, SESSION_ENDED)
            return
        try:
            gone = await self.registry.leave(record.room_id, "", record.client_id)
        except RegistryUnavailable as exc:
            raise self.backend_failed("registry", exc) from exc
        self.notify_holder(record, "ended")
        if gone is not None:
            await self.announce([gone], lost=False)

    async def catch_up(self) -> None:
        """Deliver what the room logs hold that the channel layer lost (once per period)."""
        if not self.journal.needed or self.degraded:
            return
        self.catchup.forget(set(self.rooms))
        for room_id in self.rooms:
            self.catchup.cursors.setdefault(room_id, Cursor())
        store: Any = self.sessions
        try:
            read = await store.read_logs(self.catchup.ranges())
            for room_id, (log_end, ids) in read.items():
                missed = self.catchup.missed(room_id, ids, log_end)
                if missed:
                    self._deliver_caught_up(room_id, await store.logged(room_id, missed))
        except RegistryUnavailable as exc:
            raise self.backend_failed("catch-up", exc) from exc

    def _deliver_caught_up(self, room_id: str, entries: list[LogEntry]) -> None:
        room = self.rooms.get(room_id)
        if room is None:
            return
        for entry in entries:
            if not self.catchup.note(room_id, entry.message_id):
                continue  # arrived meanwhile
            broadcast = Broadcast(pb.Message(), True, entry.exclude)
            broadcast._encoded = EncodedMessage(entry.body)
            room.deliver_reliable(broadcast)
            self.catchup.caught_up += 1
            metrics.CAUGHT_UP.inc()

    async def renew_sessions(self) -> None:
        """Keep the sessions held here, and their rooms' kept messages (each heartbeat)."""
        held = [sid for sid, m in self.holders.items() if m.attached]
        await self.sessions.renew(held)
        renew_rooms = getattr(self.sessions, "renew_rooms", None)
        if renew_rooms is not None:
            await renew_rooms(sorted({m.room_id for m in self.holders.values()}))

    def detach(self, room_id: str, member: HeldMember) -> None:
        """``member``'s socket dropped: present for the grace, then listening for the window."""
        room = self.rooms.get(room_id)
        if room is None or room.members.get(member.client_id) is not member:
            return
        loop = asyncio.get_running_loop()
        loop.call_later(self.grace_seconds, self._spawn_grace_over, room_id, member)

    def _spawn_grace_over(self, room_id: str, member: HeldMember) -> None:
        self._spawn(self._grace_over(room_id, member))

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _still_detached(self, room_id: str, member: HeldMember) -> LocalRoom | None:
        room = self.rooms.get(room_id)
        if room is None or room.members.get(member.client_id) is not member:
            return None
        return None if member.attached or member.released else room

    async def _grace_over(self, room_id: str, member: HeldMember) -> None:
        """The grace passed unresumed: the room hears LEAVE, the session hears it too."""
        with contextlib.suppress(BackendUnavailable):
            async with self._room_order(room_id):
                room = self._still_detached(room_id, member)
                if room is not None and member.client_id in room.state.players:
                    await self._leave(room_id, room, member, GRACE_OVER, listening=True)
        remaining = max(0.0, self.window_seconds - self.grace_seconds)
        asyncio.get_running_loop().call_later(
            remaining, lambda: self._spawn(self._window_over(room_id, member))
        )

    async def _window_over(self, room_id: str, member: HeldMember) -> None:
        """The resume window passed: the session is forgotten."""
        async with self._room_order(room_id):
            room = self._still_detached(room_id, member)
            if room is None:
                return
            del room.members[member.client_id]
            if self.holders.get(member.session_id) is member:
                del self.holders[member.session_id]
            self._drop_if_empty(room_id, room)
        member.session_over()

    async def abandon(self, room_id: str, member: HeldMember) -> None:
        """A detached session can no longer be resumed (its window overflowed): it ends."""
        if self.holders.get(member.session_id) is member:
            del self.holders[member.session_id]
        async with self._room_order(room_id):
            room = self.rooms.get(room_id)
            if room is None or room.members.get(member.client_id) is not member:
                return
            if member.client_id in room.state.players:
                with contextlib.suppress(BackendUnavailable):
                    await self._leave(room_id, room, member, SESSION_LOST)
                return
            del room.members[member.client_id]
            self._drop_if_empty(room_id, room)
