"""End to end: a two-instance cluster when an instance or Redis goes away (issue 5).

Each test kills something, so each gets fresh servers and a Redis of its own
(``fresh_cluster``). Lease 3 s, heartbeat 0.5 s (``cluster_env``): a crashed
instance is swept by the survivor within about 3.5 s.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections import Counter
from pathlib import Path

import pytest

from presence.protocol import pb
from tests.clients.live import (
    Client,
    ClientPool,
    chat,
    collect,
    eventually,
    expect_close,
    http_get,
    is_event,
    join_eventually,
    pose,
    wait_until,
)
from tests.e2e.conftest import CLUSTER_HEARTBEAT_SECONDS, CLUSTER_LEASE_SECONDS, Cluster

pytestmark = pytest.mark.e2e

GOING_AWAY = 4000
BACKEND_UNAVAILABLE = 4012
UNAVAILABLE = pb.Error.UNAVAILABLE
# A crashed instance's last heartbeat is at most one lease old when the survivor's
# next sweep (every heartbeat) finds it; the margin is for a loaded 2-core machine.
SWEEP_SECONDS = CLUSTER_LEASE_SECONDS + CLUSTER_HEARTBEAT_SECONDS + 3.0
# "Within a few heartbeats" of Redis going away, with the same margin.
OUTAGE_SECONDS = 4 * CLUSTER_HEARTBEAT_SECONDS + 3.0
RECOVERY_SECONDS = 10.0
STOP_SECONDS = 5.0


def session_row(db: Path, client_id: str) -> sqlite3.Row | None:
    """The ``ConnectionSession`` row of ``client_id``, read-only (the servers keep writing)."""
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)) as conn:
        conn.row_factory = sqlite3.Row
        row: sqlite3.Row | None = conn.execute(
            "SELECT * FROM presence_connectionsession WHERE assigned_client_id = ?", (client_id,)
        ).fetchone()
        return row


def closed_session(db: Path, client_id: str) -> sqlite3.Row | None:
    """The row of ``client_id`` once its ``disconnected_at`` is set."""
    row = session_row(db, client_id)
    return row if row is not None and row["disconnected_at"] is not None else None


def about(message: pb.Message) -> tuple[int, str]:
    """(type, the client or entity it is about) of a message."""
    if message.HasField("presence_event"):
        return message.type, message.presence_event.client_id
    if message.HasField("entity_despawn"):
        return message.type, message.entity_despawn.entity_id
    return message.type, message.WhichOneof("payload") or ""


def event_summary(messages: list[pb.Message]) -> Counter[tuple[int, str]]:
    """How often each (type, client or entity id) occurs, ignoring poses."""
    return Counter(about(m) for m in messages if not m.HasField("position_update"))


async def seat_three(
    cluster: Cluster, clients: ClientPool, room: str
) -> tuple[Client, Client, Client]:
    """Alice (host) and Carol join on A, Bob on B; returns once Bob has seen both."""
    alice = await clients.join(cluster.a.ws_url, room, "alice")
    carol = await clients.join(cluster.a.ws_url, room, "carol")
    bob = await clients.join(cluster.b.ws_url, room, "bob")
    assert bob.hello.host_client_id == alice.client_id
    assert {p.client_id for p in bob.hello.initial_state.players} == {
        alice.client_id,
        carol.client_id,
    }
    await alice.recv_until(is_event(pb.PRESENCE_JOIN, bob.client_id))
    await carol.recv_until(is_event(pb.PRESENCE_JOIN, bob.client_id))
    return alice, carol, bob


def assert_no_trace(cluster: Cluster, room: str, instance: str, client_ids: list[str]) -> None:
    """Redis keeps nothing of ``instance`` and its connections in ``room``."""
    assert instance not in cluster.instances()
    assert not cluster.exists("instance", instance, "conns")
    for client_id in client_ids:
        assert client_id not in cluster.members(room)
        assert cluster.conn(room, client_id) == {}
        assert not cluster.exists("room", room, "entities", client_id)


async def test_killed_instance_is_swept_and_its_clients_leave(
    fresh_cluster: Cluster, clients: ClientPool
) -> None:
    cluster, room = fresh_cluster, "sigkill"
    alice, carol, bob = await seat_three(cluster, clients, room)
    for owner, entity_id in ((alice, "lamp"), (carol, "chair")):
        await owner.send(
            pb.Message(entity_spawn=pb.EntitySpawn(entity_id=entity_id, template_id=entity_id))
        )
        assert (await bob.recv_kind("entity_spawn")).entity_spawn.entity_id == entity_id
    await wait_until(
        lambda: (
            "lamp" in cluster.entities(room, alice.client_id)
            and "chair" in cluster.entities(room, carol.client_id)
        ),
        timeout=2.0,
    )
    instance_a = cluster.instance_of(room, alice.client_id)
    assert instance_a != cluster.instance_of(room, bob.client_id)
    assert instance_a in cluster.instances()

    cluster.a.process.kill()
    # One hand-over, straight to Bob: Carol died with A, so she must not be host even briefly.
    expected = Counter(
        {
            (pb.PRESENCE_LEAVE, alice.client_id): 1,
            (pb.PRESENCE_LEAVE, carol.client_id): 1,
            (pb.ENTITY_DESPAWN, "lamp"): 1,
            (pb.ENTITY_DESPAWN, "chair"): 1,
            (pb.PRESENCE_UPDATE, bob.client_id): 1,
        }
    )
    seen = await collect(bob, lambda got: event_summary(got) >= expected, timeout=SWEEP_SECONDS)
    assert event_summary(seen) == expected, [about(m) for m in seen]
    handover = next(m for m in seen if m.type == pb.PRESENCE_UPDATE)
    assert handover.presence_event.data.host_client_id == bob.client_id

    gone = [alice.client_id, carol.client_id]
    await wait_until(lambda: cluster.members(room) == [bob.client_id], timeout=2.0)
    assert_no_trace(cluster, room, instance_a, gone)
    assert cluster.host(room) == bob.client_id
    for client_id in gone:
        row = await eventually(lambda c=client_id: closed_session(cluster.a.sqlite_path, c))
        assert row["close_reason"] == "lost", client_id
    bob_row = await eventually(lambda: session_row(cluster.b.sqlite_path, bob.client_id))
    assert bob_row["disconnected_at"] is None

    dave = await clients.join(cluster.b.ws_url, room, "dave")
    assert dave.hello.host_client_id == bob.client_id
    assert [p.client_id for p in dave.hello.initial_state.players] == [bob.client_id]
    assert list(dave.hello.initial_state.entities) == []
    assert cluster.b.process.poll() is None


async def test_terminated_instance_closes_4000_and_its_members_stay_for_their_grace(
    fresh_cluster: Cluster, clients: ClientPool
) -> None:
    """Issue 11: with another instance alive, a drain hands its members over.

    They get 4000 and stay present (they may resume on B unseen); whoever does
    not come back leaves once the lease and the grace are over (the sweep).
    """
    cluster, room = fresh_cluster, "sigterm"
    alice, carol, bob = await seat_three(cluster, clients, room)
    instance_a = cluster.instance_of(room, alice.client_id)

    cluster.a.process.terminate()
    await asyncio.gather(
        expect_close(alice, GOING_AWAY, timeout=STOP_SECONDS),
        expect_close(carol, GOING_AWAY, timeout=STOP_SECONDS),
    )
    await wait_until(lambda: cluster.a.process.poll() is not None, timeout=STOP_SECONDS)
    assert set(cluster.members(room)) == {alice.client_id, carol.client_id, bob.client_id}

    expected = Counter(
        {
            (pb.PRESENCE_LEAVE, alice.client_id): 1,
            (pb.PRESENCE_LEAVE, carol.client_id): 1,
            (pb.PRESENCE_UPDATE, bob.client_id): 1,
        }
    )
    seen = await collect(bob, lambda got: event_summary(got) >= expected, timeout=SWEEP_SECONDS)
    assert event_summary(seen) == expected, [about(m) for m in seen]
    await wait_until(lambda: cluster.members(room) == [bob.client_id], timeout=2.0)
    assert_no_trace(cluster, room, instance_a, [alice.client_id, carol.client_id])
    assert cluster.b.process.poll() is None


def ready_status(url: str) -> int:
    """The status ``GET /ready`` answers."""
    return http_get(f"{url}/ready")[0]


async def test_ready_answers_503_while_redis_is_down(fresh_cluster: Cluster) -> None:
    cluster = fresh_cluster
    assert [ready_status(s.http_url) for s in (cluster.a, cluster.b)] == [200, 200]

    cluster.redis.kill()
    for server in (cluster.a, cluster.b):
        await wait_until(lambda s=server: ready_status(s.http_url) == 503, timeout=OUTAGE_SECONDS)
        assert server.process.poll() is None

    cluster.redis.restart()
    for server in (cluster.a, cluster.b):
        await wait_until(lambda s=server: ready_status(s.http_url) == 200, timeout=RECOVERY_SECONDS)
        assert server.process.poll() is None


async def test_redis_outage_closes_4012_refuses_joins_and_recovers(
    fresh_cluster: Cluster, clients: ClientPool
) -> None:
    cluster, room = fresh_cluster, "outage"
    alice = await clients.join(cluster.a.ws_url, room, "alice")
    bob = await clients.join(cluster.b.ws_url, room, "bob")
    await alice.recv_until(is_event(pb.PRESENCE_JOIN, bob.client_id))

    cluster.redis.kill()
    for client in await asyncio.gather(
        expect_close(alice, BACKEND_UNAVAILABLE, timeout=OUTAGE_SECONDS),
        expect_close(bob, BACKEND_UNAVAILABLE, timeout=OUTAGE_SECONDS),
    ):
        assert [(m.WhichOneof("payload"), m.error.code) for m in client] in (
            [],
            [("error", UNAVAILABLE)],
        )
    for server in (cluster.a, cluster.b):
        refused = await clients.open(f"{server.ws_url}/ws/{room}?user_id=carol")
        before = await expect_close(refused, BACKEND_UNAVAILABLE, timeout=OUTAGE_SECONDS)
        assert [(m.WhichOneof("payload"), m.error.code) for m in before] in (
            [],
            [("error", UNAVAILABLE)],
        )
        assert server.process.poll() is None

    cluster.redis.restart()
    erin = await join_eventually(clients, cluster.a.ws_url, room, "erin", timeout=RECOVERY_SECONDS)
    frank = await join_eventually(
        clients, cluster.b.ws_url, room, "frank", timeout=RECOVERY_SECONDS
    )
    assert frank.hello.host_client_id == erin.client_id
    await erin.recv_until(is_event(pb.PRESENCE_JOIN, frank.client_id))
    await erin.send(pose(3.0))
    moved = await frank.recv_kind("position_update")
    assert (moved.sender_id, moved.position_update.position.x) == (erin.client_id, 3.0)
    await frank.send(chat("back again"))
    said = await erin.recv_kind("chat_message")
    assert (said.chat_message.from_client_id, said.chat_message.message) == (
        frank.client_id,
        "back again",
    )
    assert [s.process.poll() for s in (cluster.a, cluster.b)] == [None, None]
