"""The registry contract, run against the in-process registry and a real Redis.

The tests in the first part run twice (``memory`` and ``redis``). The Redis-only
tests after them cover what only the shared registry has: heartbeats, leases,
the sweep of dead instances, the key layout and an unreachable server.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
import redis

from presence.cluster.redis_registry import RedisRegistry
from presence.cluster.registry import (
    SERVER_OWNER,
    Arrival,
    Departure,
    InProcessRegistry,
    Registry,
    RegistryUnavailable,
    RoomSnapshot,
)
from presence.protocol import core_pb2 as pb
from presence.protocol.room import Entity, Player, RoomChanges
from tests.conftest import closed_redis_url

ROOM = "room-1"
OTHER_ROOM = "room-2"
EAST, WEST = "instance-east", "instance-west"
LONG_LEASE_SECONDS = 30.0  # nothing expires during a contract test
SHORT_LEASE_SECONDS = 0.3  # the sweep tests wait this out, polling
DEADLINE_SECONDS = 5.0  # generous: the machine may be busy; the waits end on a condition
POLL_SECONDS = 0.02

# --- helpers ---------------------------------------------------------------


def player(client_id: str, *, x: float = 0.0) -> Player:
    """A player with a recognisable display name and pose."""
    return Player(
        client_id=client_id,
        user_id=f"user-{client_id}",
        display_name=f"Name of {client_id}",
        position=pb.Vector3(x=x, y=1.0, z=2.0),
        rotation=pb.Quaternion(w=1.0),
    )


def entity(owner_id: str, entity_id: str, *, x: float = 0.0) -> Entity:
    """An entity owned by ``owner_id`` at ``x``."""
    return Entity(
        entity_id=entity_id,
        template_id="cube",
        owner_id=owner_id,
        components={"color": "red"},
        position=pb.Vector3(x=x),
    )


async def join(
    registry: Registry, client_id: str, *, room: str = ROOM, instance: str = EAST
) -> RoomSnapshot:
    """Join ``client_id`` to ``room`` from ``instance``."""
    return await registry.join(
        Arrival(room_id=room, instance_id=instance, player=player(client_id))
    )


def names(snapshot: RoomSnapshot) -> list[tuple[str, str]]:
    """The snapshot's players as (client id, display name), in its order."""
    return [(p.client_id, p.display_name) for p in snapshot.players]


def entity_poses(snapshot: RoomSnapshot) -> set[tuple[str, str, float]]:
    """The snapshot's entities as (id, owner, x)."""
    return {(e.id, e.owner_id, e.position.x) for e in snapshot.entities}


def by_client(departures: list[Departure]) -> dict[str, Departure]:
    """Departures keyed by client id (each client must leave once)."""
    keyed = {d.client_id: d for d in departures}
    assert len(keyed) == len(departures), departures
    return keyed


def final_host(departures: list[Departure]) -> str:
    """The host a chain of hand-overs ends with ('' when none or the room emptied)."""
    host = ""
    for departure in departures:
        if departure.host_changed:
            host = departure.new_host.client_id if departure.new_host else ""
    return host


# --- fixtures --------------------------------------------------------------


@pytest.fixture
async def make_redis(
    redis_url: str, redis_prefix: str, redis_keys: redis.Redis
) -> AsyncIterator[Callable[[float], RedisRegistry]]:
    """Build Redis registries on the test's prefix (one per "instance"); close them after."""
    made: list[RedisRegistry] = []

    def make(lease_seconds: float) -> RedisRegistry:
        made.append(RedisRegistry(redis_url, prefix=redis_prefix, lease_seconds=lease_seconds))
        return made[-1]

    yield make
    for registry in made:
        await registry.aclose()


@pytest.fixture(params=["memory", "redis"])
def registry(request: pytest.FixtureRequest) -> Registry:
    """The registry under test: in-process, or Redis with a lease nothing outlives."""
    if request.param == "memory":
        return InProcessRegistry()
    make: Callable[[float], RedisRegistry] = request.getfixturevalue("make_redis")
    return make(LONG_LEASE_SECONDS)


@pytest.fixture
def peer(registry: Registry, request: pytest.FixtureRequest) -> Registry:
    """A second instance's handle on the same registry (its own Redis connections)."""
    if not isinstance(registry, RedisRegistry):
        return registry
    make: Callable[[float], RedisRegistry] = request.getfixturevalue("make_redis")
    return make(LONG_LEASE_SECONDS)


# --- join ------------------------------------------------------------------


