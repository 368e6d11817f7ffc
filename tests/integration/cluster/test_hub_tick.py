"""The hub's tick: coalescing, batches and ordering, with the tick driven by hand."""

from __future__ import annotations

import asyncio

import pytest

from presence.cluster.hub import Hub
from presence.protocol import pb
from presence.protocol.batch import TickBatch
from presence.protocol.codec import EncodedMessage
from presence.protocol.room import Player
from tests.clients.communicator import pose

NEVER = 1e-6  # ticks per second: the loop never fires by itself, tests call tick()


class Inbox:
    """A member that records what the hub hands it, in order."""

    def __init__(self, client_id: str) -> None:
        self.client_id = client_id
        self.items: list[tuple[str, object]] = []

    def deliver_reliable(self, encoded: EncodedMessage) -> None:
        self.items.append(("reliable", pb.Message.FromString(encoded.proto)))

    def deliver_volatile(self, batch: TickBatch) -> None:
        self.items.append(("tick", batch))

    def poses(self, index: int) -> list[float]:
        kind, batch = self.items[index]
        assert kind == "tick" and isinstance(batch, TickBatch)
        return [
            pb.Message.FromString(e.proto).position_update.position.x
            for e in batch.for_recipient(self.client_id)
        ]


@pytest.fixture
async def hub() -> Hub:
    hub = Hub(None, tick_hz=NEVER)
    yield hub
    for room_id, room in list(hub.rooms.items()):
        for member in list(room.members.values()):
            await hub.leave(room_id, member)


async def members(hub: Hub, *names: str) -> list[Inbox]:
    inboxes = []
    for name in names:
        inbox = Inbox(name)
        await hub.join("r", inbox, Player(name, name, name))
        inboxes.append(inbox)
    for inbox in inboxes:
        inbox.items.clear()
    return inboxes


async def test_poses_wait_for_the_tick(hub: Hub) -> None:
    _alice, bob = await members(hub, "alice", "bob")
    hub.apply("r", "alice", "position_update", pose(1.0))

    assert bob.items == []
    await hub.tick()
    assert bob.poses(0) == [1.0]


async def test_only_the_newest_poses_per_entity_go_out_each_tick(hub: Hub) -> None:
    _alice, bob = await members(hub, "alice", "bob")
    for x in (1.0, 2.0, 3.0, 7.0):
        hub.apply("r", "alice", "position_update", pose(x))

    await hub.tick()

    assert len(bob.items) == 1
    assert bob.poses(0) == [3.0, 7.0]  # the newest two (TICK_POSES_PER_ENTITY), in order


async def test_with_one_pose_per_entity_only_the_newest_is_kept() -> None:
    hub = Hub(None, tick_hz=NEVER, poses_per_entity=1)
    _alice, bob = await members(hub, "alice", "bob")
    for x in (1.0, 2.0, 3.0):
        hub.apply("r", "alice", "position_update", pose(x))
    hub.apply("r", "bob", "position_update", pose(5.0))
    hub.apply("r", "alice", "position_update", pose(4.0, entity_id=""))

    await hub.tick()

    assert bob.poses(0) == [4.0]
    for room_id, room in list(hub.rooms.items()):
        for member in list(room.members.values()):
            await hub.leave(room_id, member)


async def test_entities_of_one_sender_are_coalesced_separately(hub: Hub) -> None:
    _alice, bob = await members(hub, "alice", "bob")
    hub.apply(
        "r", "alice", "entity_spawn", pb.Message(entity_spawn=pb.EntitySpawn(entity_id="box"))
    )
    bob.items.clear()
    for x in (1.0, 2.0, 3.0):
        hub.apply("r", "alice", "position_update", pose(x))
        hub.apply("r", "alice", "position_update", pose(10 * x, entity_id="box"))

    await hub.tick()

    assert bob.poses(0) == [2.0, 20.0, 3.0, 30.0]


