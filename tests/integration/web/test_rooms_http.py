"""``/api/rooms/``: every endpoint without credentials, without and with its permission.

Plus what the endpoints do with live clients in the room (through the real
consumer), the 400 for text over the clients' limits, the chat history's
cursor pages and their size limit, and the same permission on clients'
moderation messages.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from channels.db import database_sync_to_async
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.test import AsyncClient
from django.utils import timezone
from rest_framework_simplejwt.tokens import AccessToken

from presence.models import ChatMessage, ModerationAction, Room
from presence.protocol import pb
from presence.protocol.codes import CloseCode, ErrorCode
from presence.web.api.rooms import CHAT_PAGE_SIZE_MAX
from tests.clients.communicator import ProtocolClient

pytestmark = [pytest.mark.django_db(transaction=True)]

ROOM = "forum"
VIEW, ANNOUNCE, MODERATE = "view_room", "announce", "moderate_room"


@pytest.fixture(autouse=True)
def _production_rules(settings: Any) -> None:
    settings.DEBUG = False


@database_sync_to_async
def user_with(name: str, *codenames: str, staff: bool = False) -> Any:
    user = get_user_model().objects.create_user(name, is_staff=staff)
    permissions = Permission.objects.filter(
        content_type__app_label="presence", codename__in=codenames
    )
    user.user_permissions.add(*permissions)
    return user


async def client_for(user: Any) -> AsyncClient:
    client = AsyncClient()
    await client.aforce_login(user)
    return client


async def joined(user: str, *, token: str = "") -> ProtocolClient:
    query = f"auth_token={token}" if token else f"user_id={user}"
    client = ProtocolClient(f"/ws/{ROOM}?{query}&display_name={user}")
    await client.join()
    return client


async def call(
    client: AsyncClient, method: str, path: str, body: Any = None, token: str = ""
) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    if method == "GET":
        response = await client.get(path, headers=headers)
    else:
        response = await client.post(
            path, body or {}, content_type="application/json", headers=headers
        )
    return response.status_code, response.json()


# (method, path, body, the permission it needs, the status with it and nobody in the room)
ENDPOINTS = [
    ("GET", "/api/rooms/", None, VIEW, 200),
    ("GET", f"/api/rooms/{ROOM}/", None, VIEW, 200),
    ("GET", f"/api/rooms/{ROOM}/chat/", None, VIEW, 200),
    ("POST", f"/api/rooms/{ROOM}/messages/", {"text": "hello"}, ANNOUNCE, 201),
    ("POST", f"/api/rooms/{ROOM}/kick/", {"client_id": "c0123456789abcde"}, MODERATE, 404),
    ("POST", f"/api/rooms/{ROOM}/mute/", {"client_id": "c0123456789abcde"}, MODERATE, 404),
    ("POST", f"/api/rooms/{ROOM}/lock/", {"reason": "maintenance"}, MODERATE, 200),
]
IDS = [f"{m} {p.removeprefix('/api/rooms/')}" for m, p, *_ in ENDPOINTS]


@pytest.mark.parametrize(("method", "path", "body", "needed", "expected"), ENDPOINTS, ids=IDS)
async def test_anonymous_is_401(
    method: str, path: str, body: Any, needed: str, expected: int
) -> None:
    status, answer = await call(AsyncClient(), method, path, body)
    assert status == 401, answer


@pytest.mark.parametrize(("method", "path", "body", "needed", "expected"), ENDPOINTS, ids=IDS)
async def test_a_bad_token_is_401(
    method: str, path: str, body: Any, needed: str, expected: int
) -> None:
    status, answer = await call(AsyncClient(), method, path, body, token="not-a-token")
    assert status == 401, answer
    assert answer["detail"] == "Given token not valid for any token type"


@pytest.mark.parametrize(("method", "path", "body", "needed", "expected"), ENDPOINTS, ids=IDS)
async def test_every_other_permission_even_staff_is_403(
    method: str, path: str, body: Any, needed: str, expected: int
) -> None:
    others = [p for p in (VIEW, ANNOUNCE, MODERATE) if p != needed]
    user = await user_with("staffer", *others, staff=True)
    status, answer = await call(await client_for(user), method, path, body)
    assert status == 403, answer
    assert needed in answer["detail"]


@pytest.mark.parametrize(("method", "path", "body", "needed", "expected"), ENDPOINTS, ids=IDS)
async def test_its_one_permission_is_enough_by_session_or_token(
    method: str, path: str, body: Any, needed: str, expected: int
) -> None:
    user = await user_with("holder", needed)
    status, answer = await call(await client_for(user), method, path, body)
    assert status == expected, answer
    token = str(AccessToken.for_user(user))
    status, answer = await call(AsyncClient(), method, path, body, token=token)
    assert status == expected, answer


async def test_an_announcement_reaches_members_and_is_stored() -> None:
    alice = await joined("alice")
    announcer = await client_for(await user_with("herald", ANNOUNCE))

    status, line = await call(
        announcer,
        "POST",
        f"/api/rooms/{ROOM}/messages/",
        {"text": "doors open", "sender": "Herald"},
    )

    assert status == 201
    chat = (await alice.recv_kind("chat_message")).chat_message
    assert (chat.from_client_id, chat.message, chat.timestamp) == (
        "Herald",
        "doors open",
        line["timestamp"],
    )
    assert (line["room_id"], line["from_client_id"], line["text"]) == (ROOM, "Herald", "doors open")
    stored = await database_sync_to_async(ChatMessage.objects.get)(pk=line["id"])
    assert (stored.sender_name, stored.text) == ("Herald", "doors open")
    await alice.close()


async def test_text_at_the_client_limit_is_accepted_and_over_it_is_400() -> None:
    announcer = await client_for(await user_with("herald", ANNOUNCE))
    path = f"/api/rooms/{ROOM}/messages/"

    assert (await call(announcer, "POST", path, {"text": "x" * 2000}))[0] == 201
    status, answer = await call(announcer, "POST", path, {"text": "x" * 2001})
    assert status == 400
    assert answer["detail"].startswith("text: ") and "2000 characters" in answer["detail"]
    status, answer = await call(announcer, "POST", path, {"text": "ring\x07"})
    assert (status, answer["detail"]) == (
        400,
        "chat message contains a control character (U+0007); "
        "only tab, newline and carriage return are allowed",
    )
    status, answer = await call(announcer, "POST", "/api/rooms/bad%20room/messages/", {"text": "a"})
    assert status == 400 and "room id" in answer["detail"]


@pytest.mark.parametrize(
    ("path", "body", "words"),
    [
        ("messages", {"text": 5}, "text: must be a JSON string, got int"),
        ("messages", {"text": "hi", "sender": ["x"]}, "sender: must be a JSON string"),
        ("kick", {"client_id": "a b"}, "client_id: must match"),
        ("kick", {"client_id": 5}, "client_id: must be a JSON string"),
        ("mute", {"client_id": "c1/../x"}, "client_id: must match"),
    ],
)
async def test_a_field_of_the_wrong_type_or_shape_is_400_naming_it(
    path: str, body: dict[str, Any], words: str
) -> None:
    staff = await client_for(await user_with("boss", ANNOUNCE, MODERATE))

    status, answer = await call(staff, "POST", f"/api/rooms/{ROOM}/{path}/", body)

    assert status == 400, answer
    assert words in answer["detail"], answer


async def test_one_moderate_permission_kicks_mutes_and_locks_live_members() -> None:
    moderator = await user_with("mo", MODERATE)
    http = await client_for(moderator)
    alice, bob, carol = await joined("alice"), await joined("bob"), await joined("carol")

    status, _ = await call(
        http, "POST", f"/api/rooms/{ROOM}/mute/", {"client_id": bob.client_id, "reason": "caps"}
    )
    assert status == 200
    assert (await alice.recv_kind("player_muted")).player_muted.muted_client_id == bob.client_id
    status, answer = await call(
        http, "POST", f"/api/rooms/{ROOM}/kick/", {"client_id": carol.client_id, "ban_seconds": 60}
    )
    assert (status, answer) == (200, {"room_id": ROOM, "action": "kick"})
    assert await carol.expect_close() == CloseCode.FORBIDDEN
    status, _ = await call(http, "POST", f"/api/rooms/{ROOM}/lock/", {})
    assert status == 200
    assert (await alice.recv_kind("room_locked")).room_locked.locked

    actions = await database_sync_to_async(
        lambda: list(ModerationAction.objects.order_by("pk").values_list("action", "actor_id"))
    )()
    assert actions == [("mute", moderator.pk), ("kick", moderator.pk), ("lock", moderator.pk)]
    status, _ = await call(
        http, "POST", f"/api/rooms/{ROOM}/kick/", {"client_id": bob.client_id, "ban_seconds": -1}
    )
    assert status == 400
    await alice.close()
    await bob.close()


async def test_room_list_and_detail_show_live_members() -> None:
    alice = await joined("alice")
    reader = await client_for(await user_with("reader", VIEW))

    status, listed = await call(reader, "GET", "/api/rooms/")
    assert (status, listed) == (
        200,
        [{"room_id": ROOM, "member_count": 1, "host_client_id": alice.client_id}],
    )
    status, room = await call(reader, "GET", f"/api/rooms/{ROOM}/")
    assert status == 200
    assert [(m["client_id"], m["user_id"], m["is_host"]) for m in room["members"]] == [
        (alice.client_id, "alice", True)
    ]
    assert (room["locked"], room["entities"]) == (False, [])
    await alice.close()


@database_sync_to_async
def stored_chat(count: int) -> None:
    Room.objects.get_or_create(pk=ROOM)
    start = timezone.now() - timedelta(hours=1)
    ChatMessage.objects.bulk_create(
        ChatMessage(
            room_id=ROOM,
            sender_client_id="c1",
            sender_name="Ann",
            text=f"line {n}",
            sent_at=start + timedelta(seconds=n),
        )
        for n in range(count)
    )


async def test_chat_history_pages_newest_first_through_cursors() -> None:
    await stored_chat(7)
    reader = await client_for(await user_with("reader", VIEW))

    status, first = await call(reader, "GET", f"/api/rooms/{ROOM}/chat/?page_size=3")
    assert status == 200
    assert [m["text"] for m in first["results"]] == ["line 6", "line 5", "line 4"]
    assert first["results"][0]["from_client_id"] == "c1"
    _, second = await call(reader, "GET", first["next"])
    assert [m["text"] for m in second["results"]] == ["line 3", "line 2", "line 1"]
    _, third = await call(reader, "GET", second["next"])
    assert [m["text"] for m in third["results"]] == ["line 0"]
    assert third["next"] is None


async def test_a_page_size_over_the_maximum_is_cut_to_it() -> None:
    await stored_chat(CHAT_PAGE_SIZE_MAX + 5)
    reader = await client_for(await user_with("reader", VIEW))

    _, page = await call(reader, "GET", f"/api/rooms/{ROOM}/chat/?page_size=100000")
    assert len(page["results"]) == CHAT_PAGE_SIZE_MAX
    _, page = await call(reader, "GET", f"/api/rooms/{ROOM}/chat/?page_size={CHAT_PAGE_SIZE_MAX}")
    assert len(page["results"]) == CHAT_PAGE_SIZE_MAX
    _, default = await call(reader, "GET", f"/api/rooms/{ROOM}/chat/")
    assert len(default["results"]) == 50


@pytest.mark.parametrize("page_size", ["0", "-1", "abc", "1.5"])
async def test_a_page_size_that_is_not_a_whole_number_from_1_is_400_saying_so(
    page_size: str,
) -> None:
    await stored_chat(3)
    reader = await client_for(await user_with("reader", VIEW))

    status, body = await call(reader, "GET", f"/api/rooms/{ROOM}/chat/?page_size={page_size}")

    assert status == 400, body
    assert "page_size must be a whole number from 1" in body["detail"], body


async def test_a_cursor_this_api_never_gave_out_is_404_saying_what_to_send() -> None:
    await stored_chat(3)
    reader = await client_for(await user_with("reader", VIEW))

    status, body = await call(reader, "GET", f"/api/rooms/{ROOM}/chat/?cursor=garbage")

    assert status == 404, body
    assert "follow a page's next or previous link" in body["detail"], body


async def test_clients_moderate_with_the_permission_not_with_is_staff() -> None:
    permitted = await user_with("mod", MODERATE)
    staff_only = await user_with("boss", staff=True)
    alice = await joined("alice")
    boss = await joined("boss", token=str(AccessToken.for_user(staff_only)))
    mod = await joined("mod", token=str(AccessToken.for_user(permitted)))
    kick = pb.KickPlayer(target_client_id=alice.client_id, reason="x")

    await boss.send(pb.Message(message_id="k1", kick_player=kick))
    refused = await boss.recv_kind("error")
    assert (refused.error.code, refused.error.ref_message_id) == (ErrorCode.FORBIDDEN, "k1")

    await mod.send(pb.Message(message_id="k2", kick_player=kick))
    assert (await mod.recv_kind("ack")).ack.message_id == "k2"
    assert await alice.expect_close() == CloseCode.FORBIDDEN
    await boss.close()
    await mod.close()


async def test_the_admin_moderates_only_with_the_permission() -> None:
    await database_sync_to_async(Room.objects.create)(id=ROOM)
    staff_only = await user_with("boss", "view_room", "change_room", staff=True)
    response = await (await client_for(staff_only)).post(
        f"/admin/presence/room/{ROOM}/moderate/", {"action": "lock"}
    )
    assert response.status_code == 403

    moderator = await user_with("mo", "view_room", MODERATE, staff=True)
    response = await (await client_for(moderator)).post(
        f"/admin/presence/room/{ROOM}/moderate/", {"action": "lock"}
    )
    assert response.status_code == 302
    assert await database_sync_to_async(lambda: Room.objects.get(pk=ROOM).locked)()