async def test_first_joiner_hosts_the_room(registry: Registry) -> None:
    """An empty room's first member becomes its host."""
    snapshot = await join(registry, "alice")

    assert snapshot.host_client_id == "alice"


async def test_later_joiners_get_the_same_host(registry: Registry, peer: Registry) -> None:
    """Joiners on any instance are told the first member hosts."""
    await join(registry, "alice")
    bob = await join(peer, "bob", instance=WEST)
    carol = await join(registry, "carol")

    assert (bob.host_client_id, carol.host_client_id) == ("alice", "alice")


async def test_snapshot_lists_players_in_join_order_with_names(
    registry: Registry, peer: Registry
) -> None:
    """The joiner's snapshot lists every member, itself last, with display names."""
    await join(registry, "alice")
    await join(peer, "bob", instance=WEST)
    snapshot = await join(registry, "carol")

    assert names(snapshot) == [
        ("alice", "Name of alice"),
        ("bob", "Name of bob"),
        ("carol", "Name of carol"),
    ]


async def test_written_entities_appear_in_later_snapshots(registry: Registry) -> None:
    """Entities written for a member are in the next joiner's snapshot, owner and pose too."""
    await join(registry, "alice")
    await registry.write(
        {ROOM: RoomChanges(entities=[entity("alice", "e1", x=1.5), entity("alice", "e2", x=-3)])}
    )

    snapshot = await join(registry, "bob")

    assert entity_poses(snapshot) == {("e1", "alice", 1.5), ("e2", "alice", -3.0)}
    assert {e.components["color"] for e in snapshot.entities} == {"red"}


async def test_written_player_poses_appear_in_later_snapshots(registry: Registry) -> None:
    """A member's pose written later replaces the pose it joined with."""
    await join(registry, "alice")
    await registry.write({ROOM: RoomChanges(players=[player("alice", x=7.25)])})

    snapshot = await join(registry, "bob")

    poses = {p.client_id: p.position.x for p in snapshot.players}
    assert poses == {"alice": 7.25, "bob": 0.0}
    assert names(snapshot)[0] == ("alice", "Name of alice")


async def test_concurrent_joins_from_two_instances_agree_on_one_host(
    registry: Registry, peer: Registry
) -> None:
    """Many joins at once, from two instances, elect exactly one host every snapshot names."""
    clients = [f"client-{n:02d}" for n in range(40)]
    snapshots = await asyncio.gather(
        *(
            join(registry, cid) if n % 2 else join(peer, cid, instance=WEST)
            for n, cid in enumerate(clients)
        )
    )

    hosts = {s.host_client_id for s in snapshots}
    assert len(hosts) == 1
    (host,) = hosts
    assert host in clients
    latecomer = await join(registry, "latecomer")
    assert latecomer.host_client_id == host
    assert names(latecomer)[0][0] == host  # the host is the longest-present member
    assert await registry.occupancy(ROOM) == len(clients) + 1


# --- leave -----------------------------------------------------------------


async def test_leave_reports_the_clients_entities(registry: Registry) -> None:
    """The departure names the room, the client and the ids of the entities it owned."""
    await join(registry, "alice")
    await join(registry, "bob")
    await registry.write(
        {
            ROOM: RoomChanges(
                entities=[entity("alice", "e1"), entity("alice", "e2"), entity("bob", "e3")]
            )
        }
    )

    departure = await registry.leave(ROOM, EAST, "alice")

    assert departure is not None
    assert (departure.room_id, departure.client_id) == (ROOM, "alice")
    assert sorted(departure.entity_ids) == ["e1", "e2"]


async def test_leave_removes_the_clients_entities(registry: Registry) -> None:
    """A departed member's entities are gone from later snapshots; others' stay."""
    await join(registry, "alice")
    await join(registry, "bob")
    await registry.write({ROOM: RoomChanges(entities=[entity("alice", "e1"), entity("bob", "e3")])})
    await registry.leave(ROOM, EAST, "alice")

    snapshot = await join(registry, "carol")

    assert entity_poses(snapshot) == {("e3", "bob", 0.0)}


async def test_host_leaving_hands_host_to_longest_present_member(
    registry: Registry, peer: Registry
) -> None:
    """When the host leaves, the member who joined next hosts, on whichever instance."""
    await join(registry, "alice")
    await join(peer, "bob", instance=WEST)
    await join(registry, "carol")

    departure = await registry.leave(ROOM, EAST, "alice")

    assert departure is not None and departure.host_changed
    assert departure.new_host is not None
    assert (departure.new_host.client_id, departure.new_host.display_name) == (
        "bob",
        "Name of bob",
    )
    assert (await join(registry, "dave")).host_client_id == "bob"


