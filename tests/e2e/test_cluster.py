"""End to end: one room across two daphne instances sharing a Redis registry (issue 5).

Clients of one room on instances A and B see each other as on one server: JOIN,
poses, chat, entities, LEAVE and one host. The registry in Redis is read
directly to wait for what has no push signal (a pose synced to Redis).
Each test uses rooms of its own, so the module shares one pair of servers.
"""

from __future__ import annotations

import asyncio

import pytest

from presence.protocol import pb
from tests.clients.live import Client, ClientPool, chat, is_event, pose, wait_until
from tests.e2e.conftest import Cluster

pytestmark = pytest.mark.e2e

# The registry writes poses at PRESENCE_POSE_SYNC_HZ (4 Hz by default): 0.25 s.
POSE_SYNC_SECONDS = 3.0


async def join_pair(clients: ClientPool, cluster: Cluster, room: str) -> tuple[Client, Client]:
    """Alice joins on A, then Bob on B; returns once Alice has seen Bob's JOIN."""
    alice = await clients.join(cluster.a.ws_url, room, "alice", display_name="Alice")
    bob = await clients.join(cluster.b.ws_url, room, "bob", display_name="Bob")
    await alice.recv_until(is_event(pb.PRESENCE_JOIN, bob.client_id))
    return alice, bob


async def test_join_poses_and_chat_cross_instances_both_ways(
    cluster: Cluster, clients: ClientPool
) -> None:
    alice = await clients.join(cluster.a.ws_url, "cross-basic", "alice", display_name="Alice")
    bob = await clients.join(cluster.b.ws_url, "cross-basic", "bob", display_name="Bob")
    assert [(p.client_id, p.display_name) for p in bob.hello.initial_state.players] == [
        (alice.client_id, "Alice")
    ]
    joined = await alice.recv()
    assert (joined.type, joined.presence_event.event_type) == (
        pb.PRESENCE_JOIN,
        pb.PresenceEventType.JOIN,
    )
    assert (joined.presence_event.client_id, joined.presence_event.data.display_name) == (
        bob.client_id,
        "Bob",
    )

    await alice.send(pose(1.5))
    moved = await bob.recv_kind("position_update")
    assert (moved.type, moved.sender_id, moved.position_update.position.x) == (
        pb.POSITION_UPDATE,
        alice.client_id,
        1.5,
    )
    await bob.send(pose(-2.0))
    moved = await alice.recv_kind("position_update")
    assert (moved.sender_id, moved.position_update.position.x) == (bob.client_id, -2.0)

    await alice.send(chat("hello from A"))
    said = await bob.recv_kind("chat_message")
    assert (said.type, said.chat_message.from_client_id, said.chat_message.message) == (
        pb.CHAT_MESSAGE,
        alice.client_id,
        "hello from A",
    )
    assert said.seq > 0
    await bob.send(chat("hello from B"))
    said = await alice.recv_kind("chat_message")
    assert (said.chat_message.from_client_id, said.chat_message.message) == (
        bob.client_id,
        "hello from B",
    )


async def test_entities_spawn_update_despawn_cross_instances(
    cluster: Cluster, clients: ClientPool
) -> None:
    alice, bob = await join_pair(clients, cluster, "cross-entities")

    lamp = pb.EntitySpawn(entity_id="lamp", template_id="lamp", components={"color": "red"})
    await alice.send(pb.Message(entity_spawn=lamp))
    spawned = await bob.recv_kind("entity_spawn")
    assert spawned.type == pb.ENTITY_SPAWN
    assert (spawned.entity_spawn.entity_id, spawned.entity_spawn.owner_id) == (
        "lamp",
        alice.client_id,
    )
    assert dict(spawned.entity_spawn.components) == {"color": "red"}

    update = pb.EntityUpdate(entity_id="lamp", components={"color": b"blue"})
    await alice.send(pb.Message(entity_update=update))
    updated = await bob.recv_kind("entity_update")
    assert updated.type == pb.ENTITY_UPDATE
    assert (updated.entity_update.entity_id, dict(updated.entity_update.components)) == (
        "lamp",
        {"color": b"blue"},
    )

    chair = pb.EntitySpawn(entity_id="chair", template_id="chair")
    await bob.send(pb.Message(entity_spawn=chair))
    spawned = await alice.recv_kind("entity_spawn")
    assert (spawned.entity_spawn.entity_id, spawned.entity_spawn.owner_id) == (
        "chair",
        bob.client_id,
    )

    await alice.send(pb.Message(entity_despawn=pb.EntityDespawn(entity_id="lamp")))
    despawned = await bob.recv_kind("entity_despawn")
    assert (despawned.type, despawned.entity_despawn.entity_id) == (pb.ENTITY_DESPAWN, "lamp")
    await bob.send(pb.Message(entity_despawn=pb.EntityDespawn(entity_id="chair")))
    despawned = await alice.recv_kind("entity_despawn")
    assert despawned.entity_despawn.entity_id == "chair"


