"""The presence registry: who is in which room, on which instance, and as what.

One interface, two homes. :class:`InProcessRegistry` keeps it in memory for a
single process (no ``REDIS_URL``); :class:`presence.cluster.redis_registry.RedisRegistry`
keeps it in Redis so every instance sees every room, elects hosts atomically
and sweeps the connections of instances that died. The hub writes to it on
join and leave, before it publishes state changes, and (for poses) a few
times a second; a joiner's ``initial_state`` is read from it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from presence.protocol import core_pb2 as pb
from presence.protocol.room import Player, RoomChanges

# The owner of entities spawned by the server (presence.rooms), not a member:
# they stay while the room has members on any instance and go when it empties.
# Assigned client ids are "c" and 15 hex digits, so no member is ever called this.
SERVER_OWNER = "server"


class RegistryUnavailable(Exception):
    """The registry's store (Redis) could not be reached."""


@dataclass(frozen=True, slots=True)
class Arrival:
    """A connection joining a room, as the registry records it."""

    room_id: str
    instance_id: str
    player: Player
    client_label: str = ""
    connected_at_ms: int = 0


@dataclass(slots=True)
class RoomSnapshot:
    """A room as any instance can read it: host, players in join order, entities."""

    host_client_id: str
    players: list[pb.PlayerSnapshot] = field(default_factory=list)
    entities: list[pb.EntitySnapshot] = field(default_factory=list)
    # The joining instance was not registered: new, or swept while cut off.
    instance_was_unknown: bool = False
    # A resume found the connection still present (its grace) and moved it here.
    moved: bool = False


@dataclass(frozen=True, slots=True)
class Departure:
    """A connection removed from the registry, and what the room must hear.

    ``new_host`` is ``None`` when the host did not change; otherwise the new
    host (``host_changed``), or no one when the room emptied.
    """

    room_id: str
    client_id: str
    entity_ids: list[str]
    host_changed: bool = False
    new_host: Player | None = None


@dataclass(frozen=True, slots=True)
class Connection:
    """One connection as the registry lists it (stats, admin)."""

    client_id: str
    user_id: str
    display_name: str
    instance_id: str
    client_label: str = ""
    connected_at_ms: int = 0
    muted: bool = False  # a moderator muted it: its chat and voice are dropped


@dataclass(slots=True)
class RoomView:
    """A room's connections in join order, its host and how many entities it holds."""

    room_id: str
    host_client_id: str = ""
    connections: list[Connection] = field(default_factory=list)
    entity_count: int = 0
    message_count: int = 0  # client messages handled in the room, on every instance


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """What renewing an instance found."""

    was_unknown: bool = False  # not registered: new, or swept while cut off
    expired: list[Departure] = field(default_factory=list)  # leases that ran out anyway


class Registry(Protocol):
    """What the hub needs from the registry (all calls may raise RegistryUnavailable)."""

    shared: bool  # True when other instances read and write the same registry

    async def join(self, arrival: Arrival, *, resume: bool = False) -> RoomSnapshot:
        """Record the connection, elect it host if the room has none; the room after.

        ``resume``: a connection of that client id still present (in its grace,
        on any instance) is moved to the arrival's instance as it is (``moved``).
        """

    async def leave(self, room_id: str, instance_id: str, client_id: str) -> Departure | None:
        """Remove the connection and its entities; ``None`` if it was already gone."""

    async def write(self, changes: dict[str, RoomChanges]) -> None:
        """Store changed players and entities, per room."""

    async def occupancy(self, room_id: str) -> int:
        """How many connections the room has, on all instances."""

    async def heartbeat(self, instance_id: str) -> Heartbeat:
        """Mark the instance alive and renew its connections' leases."""

    async def sweep(self) -> list[Departure]:
        """Remove the connections of instances whose lease expired."""

    async def retire(self, instance_id: str, keep: set[tuple[str, str]]) -> list[Departure]:
        """Remove the instance's connections except ``keep`` ((room, client) pairs)."""

    async def room_ids(self) -> list[str]:
        """The rooms with members, on any instance, sorted."""

    async def live_instances(self) -> int:
        """How many instances heart-beat within the lease (this one included)."""

    async def view(self, room_id: str) -> RoomView:
        """The room's connections, host and entity count."""

    async def set_muted(self, room_id: str, client_id: str, muted: bool) -> bool:
        """Record whether the connection is muted; ``False`` if it is not in the room."""

    async def entities(self, room_id: str) -> list[pb.EntitySnapshot]:
        """Every entity of the room (members' and the server's), as last written."""


@dataclass(slots=True)
class _Room:
    players: dict[str, Player] = field(default_factory=dict)  # join order
    arrivals: dict[str, Arrival] = field(default_factory=dict)
    entities: dict[str, dict[str, pb.EntitySnapshot]] = field(default_factory=dict)  # by owner
    host_client_id: str = ""
    messages: int = 0
    muted: set[str] = field(default_factory=set)


