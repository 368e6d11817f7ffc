"""End to end: real daphne processes, driven by ``websockets`` clients as a new user would.

Each test uses a room of its own, so tests can share one server per module.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from presence.protocol import pb
from tests.clients.live import ClientPool, chat, eventually, http_get, pose
from tests.e2e.conftest import MAX_WS_BYTES, Server

pytestmark = pytest.mark.e2e

BAD_MESSAGE = pb.Error.BAD_MESSAGE
UNAUTHORIZED = pb.Error.UNAUTHORIZED
NOT_OWNER = pb.Error.NOT_OWNER
MESSAGE_TOO_BIG = 1009


def read_row(db: Path, sql: str, *params: Any) -> sqlite3.Row | None:
    """One row from the server's SQLite file, read-only (the server keeps writing)."""
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)) as conn:
        conn.row_factory = sqlite3.Row
        row: sqlite3.Row | None = conn.execute(sql, params).fetchone()
        return row


async def test_two_clients_meet_and_share_a_whole_session(
    daphne_server_per_layer: Server, clients: ClientPool
) -> None:
    ws = daphne_server_per_layer.ws_url
    alice = await clients.join(ws, "lobby", "alice", display_name="Alice")
    assert alice.hello.room_id == "lobby" and alice.hello.session_id
    assert alice.hello.host_client_id == alice.client_id
    assert list(alice.hello.initial_state.players) == []

    bob = await clients.join(ws, "lobby", "bob", display_name="Bob")
    assert bob.hello.host_client_id == alice.client_id
    assert [(p.client_id, p.display_name) for p in bob.hello.initial_state.players] == [
        (alice.client_id, "Alice")
    ]
    joined = await alice.recv()
    assert joined.type == pb.PRESENCE_JOIN
    assert (joined.presence_event.client_id, joined.presence_event.data.display_name) == (
        bob.client_id,
        "Bob",
    )

    await alice.send(pose(2.5))
    moved = await bob.recv()
    assert moved.type == pb.POSITION_UPDATE
    assert (moved.sender_id, moved.position_update.position.x, moved.seq) == (
        alice.client_id,
        2.5,
        0,
    )
    # Bob has the pose, so an echo to Alice would already be queued ahead of her Pong.
    assert (await alice.ping(42)).pong.client_time_ms == 42

    await bob.send(chat("hello alice"))
    said = await alice.recv()
    assert said.type == pb.CHAT_MESSAGE
    assert (said.chat_message.from_client_id, said.chat_message.message) == (
        bob.client_id,
        "hello alice",
    )
    assert said.seq > 0 and said.chat_message.timestamp > 0

    lamp = pb.EntitySpawn(entity_id="lamp", template_id="lamp", components={"color": "red"})
    await alice.send(pb.Message(entity_spawn=lamp))
    spawned = await bob.recv()
    assert spawned.type == pb.ENTITY_SPAWN
    assert (spawned.entity_spawn.entity_id, spawned.entity_spawn.owner_id) == (
        "lamp",
        alice.client_id,
    )

    await bob.send(pb.Message(message_id="grab", entity_despawn=pb.EntityDespawn(entity_id="lamp")))
    refused = await bob.recv()
    assert (refused.error.code, refused.error.ref_message_id) == (NOT_OWNER, "grab")

    await alice.close()
    left = await bob.recv()
    assert (left.type, left.presence_event.client_id) == (pb.PRESENCE_LEAVE, alice.client_id)
    despawned = await bob.recv()
    assert despawned.entity_despawn.entity_id == "lamp"
    handover = await bob.recv()
    assert handover.type == pb.PRESENCE_UPDATE
    assert handover.presence_event.client_id == bob.client_id
    assert handover.presence_event.data.host_client_id == bob.client_id

    carol = await clients.join(ws, "lobby", "carol")
    assert carol.hello.host_client_id == bob.client_id
    assert [p.client_id for p in carol.hello.initial_state.players] == [bob.client_id]
    assert list(carol.hello.initial_state.entities) == []