async def test_non_host_leaving_keeps_the_host(registry: Registry) -> None:
    """A member who is not host leaves without a hand-over."""
    await join(registry, "alice")
    await join(registry, "bob")
    await join(registry, "carol")

    departure = await registry.leave(ROOM, EAST, "bob")

    assert departure is not None
    assert (departure.host_changed, departure.new_host) == (False, None)
    snapshot = await join(registry, "dave")
    assert snapshot.host_client_id == "alice"
    assert [cid for cid, _ in names(snapshot)] == ["alice", "carol", "dave"]


async def test_last_member_leaving_empties_the_room(registry: Registry) -> None:
    """The last member's departure changes the host to no one; the room is empty."""
    await join(registry, "alice")

    departure = await registry.leave(ROOM, EAST, "alice")

    assert departure is not None
    assert (departure.host_changed, departure.new_host) == (True, None)
    assert await registry.occupancy(ROOM) == 0
    assert (await join(registry, "bob")).host_client_id == "bob"


async def test_leaving_twice_returns_none(registry: Registry) -> None:
    """A second leave of the same connection, or of an unknown one, is ``None``."""
    await join(registry, "alice")
    await join(registry, "bob")
    assert await registry.leave(ROOM, EAST, "alice") is not None

    assert await registry.leave(ROOM, EAST, "alice") is None
    assert await registry.leave(ROOM, EAST, "nobody") is None
    assert await registry.leave("no-such-room", EAST, "bob") is None
    assert await registry.occupancy(ROOM) == 1


# --- write -----------------------------------------------------------------


async def test_late_pose_write_does_not_bring_back_a_departed_player(registry: Registry) -> None:
    """A pose written after its player left creates no ghost member."""
    await join(registry, "alice")
    await join(registry, "bob")
    await registry.leave(ROOM, EAST, "alice")

    await registry.write({ROOM: RoomChanges(players=[player("alice", x=9.0)])})

    snapshot = await join(registry, "carol")
    assert [cid for cid, _ in names(snapshot)] == ["bob", "carol"]
    assert await registry.occupancy(ROOM) == 2


async def test_late_entity_write_of_a_departed_owner_is_dropped(registry: Registry) -> None:
    """An entity written after its owner left does not appear in snapshots."""
    await join(registry, "alice")
    await join(registry, "bob")
    await registry.leave(ROOM, EAST, "alice")

    await registry.write({ROOM: RoomChanges(entities=[entity("alice", "late")])})

    assert (await join(registry, "carol")).entities == []


async def test_server_entities_outlive_their_writer_and_go_with_the_room(
    registry: Registry,
) -> None:
    """Entities owned by "server" stay while anyone is present, then go with the room."""
    await join(registry, "alice")
    await join(registry, "bob")
    await registry.write({ROOM: RoomChanges(entities=[entity(SERVER_OWNER, "sign", x=4)])})
    await registry.leave(ROOM, EAST, "alice")

    assert entity_poses(await join(registry, "carol")) == {("sign", SERVER_OWNER, 4.0)}
    assert [(e.id, e.owner_id) for e in await registry.entities(ROOM)] == [("sign", SERVER_OWNER)]
    assert (await registry.view(ROOM)).entity_count == 1

    for client_id in ("bob", "carol"):
        await registry.leave(ROOM, EAST, client_id)
    assert await registry.entities(ROOM) == []
    assert (await join(registry, "dave")).entities == []


async def test_a_server_entity_written_to_an_empty_room_is_dropped(registry: Registry) -> None:
    """No member, no room: a late server write does not bring it back."""
    await registry.write({ROOM: RoomChanges(entities=[entity(SERVER_OWNER, "late")])})

    assert await registry.entities(ROOM) == []


async def test_entities_lists_members_and_server_entities(registry: Registry) -> None:
    """entities() reads every entity of the room with its owner."""
    await join(registry, "alice")
    await registry.write(
        {ROOM: RoomChanges(entities=[entity("alice", "hat"), entity(SERVER_OWNER, "lamp")])}
    )

    listed = {(e.id, e.owner_id) for e in await registry.entities(ROOM)}

    assert listed == {("hat", "alice"), ("lamp", SERVER_OWNER)}


