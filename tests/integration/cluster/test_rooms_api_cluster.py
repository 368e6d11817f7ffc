"""presence.rooms from a process that runs no room (a worker, a task, a shell), two instances.

Two hubs share one real Redis (registry, pub/sub channel layer, recent chat);
the test's event loop has no hub of its own, so every call travels through
the channel layer to the instance hosting the room, as from another process.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as aioredis
from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer

from presence import rooms
from presence.cluster.hub import Hub
from presence.cluster.instance import get_hub
from presence.cluster.recent_chat import RedisRecentChat, chat_recorded
from presence.cluster.redis_registry import RedisRegistry
from presence.cluster.registry import Arrival
from presence.protocol import pb
from presence.protocol.codes import CloseCode
from presence.protocol.room import Player
from tests.conftest import layer_config
from tests.integration.cluster.test_hub_cluster import Member, payload, presence

pytestmark = pytest.mark.django_db(transaction=True)

ROOM = "plaza"


@pytest.fixture
async def cluster(
    settings: Any, redis_url: str, redis_prefix: str
) -> AsyncIterator[tuple[Hub, Hub]]:
    """Hubs a and b on the settings' pub/sub layer, registry and recent chat."""
    settings.CHANNEL_LAYERS = layer_config("redis", redis_url, redis_prefix)
    settings.PRESENCE = {
        **settings.PRESENCE,
        "REDIS_URL": redis_url,
        "REDIS_CHANNEL_PREFIX": redis_prefix,
        "API_COMMAND_TIMEOUT_SECONDS": 2.0,
    }
    layer = get_channel_layer()
    registries = [RedisRegistry(redis_url, prefix=redis_prefix, lease_seconds=5) for _ in "ab"]
    recent = [RedisRecentChat(redis_url, prefix=redis_prefix, limit=50) for _ in "ab"]
    hubs = tuple(
        Hub(layer, registry=registry, instance_id=f"hub-{n}", tick_hz=0, recent_chat=chat)
        for n, registry, chat in zip("ab", registries, recent, strict=True)
    )
    assert get_hub.existing() is None  # the API below reaches the hubs as from elsewhere
    yield hubs[0], hubs[1]
    for hub in hubs:
        for room_id, room in list(hub.rooms.items()):
            for member in list(room.members.values()):
                await hub.leave(room_id, member)
        await hub.publisher.drained()
    await layer.flush()
    for registry, chat in zip(registries, recent, strict=True):
        await registry.aclose()
        await chat.aclose()
    client = aioredis.Redis.from_url(redis_url)
    keys = [k async for k in client.scan_iter(f"{redis_prefix}:*")]
    if keys:
        await client.delete(*keys)
    await client.aclose()


async def join(hub: Hub, name: str, room_id: str = ROOM) -> tuple[Member, pb.ServerHello]:
    member = Member(name, hub, room_id)
    hello, joined = await hub.join(room_id, member, Player(name, name, name.title()))
    await hub.publish(room_id, joined)
    return member, hello


async def test_chat_from_elsewhere_reaches_members_on_both_instances(
    cluster: tuple[Hub, Hub],
) -> None:
    a, b = cluster
    alice, _ = await join(a, "alice")
    bob, _ = await join(b, "bob")
    await alice.next_matching(presence(pb.JOIN, "bob"))

    line = await rooms.asend_chat(ROOM, "the plaza closes at ten")

    for member in (alice, bob):
        chat = (await member.next_matching(payload("chat_message"))).chat_message
        assert (chat.from_client_id, chat.message, chat.timestamp) == (
            "system",
            "the plaza closes at ten",
            line.timestamp,
        )


async def test_the_sync_twin_from_a_thread_reaches_both_instances(
    cluster: tuple[Hub, Hub],
) -> None:
    a, b = cluster
    alice, _ = await join(a, "alice")
    bob, _ = await join(b, "bob")

    await sync_to_async(rooms.send_chat)(ROOM, "from a task", sender="Scheduler")

    for member in (alice, bob):
        chat = (await member.next_matching(payload("chat_message"))).chat_message
        assert (chat.from_client_id, chat.message) == ("Scheduler", "from a task")


