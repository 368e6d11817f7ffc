"""Two hubs (two processes' worth) on one real Redis channel layer."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from channels_redis.core import RedisChannelLayer
from channels_redis.pubsub import RedisPubSubChannelLayer

from presence.cluster.hub import Hub
from presence.protocol import pb
from presence.protocol.batch import TickBatch
from presence.protocol.codec import EncodedMessage
from presence.protocol.room import Player
from tests.clients.communicator import pose
from tests.clients.live import wait_until

DELIVERY_TIMEOUT = 5.0


class RecordingMember:
    """A member that keeps what the hub delivers to it."""

    def __init__(self, client_id: str) -> None:
        self.client_id = client_id
        self.inbox: asyncio.Queue[tuple[pb.Message, bool]] = asyncio.Queue()

    def deliver_reliable(self, encoded: EncodedMessage) -> None:
        self.inbox.put_nowait((pb.Message.FromString(encoded.proto), True))

    def deliver_volatile(self, batch: TickBatch) -> None:
        for encoded in batch.for_recipient(self.client_id):
            self.inbox.put_nowait((pb.Message.FromString(encoded.proto), False))

    async def next(self) -> pb.Message:
        message, _ = await asyncio.wait_for(self.inbox.get(), DELIVERY_TIMEOUT)
        return message

    async def next_of(self, kind: str) -> pb.Message:
        """The next message with this payload. A JOIN published while this hub was
        subscribing may or may not arrive (the pub/sub layer races there)."""
        while (message := await self.next()).WhichOneof("payload") != kind:
            assert message.WhichOneof("payload") == "presence_event", message
        return message


@pytest.fixture(params=["core", "pubsub"])
async def two_hubs(
    request: pytest.FixtureRequest, redis_url: str, redis_prefix: str
) -> AsyncIterator[tuple[Hub, Hub]]:
    """Two hubs on one Redis, through the core layer and through the pub/sub layer."""
    hosts = [{"address": redis_url, "socket_timeout": 10}]
    layer: RedisChannelLayer | RedisPubSubChannelLayer
    if request.param == "core":
        layer = RedisChannelLayer(hosts=hosts, prefix=f"{redis_prefix}:layer:", expiry=10)
    else:
        layer = RedisPubSubChannelLayer(hosts=hosts, prefix=f"{redis_prefix}:layer:")
    hubs = (Hub(layer, instance_id="hub-a"), Hub(layer, instance_id="hub-b"))
    yield hubs
    for hub in hubs:
        for room_id, room in list(hub.rooms.items()):
            for member in list(room.members.values()):
                await hub.leave(room_id, member)
    await layer.flush()
    if isinstance(layer, RedisChannelLayer):
        await layer.close_pools()


async def join(hub: Hub, room_id: str, member: RecordingMember) -> pb.ServerHello:
    hello, joined = await hub.join(
        room_id, member, Player(member.client_id, member.client_id, member.client_id)
    )
    await hub.publish(room_id, joined)
    return hello


async def test_pose_and_chat_cross_from_one_hub_to_the_other(two_hubs: tuple[Hub, Hub]) -> None:
    hub_a, hub_b = two_hubs
    alice, bob = RecordingMember("alice"), RecordingMember("bob")
    await join(hub_a, "r", alice)
    await join(hub_b, "r", bob)
    joined = await alice.next()  # bob's JOIN crossed from hub B
    assert (joined.type, joined.presence_event.client_id) == (pb.PRESENCE_JOIN, "bob")

    outcome = hub_a.apply("r", "alice", "position_update", pose(4.0))
    await hub_a.publish("r", outcome.broadcasts)
    chat = pb.Message(chat_message=pb.ChatMessage(message="over the wire"))
    outcome = hub_a.apply("r", "alice", "chat_message", chat)
    await hub_a.publish("r", outcome.broadcasts)

    got_pose = await bob.next_of("position_update")
    assert (got_pose.sender_id, got_pose.position_update.position.x) == ("alice", 4.0)
    got_chat = await bob.next()
    assert (got_chat.chat_message.from_client_id, got_chat.chat_message.message) == (
        "alice",
        "over the wire",
    )
    assert alice.inbox.empty()  # nothing came back to the sender


async def test_a_hub_ignores_its_own_published_messages(two_hubs: tuple[Hub, Hub]) -> None:
    hub_a, hub_b = two_hubs
    alice, carol, bob = RecordingMember("alice"), RecordingMember("carol"), RecordingMember("bob")
    await join(hub_a, "r", alice)
    await join(hub_a, "r", carol)
    await join(hub_b, "r", bob)
    assert (await alice.next()).presence_event.client_id == "carol"  # local JOIN
    assert (await alice.next()).presence_event.client_id == "bob"  # remote JOIN
    outcome = hub_a.apply(
        "r", "alice", "chat_message", pb.Message(chat_message=pb.ChatMessage(message="once"))
    )
    await hub_a.publish("r", outcome.broadcasts)
    assert (await bob.next_of("chat_message")).chat_message.message == "once"
    # carol got it locally, exactly once: the copy hub A read back from Redis was dropped.
    messages = [await carol.next() for _ in range(2)]  # bob's JOIN, then the chat
    assert [m.WhichOneof("payload") for m in messages] == ["presence_event", "chat_message"]
    chat = hub_b.apply(
        "r", "bob", "chat_message", pb.Message(chat_message=pb.ChatMessage(message="marker"))
    )
    await hub_b.publish("r", chat.broadcasts)
    assert (await carol.next()).chat_message.message == "marker"


async def test_last_member_leaving_unsubscribes_the_room_after_the_linger(
    two_hubs: tuple[Hub, Hub],
) -> None:
    hub_a, _ = two_hubs
    hub_a.unsubscribe_linger = 0.05
    alice = RecordingMember("alice")
    await join(hub_a, "r", alice)
    assert "r" in hub_a.bridge.subscribed
    await hub_a.leave("r", alice)
    assert hub_a.rooms == {} and "r" in hub_a.bridge.subscribed  # lingers
    await wait_until(lambda: not hub_a.bridge.subscribed, timeout=DELIVERY_TIMEOUT)
    await hub_a.publisher.drained()
    assert hub_a.bridge.reader is None


async def test_a_member_back_within_the_linger_keeps_the_subscription(
    two_hubs: tuple[Hub, Hub],
) -> None:
    hub_a, hub_b = two_hubs
    hub_a.unsubscribe_linger = 0.05
    first, again, bob = RecordingMember("first"), RecordingMember("again"), RecordingMember("bob")
    await join(hub_a, "r", first)
    await hub_a.leave("r", first)
    await join(hub_a, "r", again)
    hub_a._unsubscribe_if_unused("r")  # what the linger's timer does when it fires
    await hub_a.publisher.drained()
    assert "r" in hub_a.bridge.subscribed
    await join(hub_b, "r", bob)
    assert (await again.next()).presence_event.client_id == "bob"


async def test_a_room_can_be_rejoined_after_the_hub_emptied(two_hubs: tuple[Hub, Hub]) -> None:
    hub_a, hub_b = two_hubs
    hub_a.unsubscribe_linger = 0  # the group is left as soon as the room empties
    first = RecordingMember("first")
    await join(hub_a, "r", first)
    reader = hub_a.bridge.reader
    await hub_a.leave("r", first)  # the hub's reader stops with its last room
    assert reader is not None
    await asyncio.wait([reader], timeout=DELIVERY_TIMEOUT)
    assert reader.done()
    alice, bob = RecordingMember("alice"), RecordingMember("bob")
    await join(hub_a, "r", alice)
    await join(hub_b, "r", bob)
    chat = hub_a.apply(
        "r", "alice", "chat_message", pb.Message(chat_message=pb.ChatMessage(message="again"))
    )
    await hub_a.publish("r", chat.broadcasts)
    assert (await bob.next_of("chat_message")).chat_message.message == "again"