async def test_late_write_to_an_emptied_room_leaves_it_empty(registry: Registry) -> None:
    """Writes for a room whose members all left do not revive it."""
    await join(registry, "alice")
    await registry.leave(ROOM, EAST, "alice")

    await registry.write(
        {ROOM: RoomChanges(players=[player("alice")], entities=[entity("alice", "e1")])}
    )

    assert await registry.occupancy(ROOM) == 0
    snapshot = await join(registry, "bob")
    assert (snapshot.host_client_id, names(snapshot), snapshot.entities) == (
        "bob",
        [("bob", "Name of bob")],
        [],
    )


async def test_removed_entities_disappear_from_snapshots(registry: Registry) -> None:
    """``removed_entities`` deletes exactly the named (owner, entity) pairs."""
    await join(registry, "alice")
    await registry.write(
        {ROOM: RoomChanges(entities=[entity("alice", "e1"), entity("alice", "e2", x=2)])}
    )

    await registry.write({ROOM: RoomChanges(removed_entities=[("alice", "e1")])})

    assert entity_poses(await join(registry, "bob")) == {("e2", "alice", 2.0)}


# --- occupancy and retire --------------------------------------------------


async def test_occupancy_counts_members_on_all_instances(
    registry: Registry, peer: Registry
) -> None:
    """Both instances count every member of the room, and only of that room."""
    await join(registry, "alice")
    await join(peer, "bob", instance=WEST)
    await join(peer, "carol", room=OTHER_ROOM, instance=WEST)

    assert await registry.occupancy(ROOM) == 2
    assert await peer.occupancy(ROOM) == 2
    assert await registry.occupancy(OTHER_ROOM) == 1
    assert await registry.occupancy("empty-room") == 0


async def test_retire_removes_the_instances_connections_except_keep(
    registry: Registry, peer: Registry
) -> None:
    """Retire returns a departure (with entity ids) for each of the instance's other members."""
    await join(registry, "alice")
    await join(peer, "bob", instance=WEST)
    await join(registry, "carol")
    await join(registry, "dave", room=OTHER_ROOM)
    await join(registry, "erin", room=OTHER_ROOM)
    await registry.write({ROOM: RoomChanges(entities=[entity("carol", "c1")])})

    departures = by_client(await registry.retire(EAST, {(OTHER_ROOM, "erin")}))

    assert set(departures) == {"alice", "carol", "dave"}
    assert departures["carol"].entity_ids == ["c1"]
    assert departures["dave"].room_id == OTHER_ROOM
    assert await registry.occupancy(ROOM) == 1
    assert names(await join(peer, "frank", room=OTHER_ROOM, instance=WEST))[0][0] == "erin"


async def test_retire_hands_host_to_another_instances_member(
    registry: Registry, peer: Registry
) -> None:
    """A retired host's room is handed to a member of another instance, who stays."""
    await join(registry, "alice")
    await join(peer, "bob", instance=WEST)
    await join(registry, "carol")

    departures = by_client(await registry.retire(EAST, set()))

    assert departures["alice"].host_changed
    assert final_host(list(departures.values())) == "bob"
    snapshot = await join(peer, "dave", instance=WEST)
    assert snapshot.host_client_id == "bob"
    assert [cid for cid, _ in names(snapshot)] == ["bob", "dave"]


# --- the in-process registry -----------------------------------------------


async def test_in_process_registry_sweeps_nothing() -> None:
    """One process has no other instance to lose: sweep removes nobody."""
    registry = InProcessRegistry()
    await join(registry, "alice")

    assert await registry.sweep() == []
    assert await registry.occupancy(ROOM) == 1


async def test_in_process_registry_heartbeat_reports_nothing_new() -> None:
    """The in-process heartbeat never reports a newly registered instance or an expiry."""
    registry = InProcessRegistry()
    await join(registry, "alice", instance=EAST)

    assert (await registry.heartbeat(EAST)).was_unknown is False
    assert (await registry.heartbeat(EAST)).was_unknown is False
    assert (await registry.heartbeat(EAST)).expired == []


# --- Redis only: heartbeat, lease and sweep --------------------------------


async def sweep_until_departures(
    registry: RedisRegistry, *, live: str, live_clients: set[str]
) -> list[Departure]:
    """Heartbeat ``live`` and sweep until something is swept; fail past the deadline."""
    deadline = time.monotonic() + DEADLINE_SECONDS
    while True:
        await registry.heartbeat(live)
        departures = await registry.sweep()
        assert not {d.client_id for d in departures} & live_clients, departures
        if departures:
            return departures
        assert time.monotonic() < deadline, "nothing was swept before the deadline"
        await asyncio.sleep(POLL_SECONDS)


