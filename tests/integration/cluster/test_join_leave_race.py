"""A member leaving while another joins the same room never leaves a ghost.

The joiner's ``initial_state`` may list the leaver only if the LEAVE (and
the hand-over of the host role) follows; at the end the joiner is alone,
the host, and allowed to moderate its own room.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from typing import Any

import pytest
from django.conf import settings as django_settings

from presence.cluster.hub import Hub
from presence.cluster.instance import get_hub
from presence.cluster.redis_registry import RedisRegistry
from presence.cluster.registry import Arrival, RoomSnapshot
from presence.protocol import pb
from presence.protocol.room import Player
from tests.clients.communicator import ProtocolClient
from tests.integration.cluster.test_hub_cluster import Member, presence

pytestmark = pytest.mark.django_db(transaction=True)

LEASE_SECONDS = 5.0
RACES = 60


class HeldJoinRegistry(RedisRegistry):
    """A Redis registry whose join reply can be held back after the script ran."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.ran = asyncio.Event()
        self.release = asyncio.Event()
        self.release.set()

    async def join(self, arrival: Arrival) -> RoomSnapshot:
        snapshot = await super().join(arrival)
        self.ran.set()
        await self.release.wait()
        return snapshot


@pytest.fixture
async def held_hub(redis_url: str, redis_prefix: str) -> AsyncIterator[Hub]:
    registry = HeldJoinRegistry(redis_url, prefix=redis_prefix, lease_seconds=LEASE_SECONDS)
    hub = Hub(None, registry=registry, instance_id="solo", tick_hz=0)
    yield hub
    registry.release.set()
    for room_id, room in list(hub.rooms.items()):
        for member in list(room.members.values()):
            await hub.leave(room_id, member)
    await registry.aclose()


async def _yield_until(condition: Any) -> None:
    async with asyncio.timeout(5):
        while not condition():
            await asyncio.sleep(0.001)


async def test_a_leave_racing_a_join_reaches_the_joiner(held_hub: Hub) -> None:
    hub = held_hub
    registry = hub.registry
    assert isinstance(registry, HeldJoinRegistry)
    x = Member("x", hub, "fresh")
    await hub.join("fresh", x, Player("x", "x", "X"))
    # y's join runs its script (x is still there, and host) but its answer is held...
    registry.ran.clear()
    registry.release.clear()
    y = Member("y", hub, "fresh")
    joining = asyncio.create_task(hub.join("fresh", y, Player("y", "y", "Y")))
    await registry.ran.wait()
    # ... while x leaves: the registry hands the host role to y.
    leaving = asyncio.create_task(hub.leave("fresh", x))
    await _yield_until(lambda: leaving.done() or hub._room_locks["fresh"][1] == 2)
    registry.release.set()
    hello, _ = await joining
    await leaving
    if any(p.client_id == "x" for p in hello.initial_state.players):
        await y.next_matching(presence(pb.LEAVE, "x"))
    assert hub.rooms["fresh"].state.host_client_id == "y"
    assert (await registry.view("fresh")).host_client_id == "y"
    assert [c.client_id for c in (await registry.view("fresh")).connections] == ["y"]


@pytest.fixture
def redis_settings(settings: Any, redis_url: str, redis_prefix: str) -> None:
    settings.PRESENCE = {
        **django_settings.PRESENCE,
        "DEV_AUTH": True,
        "RATE_LIMIT_MAX_REQUESTS": 100_000,  # every test client comes from one address
        "REDIS_URL": redis_url,
        "REDIS_CHANNEL_PREFIX": redis_prefix,
    }


async def _view_of(client: ProtocolClient, hello: pb.ServerHello) -> tuple[set[str], str]:
    """Who the client believes is present, and the host, after everything so far."""
    present = {p.client_id for p in hello.initial_state.players}
    host = hello.host_client_id
    await client.send(pb.Message(ping=pb.Ping(client_time_ms=1)))
    while (message := await client.recv()).WhichOneof("payload") != "pong":
        if message.WhichOneof("payload") != "presence_event":
            continue
        event = message.presence_event
        if event.event_type == pb.JOIN:
            present.add(event.client_id)
        elif event.event_type == pb.LEAVE:
            present.discard(event.client_id)
        if event.data.host_client_id:
            host = event.data.host_client_id
    return present, host


@pytest.mark.usefixtures("redis_settings")
async def test_leaving_right_after_hello_while_another_joins_leaves_no_ghost() -> None:
    rng = random.Random(20261201)
    for n in range(RACES):
        room = f"race-{n}"
        leaver = ProtocolClient(f"/ws/{room}?user_id=leaver")
        await leaver.join()
        joiner = ProtocolClient(f"/ws/{room}?user_id=joiner")

        async def leave_soon(client: ProtocolClient = leaver) -> None:
            await asyncio.sleep(rng.uniform(0, 0.01))
            await client.close()

        _, hello = await asyncio.gather(leave_soon(), joiner.join())
        # Let the leave finish, then compare the joiner's view with the room's.
        await get_hub().publisher.drained()
        present, host = await _view_of(joiner, hello)
        assert present == set(), (room, present)
        assert host == joiner.client_id, room
        assert get_hub().rooms[room].state.host_client_id == joiner.client_id, room
        await joiner.close()


async def test_what_is_heard_while_joining_reaches_the_joiner_after_its_hello(
    held_hub: Hub,
) -> None:
    hub = held_hub
    registry = hub.registry
    assert isinstance(registry, HeldJoinRegistry)
    registry.ran.clear()
    registry.release.clear()
    y = Member("y", hub, "heard")
    order: list[str] = []
    joining = asyncio.create_task(
        hub.join(
            "heard",
            y,
            Player("y", "y", "Y"),
            greet=lambda hello: (
                order.append("hello") or y.inbox.put_nowait(pb.Message(server_hello=hello))
            ),
        )
    )
    await registry.ran.wait()
    # Another instance announces a JOIN while y's registry answer is held.
    other = pb.Message(
        seq=0,
        presence_event=pb.PresenceEvent(event_type=pb.JOIN, client_id="z"),
    )
    hub._receive_remote({"room": "heard", "items": [(other.SerializeToString(), True, "", "")]})
    registry.release.set()
    await joining

    assert order == ["hello"]
    first = await y.next_matching(lambda m: True)
    assert first.WhichOneof("payload") == "server_hello"
    await y.next_matching(presence(pb.JOIN, "z"))
