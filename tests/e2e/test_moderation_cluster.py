"""End to end: admin and client moderation across two daphne instances (issue 6).

Every order is given on instance A and carried out on instance B, where its
target is connected: the admin's live presence lists B's connections, a kick
closes the target on B with 4403 (and a ban keeps it out), a mute silences it
there, a lock refuses joins on B at once. Staff sign in to A's admin over HTTP
(a session cookie and the CSRF token) or join A with a JWT; the audit rows are
read from the cluster's shared SQLite file. Each test uses a room of its own.
"""

from __future__ import annotations

import contextlib
import re
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from presence.protocol import pb
from tests.clients.live import (
    AdminSession,
    Client,
    ClientPool,
    chat,
    collect,
    eventually,
    expect_close,
    is_event,
    join_refused,
    kinds,
    obtain_token,
)
from tests.e2e.conftest import Cluster, StaffUser

pytestmark = pytest.mark.e2e

FORBIDDEN = pb.Error.FORBIDDEN
MUTED = pb.Error.MUTED
ROOM_LOCKED = pb.Error.ROOM_LOCKED
CLOSE_FORBIDDEN = 4403  # PROTOCOL.md section 7: kicked or banned
CLOSE_ROOM_UNAVAILABLE = 4423  # locked or full
# An order crosses Redis in milliseconds; the deadline only bounds a failure.
ORDER_SECONDS = 5.0
LIVE_ROW = re.compile(r'<tr class="live-connection" data-client-id="([^"]*)"[^>]*>(.*?)</tr>', re.S)


# --- helpers ------------------------------------------------------------------


def live_rows(admin: AdminSession, room: str) -> dict[str, str] | None:
    """The live-presence rows of the room's admin page by client id (None: not a page)."""
    status, body = admin.get(f"/admin/presence/room/{room}/change/")
    if status != 200:
        return None
    # Until the room's row is written the admin redirects to its index: no rows.
    return dict(LIVE_ROW.findall(body))


async def admin_lists(admin: AdminSession, room: str, client_id: str) -> str:
    """Wait until the room's admin page lists ``client_id``; return its row's HTML."""
    return await eventually(lambda: (live_rows(admin, room) or {}).get(client_id))


def moderate(admin: AdminSession, room: str, **fields: str) -> None:
    """Give an order with the room page's moderation form; assert the admin accepted it."""
    status, body = admin.post(f"/admin/presence/room/{room}/moderate/", fields)
    assert status == 200, f"moderate answered {status}: {body[:500]}"
    # The view redirects to the room's page with a success or an error message.
    assert ": done.</li>" in body, re.findall(r'<li class="(?:error|warning)">.*?</li>', body)


def rows(db: Path, sql: str, *params: Any) -> list[sqlite3.Row]:
    """Rows from the cluster's SQLite file, read-only (the servers keep writing)."""
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)) as conn:
        conn.row_factory = sqlite3.Row
        return list(conn.execute(sql, params))


def moderation_rows(cluster: Cluster, room: str, action: str) -> list[sqlite3.Row]:
    """The room's ``ModerationAction`` rows of one ``action``, oldest first."""
    return rows(
        cluster.a.sqlite_path,
        "SELECT * FROM presence_moderationaction WHERE room_id = ? AND action = ? ORDER BY id",
        room,
        action,
    )


def room_locked_in_db(cluster: Cluster, room: str) -> bool:
    """``Room.locked`` as the database has it."""
    (row,) = rows(cluster.a.sqlite_path, "SELECT locked FROM presence_room WHERE id = ?", room)
    return bool(row["locked"])


def is_kind(kind: str) -> Callable[[pb.Message], bool]:
    """A predicate for ``recv_until``: a message whose payload is ``kind``."""
    return lambda m: m.WhichOneof("payload") == kind


def last_is(
    predicate: Callable[[pb.Message], bool],
) -> Callable[[list[pb.Message]], bool]:
    """An ``until`` for ``collect``: the last message read matches ``predicate``."""
    return lambda got: bool(got) and predicate(got[-1])


def kick(target: Client, reason: str, message_id: str) -> pb.Message:
    """A client's ``KickPlayer`` order against ``target``."""
    order = pb.KickPlayer(target_client_id=target.client_id, reason=reason)
    return pb.Message(message_id=message_id, kick_player=order)