async def test_host_hands_over_to_the_next_member_on_the_other_instance(
    cluster: Cluster, clients: ClientPool
) -> None:
    room = "cross-host"
    alice, bob = await join_pair(clients, cluster, room)  # join order: alice (A), bob (B)
    carol = await clients.join(cluster.a.ws_url, room, "carol")
    assert carol.hello.host_client_id == alice.client_id
    await bob.recv_until(is_event(pb.PRESENCE_JOIN, carol.client_id))

    await alice.close()
    for watcher in (carol, bob):  # carol on A with the old host, bob on B
        await watcher.recv_until(is_event(pb.PRESENCE_LEAVE, alice.client_id))
        handover = await watcher.recv_until(lambda m: m.type == pb.PRESENCE_UPDATE)
        assert handover.presence_event.event_type == pb.PresenceEventType.UPDATE
        assert handover.presence_event.client_id == bob.client_id
        assert handover.presence_event.data.host_client_id == bob.client_id
    assert cluster.host(room) == bob.client_id

    dave = await clients.join(cluster.a.ws_url, room, "dave")
    assert dave.hello.host_client_id == bob.client_id


async def test_late_joiner_on_b_sees_entities_and_synced_pose_from_a(
    cluster: Cluster, clients: ClientPool
) -> None:
    room = "cross-late"
    alice = await clients.join(cluster.a.ws_url, room, "alice", display_name="Alice")
    lamp = pb.EntitySpawn(entity_id="lamp", template_id="lamp", components={"color": "red"})
    await alice.send(pb.Message(entity_spawn=lamp))
    await alice.send(pose(7.5))
    await wait_until(
        lambda: "lamp" in cluster.entities(room, alice.client_id), timeout=POSE_SYNC_SECONDS
    )
    await wait_until(
        lambda: (
            (player := cluster.player(room, alice.client_id)) is not None
            and player.position.x == 7.5
        ),
        timeout=POSE_SYNC_SECONDS,
    )

    bob = await clients.join(cluster.b.ws_url, room, "bob")
    state = bob.hello.initial_state
    assert [(p.client_id, p.display_name) for p in state.players] == [(alice.client_id, "Alice")]
    assert (state.players[0].position.x, state.players[0].rotation.w) == (7.5, 1.0)
    assert [(e.id, e.template_id, e.owner_id) for e in state.entities] == [
        ("lamp", "lamp", alice.client_id)
    ]
    assert dict(state.entities[0].components) == {"color": "red"}


async def test_leave_reaches_the_other_instance_both_ways(
    cluster: Cluster, clients: ClientPool
) -> None:
    room = "cross-leave"
    alice, bob = await join_pair(clients, cluster, room)
    carol = await clients.join(cluster.a.ws_url, room, "carol")
    dave = await clients.join(cluster.b.ws_url, room, "dave")
    await alice.recv_until(is_event(pb.PRESENCE_JOIN, dave.client_id))

    await bob.close()  # B -> A
    for watcher in (alice, carol):
        left = await watcher.recv_until(is_event(pb.PRESENCE_LEAVE, bob.client_id))
        assert left.presence_event.event_type == pb.PresenceEventType.LEAVE
    await carol.close()  # A -> B
    await dave.recv_until(is_event(pb.PRESENCE_LEAVE, carol.client_id))

    await wait_until(
        lambda: cluster.members(room) == [alice.client_id, dave.client_id], timeout=2.0
    )
    assert cluster.conn(room, bob.client_id) == {}
    assert cluster.conn(room, carol.client_id) == {}


async def test_server_hello_names_the_same_host_on_both_instances(
    cluster: Cluster, clients: ClientPool
) -> None:
    alice = await clients.join(cluster.a.ws_url, "one-host-a-first", "alice")
    bob = await clients.join(cluster.b.ws_url, "one-host-a-first", "bob")
    carol = await clients.join(cluster.a.ws_url, "one-host-a-first", "carol")
    assert [c.hello.host_client_id for c in (alice, bob, carol)] == [alice.client_id] * 3

    dave = await clients.join(cluster.b.ws_url, "one-host-b-first", "dave")
    erin = await clients.join(cluster.a.ws_url, "one-host-b-first", "erin")
    assert [c.hello.host_client_id for c in (dave, erin)] == [dave.client_id] * 2
    assert (cluster.host("one-host-a-first"), cluster.host("one-host-b-first")) == (
        alice.client_id,
        dave.client_id,
    )


async def test_simultaneous_first_joins_on_both_instances_elect_one_host(
    cluster: Cluster, clients: ClientPool
) -> None:
    rooms = [f"race-{n}" for n in range(5)]
    joins = []
    for room in rooms:
        joins.append(clients.join(cluster.a.ws_url, room, "alice"))
        joins.append(clients.join(cluster.b.ws_url, room, "bob"))
    joined = await asyncio.gather(*joins)
    for room, on_a, on_b in zip(rooms, joined[::2], joined[1::2], strict=True):
        host = on_a.hello.host_client_id
        assert host in (on_a.client_id, on_b.client_id), room
        assert on_b.hello.host_client_id == host, room
        assert cluster.host(room) == host == cluster.members(room)[0], room