async def test_recent_chat_is_the_same_on_every_instance(cluster: tuple[Hub, Hub]) -> None:
    a, b = cluster
    await join(a, "alice")
    await rooms.asend_chat(ROOM, "one")
    # A member's line, as the consumer records it on its own instance.
    line = pb.Message(chat_message=pb.ChatMessage(message="two"))
    outcome = a.apply(ROOM, "alice", "chat_message", line)
    await a.publish(ROOM, outcome.broadcasts)
    await chat_recorded(a.recent_chat, ROOM, outcome.broadcasts[0].message.chat_message, "Alice")

    _, hello_b = await join(b, "bob")
    _, hello_a = await join(a, "carol")

    for hello in (hello_a, hello_b):
        assert [(c.from_client_id, c.message) for c in hello.initial_state.recent_chat] == [
            ("system", "one"),
            ("alice", "two"),
        ]


async def test_server_entities_survive_a_host_change_and_are_handled_by_the_new_host(
    cluster: tuple[Hub, Hub],
) -> None:
    a, b = cluster
    alice, _ = await join(a, "alice")
    bob, _ = await join(b, "bob")

    await rooms.aspawn_entity(ROOM, "banner", template_id="flag", components={"team": "red"})
    for member in (alice, bob):
        spawn = (await member.next_matching(payload("entity_spawn"))).entity_spawn
        assert (spawn.entity_id, spawn.owner_id) == ("banner", "server")

    await a.leave(ROOM, alice)  # hub a held the entity; now b hosts the room
    await bob.next_matching(presence(pb.LEAVE, "alice"))
    assert [e.entity_id for e in (await rooms.aroom_state(ROOM)).entities] == ["banner"]

    await rooms.aupdate_entity(ROOM, "banner", components={"team": "blue"})
    update = (await bob.next_matching(payload("entity_update"))).entity_update
    assert dict(update.components) == {"team": b"blue"}
    _, hello = await join(a, "carol")
    [banner] = hello.initial_state.entities
    assert dict(banner.components) == {"team": "blue"}

    await rooms.adespawn_entity(ROOM, "banner")
    assert (await bob.next_matching(payload("entity_despawn"))).entity_despawn.entity_id == "banner"
    assert (await rooms.aroom_state(ROOM)).entities == []


async def test_server_entities_go_when_the_room_empties(cluster: tuple[Hub, Hub]) -> None:
    a, _ = cluster
    alice, _ = await join(a, "alice")
    await rooms.aspawn_entity(ROOM, "lamp")

    await a.leave(ROOM, alice)
    _, hello = await join(a, "bob")

    assert list(hello.initial_state.entities) == []


async def test_a_kick_from_elsewhere_closes_the_member_on_its_own_instance(
    cluster: tuple[Hub, Hub],
) -> None:
    a, b = cluster
    alice, _ = await join(a, "alice")
    bob, _ = await join(b, "bob")

    await rooms.akick(ROOM, "bob", reason="griefing")

    kicked = (await alice.next_matching(payload("player_kicked"))).player_kicked
    assert (kicked.kicked_client_id, kicked.reason) == ("bob", "griefing")
    await alice.next_matching(presence(pb.LEAVE, "bob"))
    assert bob.aborted == [CloseCode.FORBIDDEN]
    assert [m.client_id for m in (await rooms.aroom_state(ROOM)).members] == ["alice"]


async def test_room_list_counts_members_on_both_instances(cluster: tuple[Hub, Hub]) -> None:
    a, b = cluster
    await join(a, "alice")
    await join(b, "bob")
    await join(b, "carol", room_id="lobby")

    listed = await sync_to_async(rooms.room_list)()

    assert [(r.room_id, r.member_count, r.host_client_id) for r in listed] == [
        ("lobby", 1, "carol"),
        (ROOM, 2, "alice"),
    ]


async def test_an_instance_that_does_not_answer_is_unavailable_after_the_timeout(
    cluster: tuple[Hub, Hub], settings: Any, redis_url: str, redis_prefix: str
) -> None:
    settings.PRESENCE = {**settings.PRESENCE, "API_COMMAND_TIMEOUT_SECONDS": 0.3}
    registry = RedisRegistry(redis_url, prefix=redis_prefix, lease_seconds=5)
    # A member recorded for an instance that runs no hub (hung, or not yet swept).
    await registry.join(Arrival(ROOM, "hub-gone", Player("zed", "zed", "Zed")))
    await registry.aclose()

    with pytest.raises(rooms.Unavailable, match=r"did not answer within 0\.3 s"):
        await rooms.aspawn_entity(ROOM, "lamp")
