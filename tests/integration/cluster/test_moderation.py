"""Moderation through the consumer and the admin: kick, ban, mute, lock.

Each order is recorded (``ModerationAction``), heard by the room and enforced;
both channel layers and registries (in process, Redis).
"""

from __future__ import annotations

from typing import Any

import pytest
from channels.db import database_sync_to_async
from django.contrib.auth import get_user_model
from django.test import AsyncClient
from rest_framework_simplejwt.tokens import AccessToken

from presence.models import ModerationAction, Room, RoomBan
from presence.protocol import pb
from presence.protocol.codes import CloseCode, ErrorCode
from presence.storage.history import get_history
from tests.clients.communicator import ProtocolClient

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("channel_layer_kind"),
]

ROOM = "agora"


async def joined(user: str, *, room: str = ROOM, token: str = "") -> ProtocolClient:
    query = f"auth_token={token}" if token else f"user_id={user}"
    client = ProtocolClient(f"/ws/{room}?{query}&display_name={user}")
    await client.join()
    await get_history().flush()  # the room row exists before the admin looks
    return client


@database_sync_to_async
def make_user(name: str, *, staff: bool = False) -> Any:
    return get_user_model().objects.create_user(name, is_staff=staff, is_superuser=staff)


@database_sync_to_async
def actions() -> list[tuple[str, str, str]]:
    rows = ModerationAction.objects.order_by("created_at")
    return [(a.action, a.target_client_id, a.actor_client_id) for a in rows]


async def staff_client(name: str = "mo") -> tuple[ProtocolClient, Any]:
    user = await make_user(name, staff=True)
    return await joined(name, token=str(AccessToken.for_user(user))), user


def kick(target: str, reason: str = "") -> pb.Message:
    return pb.Message(
        message_id="k1", kick_player=pb.KickPlayer(target_client_id=target, reason=reason)
    )


def mute(target: str, muted: bool = True) -> pb.Message:
    return pb.Message(mute_player=pb.MutePlayer(target_client_id=target, muted=muted))


def lock(locked: bool = True) -> pb.Message:
    return pb.Message(lock_room=pb.LockRoom(locked=locked, reason="full"))


def chat(text: str) -> pb.Message:
    return pb.Message(chat_message=pb.ChatMessage(message=text))


async def expect_refused(user: str, error: int, close: int) -> None:
    client = ProtocolClient(f"/ws/{ROOM}?user_id={user}")
    accepted, _ = await client.open()
    assert accepted
    refusal = await client.recv()
    assert refusal.error.code == error, refusal
    assert await client.expect_close() == close


# --- orders from clients ----------------------------------------------------


async def test_a_staff_client_kicks_a_member_who_hears_it_then_is_closed_4403() -> None:
    alice = await joined("alice")
    mo, staff_user = await staff_client()
    bob = await joined("bob")

    await mo.send(kick(bob.client_id, "spam"))

    assert (await mo.recv_kind("ack")).ack.message_id == "k1"
    for member in (alice, bob):
        kicked = (await member.recv_kind("player_kicked")).player_kicked
        assert (kicked.kicked_client_id, kicked.kicked_by_client_id, kicked.reason) == (
            bob.client_id,
            mo.client_id,
            "spam",
        )
    assert (await bob.recv_kind("error")).error.code == ErrorCode.FORBIDDEN
    assert await bob.expect_close() == CloseCode.FORBIDDEN
    left = await alice.recv_kind("presence_event")
    assert (left.presence_event.event_type, left.presence_event.client_id) == (
        pb.LEAVE,
        bob.client_id,
    )
    record = await database_sync_to_async(ModerationAction.objects.get)()
    assert (record.action, record.target_user_id, record.actor_id) == (
        "kick",
        "bob",
        staff_user.pk,
    )


async def test_a_plain_member_may_not_kick() -> None:
    await joined("alice")
    bob = await joined("bob")
    carol = await joined("carol")
    await bob.send(kick(carol.client_id))
    assert (await bob.recv_kind("error")).error.code == ErrorCode.FORBIDDEN
    assert await actions() == []


async def test_the_host_locks_the_room_and_the_next_join_is_refused_at_once() -> None:
    alice = await joined("alice")  # the host
    bob = await joined("bob")
    await alice.send(lock())
    locked = (await bob.recv_kind("room_locked")).room_locked
    assert (locked.locked, locked.locked_by_client_id, locked.reason) == (
        True,
        alice.client_id,
        "full",
    )
    await expect_refused("carol", ErrorCode.ROOM_LOCKED, CloseCode.ROOM_UNAVAILABLE)
    room = await database_sync_to_async(Room.objects.get)(pk=ROOM)
    assert room.locked
    await alice.send(lock(False))
    assert (await bob.recv_kind("room_locked")).room_locked.locked is False
    await joined("carol")