async def test_json_client_via_subprotocol(daphne_server: Server, clients: ClientPool) -> None:
    ws = daphne_server.ws_url
    bob = await clients.join(ws, "json-room", "bob")
    alice = await clients.open(
        f"{ws}/ws/json-room?user_id=alice", subprotocols=["graphwiz.json.v1"]
    )
    assert alice.ws.subprotocol == "graphwiz.json.v1"

    first = await alice.recv_frame()
    assert isinstance(first, str)
    hello = json.loads(first)
    assert hello["type"] == "SERVER_HELLO"
    alice_id = hello["serverHello"]["assignedClientId"]
    assert alice_id and hello["serverHello"]["hostClientId"] == bob.client_id

    await alice.send_raw(json.dumps({"chatMessage": {"message": "hi"}}))
    said = await bob.recv_kind("chat_message")
    assert (said.chat_message.from_client_id, said.chat_message.message) == (alice_id, "hi")

    await bob.send(pose(4.0))
    frame = await alice.recv_frame()
    assert isinstance(frame, str)
    moved = json.loads(frame)
    assert moved["senderId"] == bob.client_id
    assert moved["positionUpdate"]["position"]["x"] == 4.0


@pytest.mark.parametrize(
    "room", ["bad%20room", "x" * 65, "a/b", ""], ids=["space", "65-chars", "slash", "empty"]
)
async def test_invalid_room_id_gets_close_4400(
    daphne_server: Server, clients: ClientPool, room: str
) -> None:
    client = await clients.open(f"{daphne_server.ws_url}/ws/{room}?user_id=alice")
    code, before = await client.expect_close()
    assert [m.error.code for m in before] == [BAD_MESSAGE]
    assert code == 4400


async def test_no_credentials_in_time_gets_close_4408(
    daphne_server: Server, clients: ClientPool
) -> None:
    # The server waits PRESENCE_AUTH_TIMEOUT_SECONDS (1 s here) for a ClientHello token;
    # in development mode it says so at once, then refuses at the deadline.
    client = await clients.open(f"{daphne_server.ws_url}/ws/auth-room?display_name=Alice")
    code, before = await client.expect_close()
    assert [m.error.code for m in before] == [UNAUTHORIZED, UNAUTHORIZED]
    assert code == 4408


async def test_oversized_frame_is_refused_and_server_keeps_serving(
    daphne_server: Server, clients: ClientPool
) -> None:
    ws = daphne_server.ws_url
    alice = await clients.join(ws, "big-room", "alice")
    control = await clients.join(ws, "big-room", "control")
    bob = await clients.join(ws, "big-room", "bob")
    await alice.send(pose(1.0))
    assert (await control.recv_kind("position_update")).position_update.position.x == 1.0

    await bob.send_raw(b"\x00" * 70_000)
    assert MAX_WS_BYTES < 70_000
    code, before = await bob.expect_close()
    # daphne's own limit refuses the frame before the application sees it, with
    # 1009: the guarded protocol turns autobahn's failByDrop off, so the close
    # frame goes out instead of a silent TCP drop (1006).
    assert code == MESSAGE_TOO_BIG
    assert not any(m.WhichOneof("payload") == "error" for m in before)

    gone = await control.recv_until(lambda m: m.type == pb.PRESENCE_LEAVE)
    assert gone.presence_event.client_id == bob.client_id
    for x in (2.0, 3.0):
        await alice.send(pose(x))
        moved = await control.recv_kind("position_update")
        assert (moved.sender_id, moved.position_update.position.x) == (alice.client_id, x)


async def test_bad_frames_close_4007_and_others_unaffected(
    daphne_server: Server, clients: ClientPool
) -> None:
    ws = daphne_server.ws_url
    alice = await clients.join(ws, "bad-frames", "alice")
    control = await clients.join(ws, "bad-frames", "control")
    bob = await clients.join(ws, "bad-frames", "bob")
    server_only = pb.Message(server_hello=pb.ServerHello()).SerializeToString()
    bad_frames: list[bytes | str] = [
        b"\xff\xff",
        "{not json",
        server_only,
        b"",
    ]  # b"" has no payload

    for n in range(10):  # BAD_FRAME_LIMIT consecutive bad frames
        await bob.send_raw(bad_frames[n % len(bad_frames)])
    code, before = await bob.expect_close()
    assert [m.error.code for m in before] == [BAD_MESSAGE] * 10, [m.error.message for m in before]
    assert code == 4007

    gone = await control.recv_until(lambda m: m.type == pb.PRESENCE_LEAVE)
    assert gone.presence_event.client_id == bob.client_id
    await alice.send(pose(5.0))
    moved = await control.recv_kind("position_update")
    assert (moved.sender_id, moved.position_update.position.x) == (alice.client_id, 5.0)
    await alice.send(chat("still here"))
    assert (await control.recv_kind("chat_message")).chat_message.message == "still here"