def voice(sequence_number: int) -> pb.Message:
    """A small ``VoiceData`` frame."""
    data = pb.VoiceData(audio_data=b"\x01\x02", sequence_number=sequence_number, codec=0)
    return pb.Message(voice_data=data)


async def join_three(
    clients: ClientPool, cluster: Cluster, room: str
) -> tuple[Client, Client, Client]:
    """Alice joins on A (host), then Bob and Carol on B; returns once all saw Carol."""
    alice = await clients.join(cluster.a.ws_url, room, "alice", display_name="Alice")
    bob = await clients.join(cluster.b.ws_url, room, "bob", display_name="Bob")
    carol = await clients.join(cluster.b.ws_url, room, "carol", display_name="Carol")
    for member in (alice, bob):
        await member.recv_until(is_event(pb.PRESENCE_JOIN, carol.client_id))
    return alice, bob, carol


# --- the admin on A -----------------------------------------------------------


async def test_admin_page_on_a_lists_a_connection_made_to_b(
    cluster: Cluster, clients: ClientPool, cluster_admin: AdminSession
) -> None:
    room = "mod-live"
    alice = await clients.join(cluster.a.ws_url, room, "alice", display_name="Alice")
    bob = await clients.join(cluster.b.ws_url, room, "bob", display_name="Bob")

    row = await admin_lists(cluster_admin, room, bob.client_id)
    assert "<td>bob</td>" in row and "<td>Bob</td>" in row
    assert f"<td>{cluster.instance_of(room, bob.client_id)}</td>" in row
    listed = live_rows(cluster_admin, room)
    assert listed is not None and list(listed) == [alice.client_id, bob.client_id]
    assert f"<td>{cluster.instance_of(room, alice.client_id)}</td>" in listed[alice.client_id]
    assert cluster.instance_of(room, alice.client_id) != cluster.instance_of(room, bob.client_id)


async def test_admin_kick_with_ban_from_a_closes_the_target_on_b_and_keeps_it_out(
    cluster: Cluster,
    clients: ClientPool,
    cluster_admin: AdminSession,
    cluster_staff: StaffUser,
) -> None:
    room = "mod-admin-kick"
    alice, bob, carol = await join_three(clients, cluster, room)
    await admin_lists(cluster_admin, room, bob.client_id)

    moderate(
        cluster_admin,
        room,
        action="kick",
        target_client_id=bob.client_id,
        reason="spam",
        ban_minutes="10",
    )
    before = await expect_close(bob, CLOSE_FORBIDDEN, timeout=ORDER_SECONDS)
    assert kinds(before) == ["player_kicked", "error"]
    kicked, refused = before
    expected = (pb.PLAYER_KICKED, bob.client_id, "", "spam")
    heard = kicked.player_kicked
    assert (
        kicked.type,
        heard.kicked_client_id,
        heard.kicked_by_client_id,
        heard.reason,
    ) == expected
    assert kicked.seq > 0
    assert refused.error.code == FORBIDDEN
    for watcher in (alice, carol):  # alice on A, carol on B
        kicked = await watcher.recv_kind("player_kicked")
        heard = kicked.player_kicked
        assert (
            kicked.type,
            heard.kicked_client_id,
            heard.kicked_by_client_id,
            heard.reason,
        ) == expected
        await watcher.recv_until(is_event(pb.PRESENCE_LEAVE, bob.client_id))

    refusal = await join_refused(clients, cluster.b.ws_url, room, "bob", CLOSE_FORBIDDEN)
    assert [m.error.code for m in refusal] == [FORBIDDEN]
    dave = await clients.join(cluster.b.ws_url, room, "dave")  # the ban is bob's alone
    assert dave.hello.room_id == room

    (action,) = moderation_rows(cluster, room, "kick")
    assert (
        action["target_client_id"],
        action["target_user_id"],
        action["actor_id"],
        action["actor_client_id"],
        action["reason"],
    ) == (bob.client_id, "bob", cluster_staff.pk, "", "spam")
    (ban,) = rows(cluster.a.sqlite_path, "SELECT * FROM presence_roomban WHERE room_id = ?", room)
    assert (ban["user_id"], ban["reason"]) == ("bob", "spam")
    assert ban["until"] is not None and ban["until"] == action["banned_until"]