def values(client: redis.Redis, key: bytes) -> list[bytes]:
    """Everything stored under ``key``, whatever its type."""
    kind = client.type(key)
    if kind == b"string":
        return [client.get(key) or b""]
    if kind == b"set":
        return list(client.smembers(key))
    if kind == b"zset":
        return list(client.zrange(key, 0, -1))
    if kind == b"hash":
        stored = client.hgetall(key)
        return [*stored.keys(), *stored.values()]
    raise AssertionError(f"unexpected type {kind!r} of {key!r}")


async def test_heartbeat_reports_a_new_instance_once(
    make_redis: Callable[[float], RedisRegistry],
) -> None:
    """The first heartbeat of an instance registers it; later ones only renew."""
    registry = make_redis(LONG_LEASE_SECONDS)

    assert (await registry.heartbeat(EAST)).was_unknown is True
    assert (await registry.heartbeat(EAST)).was_unknown is False
    assert (await registry.heartbeat(WEST)).was_unknown is True


async def test_swept_instance_is_unknown_to_its_next_heartbeat(
    make_redis: Callable[[float], RedisRegistry],
) -> None:
    """An instance swept while silent learns it from its next heartbeat (True)."""
    registry = make_redis(SHORT_LEASE_SECONDS)
    assert (await registry.heartbeat(EAST)).was_unknown is True
    await join(registry, "doomed-1", instance=EAST)

    await sweep_until_departures(registry, live=WEST, live_clients=set())

    assert (await registry.heartbeat(EAST)).was_unknown is True
    assert (await registry.heartbeat(EAST)).was_unknown is False


async def test_sweep_removes_the_connections_of_a_silent_instance(
    make_redis: Callable[[float], RedisRegistry],
) -> None:
    """Past the lease, a silent instance's members leave, with their entities and host role."""
    registry = make_redis(SHORT_LEASE_SECONDS)
    await join(registry, "doomed-1", instance=EAST)
    await join(registry, "alive-1", instance=WEST)
    await join(registry, "doomed-2", instance=EAST)
    await registry.write({ROOM: RoomChanges(entities=[entity("doomed-1", "d1-thing")])})

    departures = by_client(
        await sweep_until_departures(registry, live=WEST, live_clients={"alive-1"})
    )

    assert set(departures) == {"doomed-1", "doomed-2"}
    first = departures["doomed-1"]
    assert (first.room_id, first.entity_ids, first.host_changed) == (ROOM, ["d1-thing"], True)
    assert first.new_host is not None and first.new_host.client_id == "alive-1"
    assert departures["doomed-2"].host_changed is False
    assert await registry.occupancy(ROOM) == 1
    snapshot = await join(registry, "newcomer", instance=WEST)
    assert (snapshot.host_client_id, snapshot.entities) == ("alive-1", [])


async def test_sweep_spares_an_instance_that_keeps_heart_beating(
    make_redis: Callable[[float], RedisRegistry],
) -> None:
    """An instance that joined first but heart-beats is never swept, however long it lives."""
    registry = make_redis(SHORT_LEASE_SECONDS)
    await join(registry, "alive-1", instance=WEST)
    await join(registry, "alive-2", room=OTHER_ROOM, instance=WEST)
    await join(registry, "doomed-1", instance=EAST)

    departures = await sweep_until_departures(
        registry, live=WEST, live_clients={"alive-1", "alive-2"}
    )
    # Keep going for two more leases: still nobody from the live instance.
    until = time.monotonic() + 2 * SHORT_LEASE_SECONDS
    while time.monotonic() < until:
        await registry.heartbeat(WEST)
        departures += await registry.sweep()
        await asyncio.sleep(POLL_SECONDS)

    assert [d.client_id for d in departures] == ["doomed-1"]
    assert await registry.occupancy(ROOM) == 1
    assert await registry.occupancy(OTHER_ROOM) == 1


