"""Two hubs (two instances' worth) sharing one real Redis: registry and channel layer.

What the members of a room on different instances must agree on: who hosts,
who is there, what was spawned; and what happens when an instance dies,
drains, or loses Redis.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import pytest
import redis.asyncio as aioredis
from channels_redis.pubsub import RedisPubSubChannelLayer

from presence.cluster.hub import BackendUnavailable, Hub
from presence.cluster.keeper import Keeper
from presence.cluster.redis_registry import RedisRegistry
from presence.cluster.shutdown import drain
from presence.protocol import pb
from presence.protocol.batch import TickBatch
from presence.protocol.codec import EncodedMessage
from presence.protocol.codes import CloseCode
from presence.protocol.room import Player
from tests.clients.communicator import pose
from tests.conftest import closed_redis_url

DELIVERY_TIMEOUT = 5.0
LEASE_SECONDS = 0.5


class Member:
    """A member that records deliveries and leaves its hub when aborted, like a socket."""

    def __init__(self, client_id: str, hub: Hub, room_id: str) -> None:
        self.client_id = client_id
        self.hub = hub
        self.room_id = room_id
        self.inbox: asyncio.Queue[pb.Message] = asyncio.Queue()
        self.aborted: list[CloseCode] = []

    def deliver_reliable(self, encoded: EncodedMessage) -> None:
        self.inbox.put_nowait(pb.Message.FromString(encoded.proto))

    def deliver_volatile(self, batch: TickBatch) -> None:
        for encoded in batch.for_recipient(self.client_id):
            self.inbox.put_nowait(pb.Message.FromString(encoded.proto))

    def abort(self, close_code: CloseCode, text: str) -> None:
        self.aborted.append(close_code)
        asyncio.get_running_loop().create_task(self.hub.leave(self.room_id, self))

    async def next_matching(self, wanted: Callable[[pb.Message], bool]) -> pb.Message:
        """The next message ``wanted`` accepts (others, e.g. racing JOINs, are skipped)."""
        async with asyncio.timeout(DELIVERY_TIMEOUT):
            while not wanted(message := await self.inbox.get()):
                pass
        return message


def presence(kind: int, client_id: str) -> Callable[[pb.Message], bool]:
    def wanted(m: pb.Message) -> bool:
        return m.HasField("presence_event") and (
            m.presence_event.event_type,
            m.presence_event.client_id,
        ) == (kind, client_id)

    return wanted


def payload(kind: str) -> Callable[[pb.Message], bool]:
    return lambda m: m.WhichOneof("payload") == kind


@pytest.fixture
async def cluster(redis_url: str, redis_prefix: str) -> AsyncIterator[tuple[Hub, Hub]]:
    """Hubs a and b: one pub/sub channel layer, one registry prefix, one Redis."""
    layer = RedisPubSubChannelLayer(
        hosts=[{"address": redis_url, "socket_timeout": 10}], prefix=f"{redis_prefix}:layer:"
    )
    registries = [
        RedisRegistry(redis_url, prefix=redis_prefix, lease_seconds=LEASE_SECONDS) for _ in range(2)
    ]
    lost: list[str] = []

    async def on_lost(client_ids: list[str]) -> None:
        lost.extend(client_ids)

    hubs = tuple(
        Hub(layer, registry=registry, instance_id=name, tick_hz=0, on_lost=on_lost)
        for name, registry in zip(("hub-a", "hub-b"), registries, strict=True)
    )
    for hub in hubs:
        hub.lost = lost  # type: ignore[attr-defined]
    yield hubs[0], hubs[1]
    for hub in hubs:
        for room_id, room in list(hub.rooms.items()):
            for member in list(room.members.values()):
                await hub.leave(room_id, member)
    await layer.flush()
    for registry in registries:
        await registry.aclose()
    client = aioredis.Redis.from_url(redis_url)
    keys = [k async for k in client.scan_iter(f"{redis_prefix}:*")]
    if keys:
        await client.delete(*keys)
    await client.aclose()


async def join(hub: Hub, room_id: str, name: str) -> tuple[Member, pb.ServerHello]:
    member = Member(name, hub, room_id)
    hello, joined = await hub.join(room_id, member, Player(name, name, name.title()))
    await hub.publish(room_id, joined)
    return member, hello


async def send(hub: Hub, room_id: str, client_id: str, message: pb.Message) -> None:
    kind = message.WhichOneof("payload")
    assert kind is not None
    outcome = hub.apply(room_id, client_id, kind, message)
    await hub.publish(room_id, outcome.broadcasts)


def spawn(entity_id: str) -> pb.Message:
    return pb.Message(entity_spawn=pb.EntitySpawn(entity_id=entity_id, template_id="cube"))


async def test_members_on_two_instances_agree_on_the_first_joiner_as_host(
    cluster: tuple[Hub, Hub],
) -> None:
    hub_a, hub_b = cluster
    alice, hello_a = await join(hub_a, "hall", "alice")
    _, hello_b = await join(hub_b, "hall", "bob")
    assert hello_a.host_client_id == hello_b.host_client_id == "alice"
    joined = await alice.next_matching(presence(pb.JOIN, "bob"))
    assert joined.presence_event.data.host_client_id == "alice"


async def test_a_joiner_on_b_sees_the_players_of_a(cluster: tuple[Hub, Hub]) -> None:
    hub_a, hub_b = cluster
    await join(hub_a, "hall", "alice")
    await join(hub_a, "hall", "carol")
    _, hello = await join(hub_b, "hall", "bob")
    assert [p.client_id for p in hello.initial_state.players] == ["alice", "carol"]
    assert hello.initial_state.players[0].display_name == "Alice"


async def test_a_late_joiner_on_b_sees_entities_and_synced_poses_from_a(
    cluster: tuple[Hub, Hub],
) -> None:
    hub_a, hub_b = cluster
    await join(hub_a, "hall", "alice")
    await send(hub_a, "hall", "alice", spawn("cube-1"))
    hub_a.apply("hall", "alice", "position_update", pose(3.5))
    await hub_a.sync()  # what the keeper does a few times a second
    _, hello = await join(hub_b, "hall", "bob")
    (entity,) = hello.initial_state.entities
    assert (entity.id, entity.owner_id, entity.template_id) == ("cube-1", "alice", "cube")
    (alice,) = hello.initial_state.players
    assert alice.position.x == 3.5


async def test_poses_reach_the_registry_only_when_synced(
    cluster: tuple[Hub, Hub],
) -> None:
    hub_a, hub_b = cluster
    await join(hub_a, "hall", "alice")
    hub_a.apply("hall", "alice", "position_update", pose(7.0))
    _, before = await join(hub_b, "hall", "bob")
    assert not before.initial_state.players[0].HasField("position")
    await hub_a.sync()
    _, after = await join(hub_b, "hall", "carol")
    assert [p.position.x for p in after.initial_state.players if p.client_id == "alice"] == [7.0]


async def test_the_host_role_moves_to_a_member_of_the_other_instance(
    cluster: tuple[Hub, Hub],
) -> None:
    hub_a, hub_b = cluster
    alice, _ = await join(hub_a, "hall", "alice")
    bob, _ = await join(hub_b, "hall", "bob")
    carol, _ = await join(hub_a, "hall", "carol")
    await hub_a.leave("hall", alice)
    for member in (bob, carol):
        await member.next_matching(presence(pb.LEAVE, "alice"))
        handover = await member.next_matching(presence(pb.UPDATE, "bob"))
        assert handover.presence_event.data.host_client_id == "bob"
    assert hub_a.rooms["hall"].state.host_client_id == "bob"
    assert hub_b.rooms["hall"].state.host_client_id == "bob"


async def test_entities_spawned_on_a_despawn_on_b_when_their_owner_leaves(
    cluster: tuple[Hub, Hub],
) -> None:
    hub_a, hub_b = cluster
    alice, _ = await join(hub_a, "hall", "alice")
    bob, _ = await join(hub_b, "hall", "bob")
    await send(hub_a, "hall", "alice", spawn("cube-1"))
    spawned = await bob.next_matching(payload("entity_spawn"))
    assert spawned.entity_spawn.owner_id == "alice"
    await hub_a.leave("hall", alice)
    gone = await bob.next_matching(payload("entity_despawn"))
    assert gone.entity_despawn.entity_id == "cube-1"
    _, hello = await join(hub_b, "hall", "carol")
    assert list(hello.initial_state.entities) == []


async def test_the_keeper_sweeps_a_dead_instance_and_announces_its_departures(
    cluster: tuple[Hub, Hub],
) -> None:
    hub_a, hub_b = cluster
    await join(hub_a, "hall", "alice")  # hub a never heart-beats: it is "dead"
    bob, _ = await join(hub_b, "hall", "bob")
    await send(hub_a, "hall", "alice", spawn("cube-1"))
    await bob.next_matching(payload("entity_spawn"))
    keeper = Keeper(hub_b, heartbeat_seconds=0.1, pose_sync_hz=10)
    keeper.start()
    try:
        await bob.next_matching(presence(pb.LEAVE, "alice"))
        despawn = await bob.next_matching(payload("entity_despawn"))
        handover = await bob.next_matching(presence(pb.UPDATE, "bob"))
    finally:
        await keeper.stop()
    assert despawn.entity_despawn.entity_id == "cube-1"
    assert handover.presence_event.data.host_client_id == "bob"
    assert hub_b.lost == ["alice"]  # type: ignore[attr-defined]
    assert await hub_b.registry.occupancy("hall") == 1


async def test_a_draining_instance_closes_with_4000_and_leaves_the_registry(
    cluster: tuple[Hub, Hub],
) -> None:
    hub_a, hub_b = cluster
    alice, _ = await join(hub_a, "hall", "alice")
    bob, _ = await join(hub_b, "hall", "bob")
    await drain(hub_a, timeout=DELIVERY_TIMEOUT)
    assert alice.aborted == [CloseCode.GOING_AWAY]
    await bob.next_matching(presence(pb.LEAVE, "alice"))
    assert await hub_b.registry.occupancy("hall") == 1
    assert not hub_a.rooms


async def test_when_redis_fails_every_local_member_is_closed_with_4012(
    cluster: tuple[Hub, Hub], redis_prefix: str
) -> None:
    hub_a, _ = cluster
    alice, _ = await join(hub_a, "hall", "alice")
    hub_a.registry = RedisRegistry(
        closed_redis_url(), prefix=redis_prefix, lease_seconds=LEASE_SECONDS
    )
    with pytest.raises(BackendUnavailable):
        await join(hub_a, "lobby", "bob")
    assert alice.aborted == [CloseCode.BACKEND_UNAVAILABLE]
    assert hub_a.degraded