async def test_admin_mute_from_a_silences_the_target_on_b_until_unmuted(
    cluster: Cluster, clients: ClientPool, cluster_admin: AdminSession
) -> None:
    room = "mod-admin-mute"
    alice, bob, carol = await join_three(clients, cluster, room)
    await admin_lists(cluster_admin, room, bob.client_id)

    moderate(cluster_admin, room, action="mute", target_client_id=bob.client_id, reason="loud")
    for member in (bob, alice, carol):
        muted = await member.recv_kind("player_muted")
        heard = muted.player_muted
        assert (muted.type, heard.muted_client_id, heard.muted, heard.reason) == (
            pb.PLAYER_MUTED,
            bob.client_id,
            True,
            "loud",
        )
    # Visible cluster-wide: in Bob's registry entry, and on A's admin page though Bob is on B.
    assert cluster.conn(room, bob.client_id)["muted"] == b"1"
    status, page = cluster_admin.get(f"/admin/presence/room/{room}/change/")
    assert status == 200
    assert re.search(rf'data-client-id="{bob.client_id}"[^>]* data-muted="true"', page)

    await bob.send(chat("can you hear me", message_id="muted-chat"))
    refused = await bob.recv()
    assert (refused.error.code, refused.error.ref_message_id) == (MUTED, "muted-chat")
    await bob.send(voice(1))
    # Bob's rename is relayed after anything he sent before it: it marks the end.
    await bob.send(pb.Message(client_hello=pb.ClientHello(display_name="Bob, muted")))
    renamed = is_event(pb.PRESENCE_UPDATE, bob.client_id)
    for listener in (alice, carol):
        got = await collect(listener, last_is(renamed), timeout=ORDER_SECONDS)
        assert kinds(got) == ["presence_event"], kinds(got)

    moderate(cluster_admin, room, action="unmute", target_client_id=bob.client_id)
    for member in (bob, alice, carol):
        muted = await member.recv_kind("player_muted")
        assert (muted.player_muted.muted_client_id, muted.player_muted.muted) == (
            bob.client_id,
            False,
        )
    await bob.send(chat("back again", message_id="unmuted-chat"))
    answer = await bob.recv()
    assert (answer.WhichOneof("payload"), answer.ack.message_id) == ("ack", "unmuted-chat")
    await bob.send(voice(2))
    for listener in (alice, carol):
        said = await listener.recv_kind("chat_message")
        assert (said.chat_message.from_client_id, said.chat_message.message) == (
            bob.client_id,
            "back again",
        )
        spoken = await listener.recv_kind("voice_data")
        assert (spoken.sender_id, spoken.voice_data.sequence_number) == (bob.client_id, 2)


async def test_admin_lock_from_a_refuses_joins_on_b_at_once_until_unlocked(
    cluster: Cluster, clients: ClientPool, cluster_admin: AdminSession
) -> None:
    room = "mod-admin-lock"
    alice = await clients.join(cluster.a.ws_url, room, "alice")
    bob = await clients.join(cluster.b.ws_url, room, "bob")
    await admin_lists(cluster_admin, room, bob.client_id)
    # A join on B just before the lock: B now holds the room's rules as "open".
    carol = await clients.join(cluster.b.ws_url, room, "carol")
    members = (alice, bob, carol)

    moderate(cluster_admin, room, action="lock", reason="private event")
    for member in members:
        locked = await member.recv_kind("room_locked")
        heard = locked.room_locked
        assert (locked.type, heard.locked, heard.locked_by_client_id, heard.reason) == (
            pb.ROOM_LOCKED,
            True,
            "",
            "private event",
        )
    refusal = await join_refused(clients, cluster.b.ws_url, room, "dave", CLOSE_ROOM_UNAVAILABLE)
    assert [m.error.code for m in refusal] == [ROOM_LOCKED]
    refusal = await join_refused(clients, cluster.a.ws_url, room, "erin", CLOSE_ROOM_UNAVAILABLE)
    assert [m.error.code for m in refusal] == [ROOM_LOCKED]
    assert room_locked_in_db(cluster, room)
    for marker, member in enumerate(members, start=1):  # the members stay
        await member.send(pb.Message(ping=pb.Ping(client_time_ms=marker)))
        pong = await member.recv_kind("pong")
        assert pong.pong.client_time_ms == marker

    moderate(cluster_admin, room, action="unlock")
    for member in members:
        unlocked = await member.recv_kind("room_locked")
        assert (unlocked.room_locked.locked, unlocked.room_locked.locked_by_client_id) == (
            False,
            "",
        )
    dave = await clients.join(cluster.b.ws_url, room, "dave")
    assert dave.hello.room_id == room
    assert not room_locked_in_db(cluster, room)