async def test_one_batch_per_tick_carries_every_senders_pose(hub: Hub) -> None:
    alice, bob, carol = await members(hub, "alice", "bob", "carol")
    hub.apply("r", "alice", "position_update", pose(1.0))
    hub.apply("r", "bob", "position_update", pose(2.0))

    await hub.tick()

    assert carol.poses(0) == [1.0, 2.0]
    assert alice.poses(0) == [2.0]  # never its own
    assert bob.poses(0) == [1.0]


async def test_a_reliable_message_flushes_the_poses_sent_before_it(hub: Hub) -> None:
    _alice, bob = await members(hub, "alice", "bob")
    hub.apply("r", "alice", "position_update", pose(1.0))
    hub.apply(
        "r",
        "alice",
        "chat_message",
        pb.Message(chat_message=pb.ChatMessage(message="after the pose")),
    )
    hub.apply("r", "alice", "position_update", pose(2.0))
    await hub.tick()

    assert [kind for kind, _ in bob.items] == ["tick", "reliable", "tick"]
    assert bob.poses(0) == [1.0]
    assert bob.items[1][1].chat_message.message == "after the pose"
    assert bob.poses(2) == [2.0]


async def test_a_joiner_gets_its_hello_state_not_the_queued_poses(hub: Hub) -> None:
    _alice, bob = await members(hub, "alice", "bob")
    hub.apply("r", "alice", "position_update", pose(4.0))
    carol = Inbox("carol")
    hello, _ = await hub.join("r", carol, Player("carol", "carol", "carol"))

    [alice_snapshot, _] = hello.initial_state.players
    assert alice_snapshot.position.x == 4.0
    assert carol.items == []  # the pose queued before the join is in the snapshot
    assert bob.poses(0) == [4.0]  # flushed ahead of carol's JOIN


async def test_without_a_tick_poses_go_out_at_once() -> None:
    hub = Hub(None, tick_hz=0)
    alice, bob = Inbox("alice"), Inbox("bob")
    await hub.join("r", alice, Player("alice", "alice", "alice"))
    await hub.join("r", bob, Player("bob", "bob", "bob"))

    hub.apply("r", "alice", "position_update", pose(5.0))

    assert bob.poses(0) == [5.0]
    await hub.leave("r", alice)
    await hub.leave("r", bob)


async def test_a_tick_of_one_senders_poses_reaches_only_the_others(hub: Hub) -> None:
    alice, bob, carol = await members(hub, "alice", "bob", "carol")
    hub.apply("r", "alice", "position_update", pose(1.0))

    await hub.tick()

    assert alice.items == []  # nothing for it in this tick: no empty hand-over
    assert bob.poses(0) == [1.0]
    assert carol.poses(0) == [1.0]


async def test_an_idle_process_ticks_at_the_fast_rate() -> None:
    # The slow tick never fires by itself; only the fast one can deliver.
    hub = Hub(None, tick_hz=NEVER, fast_tick_hz=1000.0)
    delivered = asyncio.Event()

    class Waiter(Inbox):
        def deliver_volatile(self, batch: TickBatch) -> None:
            super().deliver_volatile(batch)
            delivered.set()

    alice, bob = Inbox("alice"), Waiter("bob")
    await hub.join("r", alice, Player("alice", "alice", "alice"))
    await hub.join("r", bob, Player("bob", "bob", "bob"))
    try:
        hub.apply("r", "alice", "position_update", pose(3.0))
        await asyncio.wait_for(delivered.wait(), timeout=5)
        assert bob.poses(-1) == [3.0]
    finally:
        await hub.leave("r", alice)
        await hub.leave("r", bob)


def test_fast_tick_at_or_below_the_tick_rate_keeps_the_tick_fixed() -> None:
    assert Hub(None, tick_hz=20.0, fast_tick_hz=20.0).fast_tick_seconds == 0.05
    assert Hub(None, tick_hz=20.0, fast_tick_hz=0.0).fast_tick_seconds == 0.05
    assert Hub(None, tick_hz=20.0, fast_tick_hz=80.0).fast_tick_seconds == 0.0125