async def test_history_is_recorded(daphne_server: Server, clients: ClientPool) -> None:
    ws = daphne_server.ws_url
    alice = await clients.join(
        ws, "history-room", "alice", display_name="Alice", client_id="headset-1"
    )
    bob = await clients.join(ws, "history-room", "bob")
    await alice.send(chat("hello history", message_id="m-1"))
    # The Ack is sent once the chat line is stored.
    assert (await alice.recv_kind("ack")).ack.message_id == "m-1"
    await alice.close()
    await bob.recv_until(lambda m: m.type == pb.PRESENCE_LEAVE)

    session = await eventually(
        lambda: read_row(
            daphne_server.sqlite_path,
            "SELECT * FROM presence_connectionsession"
            " WHERE assigned_client_id = ? AND disconnected_at IS NOT NULL",
            alice.client_id,
        )
    )
    assert (session["room_id"], session["external_user_id"], session["close_code"]) == (
        "history-room",
        "alice",
        1000,
    )
    assert (session["client_label"], session["display_name"]) == ("headset-1", "Alice")
    assert (session["messages_in"], session["messages_out"]) == (1, 3)  # hello, JOIN, Ack

    line = read_row(
        daphne_server.sqlite_path,
        "SELECT * FROM presence_chatmessage WHERE sender_client_id = ?",
        alice.client_id,
    )
    assert line is not None
    assert (line["room_id"], line["sender_name"], line["text"], line["session_id"]) == (
        "history-room",
        "Alice",
        "hello history",
        session["id"],
    )


def test_admin_and_health_http(daphne_server: Server) -> None:
    base = daphne_server.http_url
    status, content_type, body = http_get(f"{base}/health")
    assert (status, content_type) == (200, "application/json")
    health = json.loads(body)
    assert (health["status"], health["service"]) == ("healthy", "graphwiz-presence")

    status, _, body = http_get(f"{base}/admin/login/")
    assert status == 200 and "csrfmiddlewaretoken" in body
    status, content_type, _ = http_get(f"{base}/static/admin/css/base.css")
    assert (status, content_type) == (200, "text/css")

    status, content_type, body = http_get(f"{base}/metrics")
    assert status == 200 and content_type.startswith("text/plain")
    assert "# TYPE" in body


async def test_runserver_serves_health_and_websockets(
    runserver_server: Server, clients: ClientPool
) -> None:
    status, _, body = http_get(f"{runserver_server.http_url}/health")
    assert status == 200 and json.loads(body)["status"] == "healthy"
    alice = await clients.join(runserver_server.ws_url, "dev-room", "alice")
    assert alice.hello.room_id == "dev-room"
    assert alice.hello.host_client_id == alice.client_id


async def test_clients_on_two_instances_meet_through_redis(
    redis_daphne_pair: tuple[Server, Server], clients: ClientPool
) -> None:
    first, second = redis_daphne_pair
    alice = await clients.join(first.ws_url, "shared-room", "alice")
    bob = await clients.join(second.ws_url, "shared-room", "bob")
    joined = await alice.recv()
    assert (joined.type, joined.presence_event.client_id) == (pb.PRESENCE_JOIN, bob.client_id)

    await alice.send(pose(6.0))
    moved = await bob.recv_kind("position_update")
    assert (moved.sender_id, moved.position_update.position.x) == (alice.client_id, 6.0)
    await bob.send(chat("across instances"))
    said = await alice.recv_kind("chat_message")
    assert said.chat_message.from_client_id == bob.client_id and said.seq > 0