async def test_a_muted_member_is_not_heard_until_unmuted() -> None:
    alice = await joined("alice")
    mo, _ = await staff_client()
    bob = await joined("bob")
    await mo.send(mute(bob.client_id))
    assert (await bob.recv_kind("player_muted")).player_muted.muted is True

    await bob.send(chat("can you hear me"))
    assert (await bob.recv_kind("error")).error.code == ErrorCode.FORBIDDEN
    await mo.send(mute(bob.client_id, muted=False))
    await bob.recv_kind("player_muted")
    await bob.send(chat("now?"))
    heard = await alice.recv_kind("chat_message")
    assert heard.chat_message.message == "now?"  # the muted line never arrived
    assert [a[0] for a in await actions()] == ["mute", "unmute"]


# --- orders from the admin ----------------------------------------------------


async def admin_client() -> AsyncClient:
    client = AsyncClient()
    await client.aforce_login(await make_user("root", staff=True))
    return client


async def moderate(client: AsyncClient, **form: Any) -> Any:
    response = await client.post(f"/admin/presence/room/{ROOM}/moderate/", form)
    assert response.status_code == 302, response.content[:500]
    return response


async def test_the_admin_page_lists_who_is_connected_now() -> None:
    alice = await joined("alice")
    bob = await joined("bob")
    response = await (await admin_client()).get(f"/admin/presence/room/{ROOM}/change/")
    page = response.content.decode()
    assert response.status_code == 200
    for client in (alice, bob):
        assert f'data-client-id="{client.client_id}"' in page
    assert f"host {alice.client_id}" in page


async def test_an_admin_kick_with_a_ban_keeps_the_user_out() -> None:
    alice = await joined("alice")
    bob = await joined("bob")
    await moderate(
        await admin_client(),
        action="kick",
        target_client_id=bob.client_id,
        reason="abuse",
        ban_minutes=10,
    )
    kicked = (await alice.recv_kind("player_kicked")).player_kicked
    assert (kicked.kicked_client_id, kicked.kicked_by_client_id) == (bob.client_id, "")
    assert await bob.expect_close() == CloseCode.FORBIDDEN
    await expect_refused("bob", ErrorCode.FORBIDDEN, CloseCode.FORBIDDEN)
    ban = await database_sync_to_async(RoomBan.objects.get)()
    assert (ban.room_id, ban.user_id, ban.reason) == (ROOM, "bob", "abuse")
    await joined("carol")  # others still come in


async def test_an_admin_mute_silences_chat_and_unmute_restores_it() -> None:
    alice = await joined("alice")
    bob = await joined("bob")
    admin = await admin_client()
    await moderate(admin, action="mute", target_client_id=bob.client_id)
    assert (await bob.recv_kind("player_muted")).player_muted.muted is True
    await bob.send(chat("hello?"))
    assert (await bob.recv_kind("error")).error.code == ErrorCode.FORBIDDEN
    await moderate(admin, action="unmute", target_client_id=bob.client_id)
    await bob.recv_kind("player_muted")
    await bob.send(chat("hello"))
    assert (await alice.recv_kind("chat_message")).chat_message.message == "hello"


async def test_an_admin_lock_is_heard_and_refuses_joins_at_once() -> None:
    alice = await joined("alice")
    await moderate(await admin_client(), action="lock", reason="closing")
    locked = (await alice.recv_kind("room_locked")).room_locked
    assert (locked.locked, locked.reason) == (True, "closing")
    await expect_refused("bob", ErrorCode.ROOM_LOCKED, CloseCode.ROOM_UNAVAILABLE)
    assert [a[0] for a in await actions()] == ["lock"]


async def test_a_kick_without_a_target_is_refused_by_the_form() -> None:
    await joined("alice")
    await moderate(await admin_client(), action="kick")
    assert await actions() == []


async def test_non_staff_cannot_moderate_from_the_admin() -> None:
    await joined("alice")
    client = AsyncClient()
    await client.aforce_login(await make_user("guest"))
    response = await client.post(f"/admin/presence/room/{ROOM}/moderate/", {"action": "lock"})
    assert response.status_code == 302 and "/admin/login/" in response["Location"]
    assert await actions() == []