async def test_sweep_leaves_no_key_mentioning_the_dead_instance(
    make_redis: Callable[[float], RedisRegistry], redis_keys: redis.Redis, redis_prefix: str
) -> None:
    """After the sweep no key name or stored value mentions the dead instance or its clients."""
    registry = make_redis(SHORT_LEASE_SECONDS)
    dead = "instance-doomed"
    await join(registry, "doomed-1", instance=dead)
    await join(registry, "alive-1", instance=WEST)
    await join(registry, "doomed-2", room=OTHER_ROOM, instance=dead)
    await registry.write(
        {
            ROOM: RoomChanges(entities=[entity("doomed-1", "e1"), entity("alive-1", "e2")]),
            OTHER_ROOM: RoomChanges(entities=[entity("doomed-2", "e3")]),
        }
    )

    await sweep_until_departures(registry, live=WEST, live_clients={"alive-1"})

    keys = list(redis_keys.scan_iter(match=f"{redis_prefix}:*"))
    assert keys, "the live instance's keys should remain"
    for key in keys:
        stored = [key.removeprefix(redis_prefix.encode()), *values(redis_keys, key)]
        for needle in (b"doomed", OTHER_ROOM.encode()):
            assert not [v for v in stored if needle in v], (key, stored)


async def test_connection_hash_carries_a_lease(
    make_redis: Callable[[float], RedisRegistry], redis_keys: redis.Redis, redis_prefix: str
) -> None:
    """A joined connection's hash expires unless renewed (TTL twice the lease)."""
    registry = make_redis(5.0)
    await join(registry, "alice")

    ttl = redis_keys.pttl(f"{redis_prefix}:room:{ROOM}:conn:alice")

    assert 0 < ttl <= 10_000


async def test_heartbeat_renews_the_connection_lease(
    make_redis: Callable[[float], RedisRegistry], redis_keys: redis.Redis, redis_prefix: str
) -> None:
    """A heartbeat pushes the instance's connection hashes' expiry back out."""
    registry = make_redis(5.0)
    await join(registry, "alice")
    conn = f"{redis_prefix}:room:{ROOM}:conn:alice"
    redis_keys.pexpire(conn, 1_000)  # as if most of the lease had passed

    await registry.heartbeat(EAST)

    assert redis_keys.pttl(conn) > 5_000


async def test_keys_follow_the_documented_layout(
    make_redis: Callable[[float], RedisRegistry], redis_keys: redis.Redis, redis_prefix: str
) -> None:
    """Room keys live under ``{prefix}:room:{room}:``; the rest are the three index keys."""
    registry = make_redis(LONG_LEASE_SECONDS)
    await join(registry, "alice")
    await join(registry, "bob", instance=WEST)
    await registry.write({ROOM: RoomChanges(entities=[entity("alice", "e1")])})

    keys = {k.decode() for k in redis_keys.scan_iter(match=f"{redis_prefix}:*")}

    room = f"{redis_prefix}:room:{ROOM}"
    assert keys == {
        f"{redis_prefix}:instances",
        f"{redis_prefix}:instance:{EAST}:conns",
        f"{redis_prefix}:instance:{WEST}:conns",
        f"{redis_prefix}:rooms",
        f"{room}:members",
        f"{room}:conn:alice",
        f"{room}:conn:bob",
        f"{room}:entities:alice",
        f"{room}:host",
        f"{room}:seq",
    }


async def test_last_member_leaving_deletes_the_rooms_keys(
    make_redis: Callable[[float], RedisRegistry], redis_keys: redis.Redis, redis_prefix: str
) -> None:
    """Once the last member left, no key of the room remains, nor the room in the index."""
    registry = make_redis(LONG_LEASE_SECONDS)
    await join(registry, "alice")
    await join(registry, "bob", instance=WEST)
    await registry.write({ROOM: RoomChanges(entities=[entity("alice", "e1"), entity("bob", "e2")])})

    await registry.leave(ROOM, EAST, "alice")
    await registry.leave(ROOM, WEST, "bob")

    assert list(redis_keys.scan_iter(match=f"{redis_prefix}:room:{ROOM}:*")) == []
    assert not redis_keys.sismember(f"{redis_prefix}:rooms", ROOM)
    for instance in (EAST, WEST):
        assert not redis_keys.exists(f"{redis_prefix}:instance:{instance}:conns")


async def test_late_writes_store_nothing_for_departed_members(
    make_redis: Callable[[float], RedisRegistry], redis_keys: redis.Redis, redis_prefix: str
) -> None:
    """A pose or entity written after its member left creates no key for it."""
    registry = make_redis(LONG_LEASE_SECONDS)
    await join(registry, "doomed-1")
    await join(registry, "alive-1")
    await registry.leave(ROOM, EAST, "doomed-1")

    await registry.write(
        {ROOM: RoomChanges(players=[player("doomed-1")], entities=[entity("doomed-1", "e1")])}
    )

    keys = [k.decode() for k in redis_keys.scan_iter(match=f"{redis_prefix}:*")]
    assert [k for k in keys if "doomed" in k] == []


