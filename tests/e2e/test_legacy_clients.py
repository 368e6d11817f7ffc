"""End to end: legacy GraphWiz-XR clients (issue 14) on real servers, real sockets.

Two legacy clients and a protobuf client share one room across two instances
on one Redis (the cluster of ``test_cluster.py``), and on uvicorn as ``make
run`` serves it. The legacy client is our own (``tests/clients/legacy.py``):
no subprotocol, ``room_id``/``user_id``/``client_id`` in the URL and a
``CLIENT_HELLO`` first, as the hub-client connects.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest

from presence.protocol import pb
from tests.clients import legacy as lg
from tests.clients.legacy import Frame, LiveLegacyClient
from tests.clients.live import ClientPool, chat, is_event, pose
from tests.e2e.conftest import (
    Cluster,
    PrivateRedis,
    Server,
    running_cluster,
    serving,
)

pytestmark = pytest.mark.e2e
# The production sniffing window (the suite's default is 10 ms: tests/conftest.py).
SNIFFING = {"PRESENCE_LEGACY_DETECT_SECONDS": "0.5"}


@pytest.fixture(scope="module")
def cluster(
    tmp_path_factory: pytest.TempPathFactory, cluster_redis: PrivateRedis
) -> Iterator[Cluster]:
    """Two daphne instances on one Redis, sniffing as in production."""
    tmp = tmp_path_factory.mktemp("legacy-cluster")
    with running_cluster(tmp, cluster_redis, extra_env=SNIFFING) as started:
        yield started


@pytest.fixture(scope="module")
def uvicorn_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """uvicorn as ``make run`` serves it, sniffing as in production."""
    with serving(tmp_path_factory, "uvicorn-legacy", **SNIFFING) as server:
        yield server


@contextlib.asynccontextmanager
async def legacy(ws_url: str, room: str, user: str, name: str) -> AsyncIterator[LiveLegacyClient]:
    client = await LiveLegacyClient.open(ws_url, room, user_id=user, client_id=str(uuid.uuid4()))
    try:
        await client.say_hello(name)
        yield client
    finally:
        with contextlib.suppress(Exception):
            await client.close()


async def world_of(client: LiveLegacyClient, players: set[str], entities: int) -> list[Frame]:
    """The frames after a hello until every player's 42 and ``entities`` spawns arrived."""
    seen: list[Frame] = []
    while not (
        {f.payload.get("clientId") for f in seen if f.type == lg.PRESENCE_UPDATE} >= players
        and sum(f.type == lg.ENTITY_SPAWN for f in seen) >= entities
    ):
        seen.append(await client.recv())
    return seen


async def whole_session(a_url: str, b_url: str, room: str, clients: ClientPool) -> None:
    """Alice (legacy, A), Pat (protobuf, B), then Bob (legacy, B) late; Alice leaves."""
    async with legacy(a_url, room, "alice", "Alice") as alice:
        pat = await clients.join(
            b_url, room, "pat", subprotocols=["graphwiz.proto.v1"], display_name="Pat"
        )
        joined = await alice.recv_type(lg.PRESENCE_JOIN)
        assert (joined.payload["clientId"], joined.payload["eventType"]) == (pat.client_id, 0)

        await alice.spawn_avatar("#123456")
        spawn = await pat.recv_kind("entity_spawn")
        assert spawn.entity_spawn.owner_id == alice.client_id
        await alice.avatar_update("Alice", "#123456")
        update = await pat.recv_kind("presence_event")
        assert update.presence_event.data.avatar_config.primary_color == "#123456"
        await alice.move(4.0)
        moved = await pat.recv_kind("position_update")
        assert (moved.sender_id, moved.position_update.position.x) == (alice.client_id, 4.0)
        await alice.chat("from legacy")
        said = await pat.recv_kind("chat_message")
        assert (said.chat_message.from_client_id, said.chat_message.message) == (
            alice.client_id,
            "from legacy",
        )
        await pat.send(pose(-1.0))
        seen = await alice.recv_type(lg.POSITION_UPDATE)
        assert (seen.payload["entityId"], seen.payload["position"]["x"]) == (pat.client_id, -1.0)
        await pat.send(chat("from protobuf"))
        heard = await alice.recv_type(lg.CHAT_MESSAGE)
        assert (heard.payload["fromClientId"], heard.payload["message"]) == (
            pat.client_id,
            "from protobuf",
        )

        async with legacy(b_url, room, "bob", "Bob") as bob:
            world = await world_of(bob, {alice.client_id, pat.client_id}, entities=1)
            updates = {f.payload["clientId"]: f.payload for f in world if f.type == 42}
            assert updates[alice.client_id]["avatarConfig"]["primaryColor"] == "#123456"
            [avatar] = [f for f in world if f.type == lg.ENTITY_SPAWN]
            assert avatar.payload["entityId"] == alice.client_id
            assert (await alice.recv_type(lg.PRESENCE_JOIN)).payload["clientId"] == bob.client_id
            await pat.recv_until(is_event(pb.PRESENCE_JOIN, bob.client_id))

            await bob.move(7.0)
            assert (await alice.recv_type(lg.POSITION_UPDATE)).payload["entityId"] == bob.client_id
            await alice.close()  # the leaver
            gone = [await bob.recv_until(lambda f: f.type in (40, 22)) for _ in range(3)]
            assert {(f.type, f.payload.get("eventType")) for f in gone} == {(40, 1), (22, None)}
            assert all(
                alice.client_id in (f.payload.get("clientId"), f.payload.get("entityId"))
                for f in gone
            )
            await pat.recv_until(is_event(pb.PRESENCE_LEAVE, alice.client_id))
            despawn = await pat.recv_kind("entity_despawn")
            assert despawn.entity_despawn.entity_id == alice.client_id


async def test_mixed_room_across_two_instances(cluster: Cluster, clients: ClientPool) -> None:
    await whole_session(cluster.a.ws_url, cluster.b.ws_url, "legacy-cross", clients)


async def test_mixed_room_on_uvicorn(uvicorn_server: Server, clients: ClientPool) -> None:
    url = uvicorn_server.ws_url
    await whole_session(url, url, "legacy-uvicorn", clients)


async def test_hostile_legacy_frames_on_a_real_socket(
    uvicorn_server: Server, clients: ClientPool
) -> None:
    async with legacy(uvicorn_server.ws_url, "legacy-hostile", "mallory", "Mallory") as mallory:
        pat = await clients.join(
            uvicorn_server.ws_url, "legacy-hostile", "pat", subprotocols=["graphwiz.proto.v1"]
        )
        await mallory.recv_type(lg.PRESENCE_JOIN)
        for data in (
            b"\x00",
            bytes([255]) + b"x" * 255 + bytes(9),
            lg.frame(10, {"position": [1]}),
        ):
            await mallory.send_bytes(data)
            error = await mallory.recv()
            assert error.type == lg.ERROR and error.payload["message"], error
        await pat.send(pose(2.0))
        assert (await mallory.recv_type(lg.POSITION_UPDATE)).payload["entityId"] == pat.client_id
        assert (await pat.ping(3)).pong.client_time_ms == 3  # nothing from mallory reached pat
    assert "Traceback" not in uvicorn_server.log_tail(400)