class InProcessRegistry:
    """The registry of a single process: plain dictionaries, nothing to sweep."""

    shared = False

    def __init__(self) -> None:
        self.rooms: dict[str, _Room] = {}

    async def join(self, arrival: Arrival, *, resume: bool = False) -> RoomSnapshot:
        """Record the connection; the first member of an empty room hosts it."""
        room = self.rooms.setdefault(arrival.room_id, _Room())
        client_id = arrival.player.client_id
        if resume and client_id in room.players:
            room.arrivals[client_id] = arrival
            return RoomSnapshot(
                host_client_id=room.host_client_id,
                players=[p.snapshot() for p in room.players.values()],
                entities=[e for owned in room.entities.values() for e in owned.values()],
                moved=True,
            )
        room.players[client_id] = arrival.player
        room.arrivals[client_id] = arrival
        if room.host_client_id not in room.players:
            room.host_client_id = client_id
        return RoomSnapshot(
            host_client_id=room.host_client_id,
            players=[p.snapshot() for p in room.players.values()],
            entities=[e for owned in room.entities.values() for e in owned.values()],
        )

    async def leave(self, room_id: str, instance_id: str, client_id: str) -> Departure | None:
        """Remove the connection; the longest-present member takes the host role."""
        room = self.rooms.get(room_id)
        if room is None or room.players.pop(client_id, None) is None:
            return None
        room.arrivals.pop(client_id, None)
        room.muted.discard(client_id)
        gone = Departure(room_id, client_id, list(room.entities.pop(client_id, {})))
        if room.host_client_id == client_id:
            successor = next(iter(room.players.values()), None)
            room.host_client_id = successor.client_id if successor else ""
            gone = Departure(room_id, client_id, gone.entity_ids, True, successor)
        if not room.players:
            del self.rooms[room_id]
        return gone

    async def write(self, changes: dict[str, RoomChanges]) -> None:
        """Keep the newest snapshots of changed players and entities."""
        for room_id, change in changes.items():
            room = self.rooms.get(room_id)
            if room is None:
                continue
            room.messages += change.messages
            for player in change.players:
                if player.client_id in room.players:
                    room.players[player.client_id] = player
            for entity in change.entities:
                if entity.owner_id in room.players or entity.owner_id == SERVER_OWNER:
                    owned = room.entities.setdefault(entity.owner_id, {})
                    owned[entity.entity_id] = entity.snapshot()
            for owner, entity_id in change.removed_entities:
                room.entities.get(owner, {}).pop(entity_id, None)

    async def occupancy(self, room_id: str) -> int:
        """Members of the room."""
        room = self.rooms.get(room_id)
        return len(room.players) if room else 0

    async def heartbeat(self, instance_id: str) -> Heartbeat:
        """Nothing to renew: the process is its own registry."""
        return Heartbeat()

    async def sweep(self) -> list[Departure]:
        """No other instance can die."""
        return []

    async def retire(self, instance_id: str, keep: set[tuple[str, str]]) -> list[Departure]:
        """Remove this process's connections except ``keep``."""
        gone = [
            (room_id, client_id)
            for room_id, room in self.rooms.items()
            for client_id, arrival in room.arrivals.items()
            if arrival.instance_id == instance_id and (room_id, client_id) not in keep
        ]
        departures = [await self.leave(room_id, instance_id, cid) for room_id, cid in gone]
        return [d for d in departures if d is not None]

    async def room_ids(self) -> list[str]:
        """The rooms with members, sorted."""
        return sorted(self.rooms)

    async def live_instances(self) -> int:
        """Only this process."""
        return 1

    async def view(self, room_id: str) -> RoomView:
        """The room's connections in join order."""
        room = self.rooms.get(room_id)
        if room is None:
            return RoomView(room_id)
        connections = [
            Connection(
                client_id=cid,
                user_id=room.players[cid].user_id,
                display_name=room.players[cid].display_name,
                instance_id=arrival.instance_id,
                client_label=arrival.client_label,
                connected_at_ms=arrival.connected_at_ms,
                muted=cid in room.muted,
            )
            for cid, arrival in room.arrivals.items()
        ]
        entities = sum(len(owned) for owned in room.entities.values())
        return RoomView(room_id, room.host_client_id, connections, entities, room.messages)

    async def set_muted(self, room_id: str, client_id: str, muted: bool) -> bool:
        """Record the mute of a member of the room; ``False`` if it is not one."""
        room = self.rooms.get(room_id)
        if room is None or client_id not in room.players:
            return False
        if muted:
            room.muted.add(client_id)
        else:
            room.muted.discard(client_id)
        return True

    async def entities(self, room_id: str) -> list[pb.EntitySnapshot]:
        """Every entity of the room."""
        room = self.rooms.get(room_id)
        if room is None:
            return []
        return [e for owned in room.entities.values() for e in owned.values()]