async def test_a_late_mute_creates_no_key_for_a_departed_member(
    make_redis: Callable[[float], RedisRegistry], redis_keys: redis.Redis, redis_prefix: str
) -> None:
    """The mute is written into the connection's hash only while the hash exists."""
    registry = make_redis(LONG_LEASE_SECONDS)
    await join(registry, "doomed-1")
    await join(registry, "alive-1")
    await registry.leave(ROOM, EAST, "doomed-1")

    await registry.set_muted(ROOM, "doomed-1", True)

    keys = [k.decode() for k in redis_keys.scan_iter(match=f"{redis_prefix}:*")]
    assert [k for k in keys if "doomed" in k] == []


async def test_the_mute_lives_in_the_connection_hash_and_keeps_its_lease(
    make_redis: Callable[[float], RedisRegistry], redis_keys: redis.Redis, redis_prefix: str
) -> None:
    """``muted`` is a field of ``conn:{client}``, whose lease the write leaves alone."""
    registry = make_redis(LONG_LEASE_SECONDS)
    await join(registry, "alice")
    conn = f"{redis_prefix}:room:{ROOM}:conn:alice"

    await registry.set_muted(ROOM, "alice", True)

    assert redis_keys.hget(conn, "muted") == b"1"
    assert redis_keys.pttl(conn) > 5_000


OPERATIONS: dict[str, Callable[[RedisRegistry], Awaitable[object]]] = {
    "join": lambda r: join(r, "alice"),
    "leave": lambda r: r.leave(ROOM, EAST, "alice"),
    "write": lambda r: r.write({ROOM: RoomChanges(players=[player("alice")])}),
    "occupancy": lambda r: r.occupancy(ROOM),
    "heartbeat": lambda r: r.heartbeat(EAST),
    "sweep": lambda r: r.sweep(),
    "retire": lambda r: r.retire(EAST, set()),
    "set_muted": lambda r: r.set_muted(ROOM, "alice", True),
}


@pytest.mark.parametrize("operation", OPERATIONS)
async def test_unreachable_redis_raises_registry_unavailable(operation: str) -> None:
    """Every call on a Redis nobody answers raises RegistryUnavailable."""
    registry = RedisRegistry(closed_redis_url(), prefix="unreachable", lease_seconds=1.0)
    try:
        with pytest.raises(RegistryUnavailable):
            await OPERATIONS[operation](registry)
    finally:
        await registry.aclose()


async def test_sweep_hands_the_host_role_once_to_a_live_member(
    make_redis: Callable[[float], RedisRegistry],
) -> None:
    """Host and next-in-line die together: one hand-over, straight to the live member."""
    registry = make_redis(SHORT_LEASE_SECONDS)
    await join(registry, "doomed-1", instance=EAST)
    await join(registry, "doomed-2", instance=EAST)
    await join(registry, "alive-1", instance=WEST)

    departures = await sweep_until_departures(registry, live=WEST, live_clients={"alive-1"})

    handovers = [d for d in departures if d.host_changed]
    assert [(d.client_id, d.new_host and d.new_host.client_id) for d in handovers] == [
        ("doomed-1", "alive-1")
    ]


async def test_a_join_after_a_sweep_tells_the_instance_it_was_swept(
    make_redis: Callable[[float], RedisRegistry],
) -> None:
    """A join re-registers a swept instance, so it reports that the instance was unknown."""
    registry = make_redis(SHORT_LEASE_SECONDS)
    assert (await join(registry, "doomed-1", instance=EAST)).instance_was_unknown is True
    assert (await join(registry, "doomed-2", instance=EAST)).instance_was_unknown is False
    await sweep_until_departures(registry, live=WEST, live_clients=set())

    assert (await join(registry, "late-1", instance=EAST)).instance_was_unknown is True


async def test_a_connection_whose_lease_ran_out_leaves_at_the_next_heartbeat(
    make_redis: Callable[[float], RedisRegistry], redis_url: str
) -> None:
    """A stalled instance's expired connection hashes leave no ghost member or host."""
    registry = make_redis(SHORT_LEASE_SECONDS)
    await join(registry, "stale-1", instance=EAST)
    client = redis.Redis.from_url(redis_url)
    conn = f"{registry.prefix}:room:{ROOM}:conn:stale-1"
    deadline = time.monotonic() + DEADLINE_SECONDS
    while client.exists(conn):
        assert time.monotonic() < deadline, "the connection hash never expired"
        await asyncio.sleep(POLL_SECONDS)
    client.close()

    beat = await registry.heartbeat(EAST)

    assert [d.client_id for d in beat.expired] == ["stale-1"]
    assert await registry.occupancy(ROOM) == 0
    assert (await join(registry, "fresh-1", instance=WEST)).host_client_id == "fresh-1"


