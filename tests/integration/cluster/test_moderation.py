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

from presence.cluster.instance import get_hub
from presence.models import ModerationAction, Room, RoomBan
from presence.protocol import pb
from presence.protocol.codes import CloseCode, ErrorCode
from presence.storage.history import get_history
from tests.clients.communicator import ProtocolClient
from tests.conftest import closed_redis_url, layer_config

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


def mute(target: str, muted: bool = True, message_id: str = "") -> pb.Message:
    return pb.Message(
        message_id=message_id, mute_player=pb.MutePlayer(target_client_id=target, muted=muted)
    )


async def muted_in_registry() -> dict[str, bool]:
    """Who the registry (every instance's view) says is muted, by client id."""
    view = await get_hub().registry.view(ROOM)
    return {c.client_id: c.muted for c in view.connections}


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


@pytest.mark.parametrize("order", [kick, mute], ids=["kick", "mute"])
async def test_kicking_or_muting_someone_not_in_the_room_is_an_error_not_an_ack(
    order: Any,
) -> None:
    alice = await joined("alice")
    mo, _ = await staff_client()
    await alice.recv_kind("presence_event")  # mo's JOIN

    message = order("c0000000000000000")
    message.message_id = "ghost-1"
    await mo.send(message)

    error = (await mo.recv_kind("error")).error
    assert (error.code, error.ref_message_id) == (ErrorCode.BAD_MESSAGE, "ghost-1")
    assert "'c0000000000000000' is not in this room" in error.message
    assert await actions() == []
    await alice.send(pb.Message(ping=pb.Ping(client_time_ms=5)))  # nothing was announced
    assert (await alice.recv()).WhichOneof("payload") == "pong"


async def test_a_plain_member_naming_someone_absent_is_still_told_it_may_not() -> None:
    await joined("alice")
    bob = await joined("bob")
    await bob.send(kick("c0000000000000000"))
    assert (await bob.recv_kind("error")).error.code == ErrorCode.FORBIDDEN


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
    assert (await bob.recv_kind("error")).error.code == ErrorCode.MUTED
    await mo.send(mute(bob.client_id, muted=False))
    await bob.recv_kind("player_muted")
    await bob.send(chat("now?"))
    heard = await alice.recv_kind("chat_message")
    assert heard.chat_message.message == "now?"  # the muted line never arrived
    assert [a[0] for a in await actions()] == ["mute", "unmute"]


async def test_a_client_mute_is_recorded_in_the_registry_for_every_reader() -> None:
    alice = await joined("alice")
    mo, _ = await staff_client()
    bob = await joined("bob")

    await mo.send(mute(bob.client_id, message_id="m1"))
    assert (await mo.recv_kind("ack")).ack.message_id == "m1"  # after the order went out
    assert await muted_in_registry() == {
        alice.client_id: False,
        mo.client_id: False,
        bob.client_id: True,
    }

    await mo.send(mute(bob.client_id, muted=False, message_id="m2"))
    assert (await mo.recv_kind("ack")).ack.message_id == "m2"
    assert not any((await muted_in_registry()).values())


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
    assert (await bob.recv_kind("error")).error.code == ErrorCode.MUTED
    await moderate(admin, action="unmute", target_client_id=bob.client_id)
    await bob.recv_kind("player_muted")
    await bob.send(chat("hello"))
    assert (await alice.recv_kind("chat_message")).chat_message.message == "hello"


async def test_an_admin_mute_shows_on_the_room_page_and_in_its_live_json() -> None:
    alice = await joined("alice")
    bob = await joined("bob")
    admin = await admin_client()

    await moderate(admin, action="mute", target_client_id=bob.client_id)

    assert await muted_in_registry() == {alice.client_id: False, bob.client_id: True}
    page = (await admin.get(f"/admin/presence/room/{ROOM}/change/")).content.decode()
    assert f'data-client-id="{bob.client_id}" data-host="false" data-muted="true"' in page
    assert f'data-client-id="{alice.client_id}" data-host="true" data-muted="false"' in page
    live = await admin.get(f"/admin/presence/room/{ROOM}/live/")
    assert live.status_code == 200 and "no-store" in live["Cache-Control"]
    assert [(c["client_id"], c["host"], c["muted"]) for c in live.json()["connections"]] == [
        (alice.client_id, True, False),
        (bob.client_id, False, True),
    ]


async def test_the_live_json_lists_what_the_room_page_lists() -> None:
    alice = await joined("alice")
    await joined("bob", room="elsewhere")
    live = (await (await admin_client()).get(f"/admin/presence/room/{ROOM}/live/")).json()

    assert live["room_id"] == ROOM and live["host_client_id"] == alice.client_id
    assert live["connections"] == [
        {
            "client_id": alice.client_id,
            "client_label": "",
            "user_id": "alice",
            "display_name": "alice",
            "instance_id": get_hub().instance_id,
            "host": True,
            "muted": False,
        }
    ]


async def test_the_live_json_is_for_staff_only() -> None:
    await joined("alice")
    client = AsyncClient()
    await client.aforce_login(await make_user("guest"))
    for who in (AsyncClient(), client):
        response = await who.get(f"/admin/presence/room/{ROOM}/live/")
        assert response.status_code == 302 and "/admin/login/" in response["Location"]


async def test_the_live_json_of_an_unknown_room_is_404() -> None:
    response = await (await admin_client()).get("/admin/presence/room/nowhere/live/")
    assert response.status_code == 404


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


async def test_the_live_json_answers_503_when_the_registry_is_unreachable(
    settings: Any, redis_prefix: str
) -> None:
    await database_sync_to_async(Room.objects.create)(id=ROOM)
    url = closed_redis_url()
    settings.CHANNEL_LAYERS = layer_config("redis", url, redis_prefix)
    settings.PRESENCE = {
        **settings.PRESENCE,
        "REDIS_URL": url,
        "REDIS_CHANNEL_PREFIX": redis_prefix,
    }

    response = await (await admin_client()).get(f"/admin/presence/room/{ROOM}/live/")

    assert response.status_code == 503
    assert response.json() == {"error": "The presence registry (Redis) does not answer."}
