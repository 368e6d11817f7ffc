"""What the channel layer loses reaches the room from the room log (issue 11, second report).

Two hubs on one real Redis with the Redis session store. Hub b stops hearing
the room's group (as after a Redis restart, before it subscribes again); a
chat acknowledged on hub a must still reach b's member, exactly once.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis
from channels_redis.pubsub import RedisPubSubChannelLayer

from presence.cluster.hub import Hub
from presence.cluster.redis_registry import RedisRegistry
from presence.cluster.redis_sessions import RedisSessions
from presence.protocol import pb
from tests.integration.cluster.test_hub_cluster import join, payload, send

LEASE_SECONDS = 5.0


@pytest.fixture
async def hubs(redis_url: str, redis_prefix: str) -> AsyncIterator[tuple[Hub, Hub]]:
    layer = RedisPubSubChannelLayer(
        hosts=[{"address": redis_url, "socket_timeout": 10}], prefix=f"{redis_prefix}:layer:"
    )
    stores = []
    made = []
    for name in ("hub-a", "hub-b"):
        registry = RedisRegistry(redis_url, prefix=redis_prefix, lease_seconds=LEASE_SECONDS)
        sessions = RedisSessions(
            redis_url,
            prefix=redis_prefix,
            queue_size=16,
            window_seconds=30.0,
            held_extra_seconds=5.0,
        )
        stores.append((registry, sessions))
        made.append(Hub(layer, registry=registry, sessions=sessions, instance_id=name, tick_hz=0))
    yield made[0], made[1]
    for hub in made:
        for room_id, room in list(hub.rooms.items()):
            for member in list(room.members.values()):
                await hub.leave(room_id, member)
    await layer.flush()
    for registry, sessions in stores:
        await registry.aclose()
        await sessions.aclose()
    client = aioredis.Redis.from_url(redis_url)
    keys = [k async for k in client.scan_iter(f"{redis_prefix}:*")]
    if keys:
        await client.delete(*keys)
    await client.aclose()


def chat(text: str) -> pb.Message:
    return pb.Message(chat_message=pb.ChatMessage(message=text))


async def settled(hub: Hub) -> None:
    """Two catch-up rounds: an entry gets one whole round to arrive by the layer."""
    for _ in range(2):
        await hub.catch_up()


async def test_a_message_the_layer_lost_is_delivered_from_the_room_log_once(
    hubs: tuple[Hub, Hub],
) -> None:
    hub_a, hub_b = hubs
    alice, _ = await join(hub_a, "hall", "alice")
    bob, _ = await join(hub_b, "hall", "bob")
    await alice.next_matching(payload("presence_event"))  # bob's JOIN
    await hub_b.catch_up()  # b's cursor starts at the log's end

    await hub_b.bridge.unsubscribe("hall", still_needed=lambda: False)  # b stops hearing
    await send(hub_a, "hall", "alice", chat("lost on the way"))
    await hub_a.publisher.drained()
    await settled(hub_b)

    caught = await bob.next_matching(payload("chat_message"))
    assert caught.chat_message.message == "lost on the way"
    assert hub_b.catchup.caught_up == 1

    await hub_b.bridge.subscribe("hall")  # hears the group again
    await send(hub_a, "hall", "alice", chat("by the layer"))
    heard = await bob.next_matching(payload("chat_message"))
    assert heard.chat_message.message == "by the layer"
    await hub_a.publisher.drained()
    await settled(hub_b)
    assert hub_b.catchup.caught_up == 1  # nothing twice
    assert bob.inbox.empty()


async def test_a_message_caught_up_before_the_layer_delivers_it_is_not_delivered_twice(
    hubs: tuple[Hub, Hub],
) -> None:
    hub_a, hub_b = hubs
    await join(hub_a, "hall", "alice")
    bob, _ = await join(hub_b, "hall", "bob")
    await hub_b.catch_up()
    await send(hub_a, "hall", "alice", chat("hello"))
    first = await bob.next_matching(payload("chat_message"))
    assert first.chat_message.message == "hello"
    await hub_a.publisher.drained()
    await settled(hub_b)
    assert bob.inbox.empty()
    assert hub_b.catchup.caught_up == 0


async def test_the_journal_and_registry_writes_share_one_publishing_round(
    hubs: tuple[Hub, Hub],
) -> None:
    """The room log is written before the group message: a reader of the log never lags it."""
    hub_a, hub_b = hubs
    alice, _ = await join(hub_a, "hall", "alice")
    bob, _ = await join(hub_b, "hall", "bob")
    await alice.next_matching(payload("presence_event"))
    await send(hub_a, "hall", "alice", chat("logged first"))
    await bob.next_matching(payload("chat_message"))
    sessions = hub_b.sessions
    assert isinstance(sessions, RedisSessions)
    read = await sessions.read_logs({"hall": (0, 1_000)})
    log_end, ids = read["hall"]
    entries = await sessions.logged("hall", ids)
    assert [pb.Message.FromString(e.body).chat_message.message for e in entries][-1] == (
        "logged first"
    )
    assert log_end == len(ids)


async def test_a_message_delivered_here_is_in_the_room_log_before_its_sender_publishes_it(
    hubs: tuple[Hub, Hub],
) -> None:
    """A resume claims from the room log once the journal is durable (``Hub.resume``).

    A chat this instance already delivered to its members, whose sender is
    still awaiting something before it publishes (the recent-chat write), must
    be in the log by then, or a member resuming here in that moment never gets
    it: not in its replay, and not heard (it was delivered before the resume).
    """
    hub_a, _ = hubs
    await join(hub_a, "hall", "alice")
    read = await hub_a.sessions.read_logs({"hall": (0, 1 << 30)})
    logged_before = read["hall"][1]

    outcome = hub_a.apply("hall", "alice", "chat_message", chat("said, not yet published"))
    await hub_a.journal.durable(hub_a.journal.added)  # what a resume waits for

    read = await hub_a.sessions.read_logs({"hall": (0, 1 << 30)})
    new = [i for i in read["hall"][1] if i not in logged_before]
    assert len(new) == 1, "the chat its members already have is not in the room log"
    [entry] = await hub_a.sessions.logged("hall", new)
    said = pb.Message.FromString(entry.body)
    assert said.chat_message.message == "said, not yet published"
    await hub_a.publish("hall", outcome.broadcasts)