async def test_room_ids_list_the_rooms_with_members(registry: Registry, peer: Registry) -> None:
    """Rooms of every instance are listed, sorted; an emptied room is not."""
    await join(registry, "alice", room=OTHER_ROOM, instance=EAST)
    await join(peer, "bob", room=ROOM, instance=WEST)
    await join(peer, "carol", room="room-3", instance=WEST)
    await peer.leave("room-3", WEST, "carol")

    assert await registry.room_ids() == [ROOM, OTHER_ROOM]


async def test_view_lists_connections_in_join_order_with_host_and_entities(
    registry: Registry, peer: Registry
) -> None:
    """A room's view: who is connected where, since when, the host, the entity count."""
    await registry.join(
        Arrival(ROOM, EAST, player("alice"), client_label="quest-3", connected_at_ms=1_000)
    )
    await peer.join(Arrival(ROOM, WEST, player("bob"), connected_at_ms=2_000))
    await registry.write({ROOM: RoomChanges(entities=[entity("alice", "a1"), entity("bob", "b1")])})

    view = await peer.view(ROOM)

    assert (view.room_id, view.host_client_id, view.entity_count) == (ROOM, "alice", 2)
    assert [
        (c.client_id, c.user_id, c.instance_id, c.client_label, c.connected_at_ms)
        for c in view.connections
    ] == [
        ("alice", player("alice").user_id, EAST, "quest-3", 1_000),
        ("bob", player("bob").user_id, WEST, "", 2_000),
    ]
    assert view.connections[0].display_name == player("alice").display_name


async def test_view_of_an_unknown_room_is_empty(registry: Registry) -> None:
    """No members, no host, nothing: not an error."""
    view = await registry.view("nobody-here")
    assert (view.host_client_id, view.connections, view.entity_count) == ("", [], 0)


async def test_a_mute_recorded_by_one_instance_shows_in_every_view(
    registry: Registry, peer: Registry
) -> None:
    """Muted connections are marked for whoever reads the room; an unmute clears it."""
    await join(registry, "alice", instance=EAST)
    await join(peer, "bob", instance=WEST)

    assert await registry.set_muted(ROOM, "bob", True) is True

    muted = {c.client_id: c.muted for c in (await peer.view(ROOM)).connections}
    assert muted == {"alice": False, "bob": True}
    assert await peer.set_muted(ROOM, "bob", False) is True
    assert [c.muted for c in (await registry.view(ROOM)).connections] == [False, False]


async def test_muting_a_connection_that_is_not_in_the_room_records_nothing(
    registry: Registry,
) -> None:
    """A mute that arrives after its target left (or names nobody) changes no view."""
    await join(registry, "alice")
    await join(registry, "bob")
    await registry.leave(ROOM, EAST, "bob")

    assert await registry.set_muted(ROOM, "bob", True) is False
    assert await registry.set_muted("nobody-here", "alice", True) is False
    assert [(c.client_id, c.muted) for c in (await registry.view(ROOM)).connections] == [
        ("alice", False)
    ]


async def test_a_muted_connection_that_leaves_and_a_new_one_with_its_id_is_not_muted(
    registry: Registry,
) -> None:
    """The mark goes with the connection: nothing of it survives the leave."""
    await join(registry, "alice")
    await join(registry, "bob")
    await registry.set_muted(ROOM, "bob", True)
    await registry.leave(ROOM, EAST, "bob")

    await join(registry, "bob")

    assert [c.muted for c in (await registry.view(ROOM)).connections] == [False, False]


async def test_view_counts_the_messages_written_by_every_instance(
    registry: Registry, peer: Registry
) -> None:
    """Message counts from every instance add up; they go with the room."""
    await join(registry, "alice", instance=EAST)
    await join(peer, "bob", instance=WEST)
    await registry.write({ROOM: RoomChanges(messages=5)})
    await peer.write({ROOM: RoomChanges(messages=2)})

    assert (await registry.view(ROOM)).message_count == 7

    await registry.leave(ROOM, EAST, "alice")
    await peer.leave(ROOM, WEST, "bob")
    await join(registry, "carol", instance=EAST)
    assert (await registry.view(ROOM)).message_count == 0
