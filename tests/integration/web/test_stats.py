"""``GET /ws/stats`` and ``GET /ws/{room_id}/stats``: the registry as staff see it.

Connections are opened through the consumer (both channel layers); the stats
are requested through Django's ASGI test client on the same event loop, so the
view reads the hub those connections joined, as it would in the server.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

import pytest
from django.test import AsyncClient

from presence.cluster.instance import get_hub
from presence.cluster.redis_registry import RedisRegistry
from presence.cluster.registry import Arrival
from presence.protocol import pb
from presence.protocol.room import Player
from tests.clients.communicator import ProtocolClient
from tests.conftest import closed_redis_url, layer_config

pytestmark = pytest.mark.django_db(transaction=True)

PASSWORD = "correct-horse-battery-9"
CLUSTER = "/ws/stats"
DEADLINE_SECONDS = 5.0  # generous: the machine may be busy; waits end on a condition
POLL_SECONDS = 0.02
CLUSTER_KEYS = {"total_connections", "active_rooms", "rooms", "instances", "timestamp"}
ROOM_KEYS = {
    "room_id",
    "connection_count",
    "connections",
    "host_client_id",
    "message_count",
    "entity_count",
    "timestamp",
}
CONNECTION_KEYS = {"id", "client_id", "user_id", "display_name", "instance_id", "connected_at"}


def room_path(room_id: str) -> str:
    return f"/ws/{room_id}/stats"


@pytest.fixture(autouse=True)
def _production_rules(settings: Any) -> None:
    settings.DEBUG = False  # the staff rule applies unless a test opens it
    # PBKDF2's default work factor costs ~0.3 s per hash and per login.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def staff(transactional_db: None, django_user_model: Any) -> Any:
    return django_user_model.objects.create_user("stella", password=PASSWORD, is_staff=True)


@pytest.fixture
def member(transactional_db: None, django_user_model: Any) -> Any:
    return django_user_model.objects.create_user("norm", password=PASSWORD)


@pytest.fixture
async def staff_client(staff: Any) -> AsyncClient:
    client = AsyncClient()
    await client.aforce_login(staff)
    return client


async def get(
    path: str, client: AsyncClient | None = None, **headers: str
) -> tuple[int, dict[str, Any]]:
    response = await (client or AsyncClient()).get(path, headers=headers)
    return response.status_code, response.json()


async def access_token(username: str) -> str:
    response = await AsyncClient().post(
        "/api/token/",
        {"username": username, "password": PASSWORD},
        content_type="application/json",
    )
    assert response.status_code == 200
    return str(response.json()["access"])


async def joined(room: str, user: str, **params: str) -> ProtocolClient:
    query = "&".join(f"{k}={v}" for k, v in {"user_id": user, **params}.items())
    client = ProtocolClient(f"/ws/{room}?{query}")
    await client.join()
    return client


async def stats_until(
    path: str, client: AsyncClient, wanted: Callable[[dict[str, Any]], bool]
) -> dict[str, Any]:
    """Poll ``path`` until ``wanted`` accepts the body (registry writes trail delivery)."""
    deadline = time.monotonic() + DEADLINE_SECONDS
    while True:
        status, body = await get(path, client)
        assert status == 200, body
        if wanted(body):
            return body
        assert time.monotonic() < deadline, f"no wanted stats within {DEADLINE_SECONDS} s: {body}"
        await asyncio.sleep(POLL_SECONDS)


def parse_iso_utc(text: str) -> datetime:
    assert text.endswith("Z"), text
    return datetime.fromisoformat(text)


# --- what the stats say ----------------------------------------------------


@pytest.mark.usefixtures("channel_layer_kind")
async def test_cluster_stats_list_every_room_and_connection(staff_client: AsyncClient) -> None:
    before = time.time()
    alice = await joined("hall", "alice")
    bob = await joined("hall", "bob")
    carol = await joined("lobby", "carol")

    status, body = await get(CLUSTER, staff_client)

    assert status == 200
    assert set(body) == CLUSTER_KEYS
    assert (body["total_connections"], body["active_rooms"]) == (3, 2)
    assert body["rooms"] == [
        {
            "room_id": "hall",
            "connection_count": 2,
            "message_count": 0,
            "entity_count": 0,
            "host_client_id": alice.client_id,
        },
        {
            "room_id": "lobby",
            "connection_count": 1,
            "message_count": 0,
            "entity_count": 0,
            "host_client_id": carol.client_id,
        },
    ]
    assert body["instances"] == [{"instance_id": get_hub().instance_id, "connection_count": 3}]
    assert before - 1 <= parse_iso_utc(body["timestamp"]).timestamp() <= time.time() + 1
    for client in (alice, bob, carol):
        await client.close()


@pytest.mark.usefixtures("channel_layer_kind")
async def test_room_stats_list_each_connection_with_its_ids_name_and_join_time(
    staff_client: AsyncClient,
) -> None:
    before = time.time()
    alice = await joined("hall", "alice", client_id="quest-3", display_name="Alice")
    bob = await joined("hall", "bob")
    after = time.time()

    status, body = await get(room_path("hall"), staff_client)

    assert status == 200
    assert set(body) == ROOM_KEYS
    assert all(set(c) == CONNECTION_KEYS for c in body["connections"])
    assert [{k: v for k, v in c.items() if k != "connected_at"} for c in body["connections"]] == [
        {
            "id": alice.client_id,
            "client_id": "quest-3",
            "user_id": "alice",
            "display_name": "Alice",
            "instance_id": get_hub().instance_id,
        },
        {
            "id": bob.client_id,
            "client_id": "",
            "user_id": "bob",
            "display_name": "bob",
            "instance_id": get_hub().instance_id,
        },
    ]
    for connection in body["connections"]:
        joined_at = parse_iso_utc(connection["connected_at"]).timestamp()
        assert before - 1 <= joined_at <= after + 1
    assert (body["room_id"], body["connection_count"], body["host_client_id"]) == (
        "hall",
        2,
        alice.client_id,
    )
    assert (body["message_count"], body["entity_count"]) == (0, 0)
    parse_iso_utc(body["timestamp"])
    await alice.close()
    await bob.close()


@pytest.mark.usefixtures("channel_layer_kind")
async def test_room_stats_count_messages_and_entities(staff_client: AsyncClient) -> None:
    alice = await joined("hall", "alice")
    bob = await joined("hall", "bob")
    await alice.send(pb.Message(entity_spawn=pb.EntitySpawn(entity_id="box", template_id="cube")))
    await alice.send(pb.Message(chat_message=pb.ChatMessage(message="hi")))
    await bob.recv_kind("chat_message")

    body = await stats_until(
        room_path("hall"), staff_client, lambda b: (b["message_count"], b["entity_count"]) == (2, 1)
    )

    assert (body["message_count"], body["entity_count"]) == (2, 1)
    _, cluster = await get(CLUSTER, staff_client)
    [hall] = cluster["rooms"]
    assert (hall["message_count"], hall["entity_count"]) == (2, 1)
    await alice.close()
    await bob.close()


@pytest.mark.usefixtures("channel_layer_kind")
async def test_a_connection_that_left_is_no_longer_counted(staff_client: AsyncClient) -> None:
    alice = await joined("hall", "alice")
    bob = await joined("hall", "bob")

    await alice.close()
    _, room = await get(room_path("hall"), staff_client)
    assert (room["connection_count"], room["host_client_id"]) == (1, bob.client_id)

    await bob.close()
    _, cluster = await get(CLUSTER, staff_client)
    assert (cluster["total_connections"], cluster["active_rooms"], cluster["rooms"]) == (0, 0, [])
    assert cluster["instances"] == []


async def test_a_valid_room_without_members_has_zero_counts(staff_client: AsyncClient) -> None:
    status, body = await get(room_path("empty.room_1-a"), staff_client)

    assert status == 200
    assert set(body) == ROOM_KEYS
    assert {k: v for k, v in body.items() if k != "timestamp"} == {
        "room_id": "empty.room_1-a",
        "connection_count": 0,
        "connections": [],
        "host_client_id": "",
        "message_count": 0,
        "entity_count": 0,
    }


@pytest.mark.parametrize("room_id", ["bad%20room", "caf%C3%A9", "a" * 65, "semi;colon"])
async def test_a_room_id_that_breaks_the_room_id_rule_is_400(
    staff_client: AsyncClient, room_id: str
) -> None:
    status, body = await get(room_path(room_id), staff_client)

    assert status == 400
    assert set(body) == {"detail"}


@pytest.mark.parametrize("channel_layer_kind", ["redis"], indirect=True)
async def test_cluster_stats_include_connections_of_other_instances(
    channel_layer_kind: str, staff_client: AsyncClient, redis_url: str, redis_prefix: str
) -> None:
    alice = await joined("hall", "alice")
    other = RedisRegistry(redis_url, prefix=redis_prefix, lease_seconds=30)
    here = get_hub().instance_id
    await other.join(
        Arrival(
            "hall",
            "instance-b",
            Player("b-1", "bob", "Bob"),
            client_label="web",
            connected_at_ms=1_700_000_000_000,
        )
    )
    await other.join(Arrival("attic", "instance-b", Player("b-2", "dan", "Dan")))

    _, cluster = await get(CLUSTER, staff_client)
    _, hall = await get(room_path("hall"), staff_client)

    assert (cluster["total_connections"], cluster["active_rooms"]) == (3, 2)
    assert [
        (r["room_id"], r["connection_count"], r["host_client_id"]) for r in cluster["rooms"]
    ] == [
        ("attic", 1, "b-2"),
        ("hall", 2, alice.client_id),
    ]
    assert cluster["instances"] == sorted(
        [
            {"instance_id": "instance-b", "connection_count": 2},
            {"instance_id": here, "connection_count": 1},
        ],
        key=lambda i: i["instance_id"],
    )
    assert hall["connections"][1] == {
        "id": "b-1",
        "client_id": "web",
        "user_id": "bob",
        "display_name": "Bob",
        "instance_id": "instance-b",
        "connected_at": "2023-11-14T22:13:20.000Z",
    }
    await other.retire("instance-b", keep=set())
    await other.aclose()
    await alice.close()


@pytest.mark.parametrize("path", [CLUSTER, room_path("hall")])
async def test_stats_answer_503_when_redis_is_unreachable(
    path: str, settings: Any, redis_prefix: str, staff_client: AsyncClient
) -> None:
    url = closed_redis_url()
    settings.CHANNEL_LAYERS = layer_config("redis", url, redis_prefix)
    settings.PRESENCE = {
        **settings.PRESENCE,
        "REDIS_URL": url,
        "REDIS_CHANNEL_PREFIX": redis_prefix,
    }

    status, body = await get(path, staff_client)

    assert status == 503
    assert body == {"detail": "The presence registry is unavailable."}


# --- who may read them -----------------------------------------------------


@pytest.mark.parametrize("path", [CLUSTER, room_path("hall")])
async def test_anonymous_requests_are_refused_with_debug_off(path: str) -> None:
    response = await AsyncClient().get(path)

    # DRF: no credentials -> 401 with the first authenticator's challenge (simplejwt).
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize("path", [CLUSTER, room_path("hall")])
async def test_a_non_staff_session_is_403(path: str, member: Any) -> None:
    client = AsyncClient()
    await client.aforce_login(member)

    status, _ = await get(path, client)

    assert status == 403


async def test_a_non_staff_token_is_403(member: Any) -> None:
    token = await access_token("norm")

    status, _ = await get(CLUSTER, Authorization=f"Bearer {token}")

    assert status == 403


async def test_a_staff_session_may_read_both_endpoints(staff_client: AsyncClient) -> None:
    assert (await get(CLUSTER, staff_client))[0] == 200
    assert (await get(room_path("hall"), staff_client))[0] == 200


async def test_a_staff_access_token_from_the_token_endpoint_may_read_both(staff: Any) -> None:
    token = await access_token("stella")

    for path in (CLUSTER, room_path("hall")):
        status, _ = await get(path, Authorization=f"Bearer {token}")
        assert status == 200


async def test_a_bad_token_is_401_even_for_a_would_be_staff_request(staff: Any) -> None:
    token = await access_token("stella")

    status, _ = await get(CLUSTER, Authorization=f"Bearer {token[:-4]}AAAA")

    assert status == 401


@pytest.mark.parametrize("path", [CLUSTER, room_path("hall")])
async def test_debug_mode_opens_the_stats_to_anyone(path: str, settings: Any) -> None:
    settings.DEBUG = True

    status, body = await get(path)

    assert status == 200
    assert set(body) == (CLUSTER_KEYS if path == CLUSTER else ROOM_KEYS)