# --- moderating clients ---------------------------------------------------------


async def test_staff_client_on_a_kicks_a_client_on_b(
    cluster: Cluster, clients: ClientPool, cluster_staff: StaffUser
) -> None:
    room = "mod-client-kick"
    token = obtain_token(cluster.a.http_url, cluster_staff.username, cluster_staff.password)
    alice, bob, carol = await join_three(clients, cluster, room)
    staff = await clients.join(cluster.a.ws_url, room, str(cluster_staff.pk), auth_token=token)
    for member in (alice, bob, carol):
        await member.recv_until(is_event(pb.PRESENCE_JOIN, staff.client_id))

    await staff.send(kick(bob, "griefing", "kick-1"))
    answer = await staff.recv()
    assert (answer.WhichOneof("payload"), answer.ack.message_id) == ("ack", "kick-1"), answer
    before = await expect_close(bob, CLOSE_FORBIDDEN, timeout=ORDER_SECONDS)
    assert kinds(before) == ["player_kicked", "error"]
    expected = (bob.client_id, staff.client_id, "griefing")
    heard = before[0].player_kicked
    assert (heard.kicked_client_id, heard.kicked_by_client_id, heard.reason) == expected
    assert before[1].error.code == FORBIDDEN
    for watcher in (alice, carol):
        kicked = await watcher.recv_kind("player_kicked")
        heard = kicked.player_kicked
        assert kicked.type == pb.PLAYER_KICKED
        assert (heard.kicked_client_id, heard.kicked_by_client_id, heard.reason) == expected
        assert kicked.sender_id == staff.client_id
    # The sender gets its Ack, never the broadcast: the next thing it hears is Bob leaving.
    got = await collect(
        staff, last_is(is_event(pb.PRESENCE_LEAVE, bob.client_id)), timeout=ORDER_SECONDS
    )
    assert kinds(got) == ["presence_event"], kinds(got)

    (action,) = moderation_rows(cluster, room, "kick")
    assert (
        action["target_client_id"],
        action["target_user_id"],
        action["actor_id"],
        action["actor_client_id"],
        action["reason"],
        action["banned_until"],
    ) == (bob.client_id, "bob", cluster_staff.pk, staff.client_id, "griefing", None)


async def test_kick_player_from_a_member_who_is_not_staff_is_forbidden(
    cluster: Cluster, clients: ClientPool
) -> None:
    room = "mod-client-forbidden"
    alice, bob, carol = await join_three(clients, cluster, room)  # alice is the host

    for sender, target in ((carol, alice), (alice, bob)):  # a member, then the host
        await sender.send(kick(target, "mine", "not-yours"))
        refused = await sender.recv()
        assert (refused.error.code, refused.error.ref_message_id) == (FORBIDDEN, "not-yours")
    # Carol's chat is relayed after anything she sent before it: nobody was kicked.
    await carol.send(chat("still here?"))
    for listener in (alice, bob):
        got = await collect(listener, last_is(is_kind("chat_message")), timeout=ORDER_SECONDS)
        assert kinds(got) == ["chat_message"], kinds(got)
    assert moderation_rows(cluster, room, "kick") == []


async def test_host_on_a_locks_the_room_and_a_join_on_b_is_refused(
    cluster: Cluster, clients: ClientPool
) -> None:
    room = "mod-client-lock"
    alice, bob, carol = await join_three(clients, cluster, room)
    assert alice.hello.host_client_id == alice.client_id

    lock = pb.LockRoom(locked=True, reason="full house")
    await alice.send(pb.Message(message_id="lock-1", lock_room=lock))
    answer = await alice.recv()
    assert (answer.WhichOneof("payload"), answer.ack.message_id) == ("ack", "lock-1")
    for member in (bob, carol):
        locked = await member.recv_kind("room_locked")
        heard = locked.room_locked
        assert (locked.type, heard.locked, heard.locked_by_client_id, heard.reason) == (
            pb.ROOM_LOCKED,
            True,
            alice.client_id,
            "full house",
        )
    refusal = await join_refused(clients, cluster.b.ws_url, room, "dave", CLOSE_ROOM_UNAVAILABLE)
    assert [m.error.code for m in refusal] == [ROOM_LOCKED]
    assert room_locked_in_db(cluster, room)

    (action,) = moderation_rows(cluster, room, "lock")
    assert (action["actor_id"], action["actor_client_id"], action["reason"]) == (
        None,
        alice.client_id,
        "full house",
    )
