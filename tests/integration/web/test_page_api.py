"""The page's endpoints: ``POST /api/token/session/`` and ``GET /api/public/rooms/``.

The token endpoint is for a user signed in to Django (session cookie) and is
CSRF-checked; the room list is public, counts only, and throttled per address.
Tiny rates and a fake clock as the throttles' ``timer``: no test sleeps.
"""

from __future__ import annotations

import time
from typing import Any

import jwt
import pytest
from django.conf import settings as django_settings
from django.test import AsyncClient, Client

from presence.auth import authenticate_token
from presence.web.api import throttles
from tests.clients.communicator import ProtocolClient

pytestmark = pytest.mark.django_db(transaction=True)

PASSWORD = "correct-horse-battery-9"
TOKEN_PATH = "/api/token/session/"
ROOMS_PATH = "/api/public/rooms/"
PER_USER, PER_IP = 3, 4


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(autouse=True)
def _rules(settings: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    settings.DEBUG = False
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    rates = {
        **settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"],
        "session_token_user": f"{PER_USER}/minute",
        "public_rooms_ip": f"{PER_IP}/minute",
    }
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": rates}
    monkeypatch.setattr(throttles.PresenceRateThrottle, "timer", staticmethod(FakeClock()))


@pytest.fixture
def member(django_user_model: Any) -> Any:
    return django_user_model.objects.create_user("norm", password=PASSWORD)


def signed_in(member: Any) -> tuple[Client, str]:
    """A browser-like client (CSRF enforced) signed in as ``member``, and its CSRF token."""
    client = Client(enforce_csrf_checks=True)
    client.force_login(member)
    page = client.get("/")
    assert page.status_code == 200
    return client, page.cookies["csrftoken"].value


def claims(token: str) -> dict[str, Any]:
    key = django_settings.SIMPLE_JWT["SIGNING_KEY"]
    return dict(jwt.decode(token, key, algorithms=["HS256"]))


def test_a_signed_in_user_gets_an_access_token_that_opens_a_socket(member: Any) -> None:
    client, csrf = signed_in(member)
    response = client.post(
        TOKEN_PATH,
        {"room": "lobby"},
        content_type="application/json",
        headers={"X-CSRFToken": csrf},
    )
    assert response.status_code == 200, response.content
    body = response.json()
    lifetime = django_settings.SIMPLE_JWT["ACCESS_TOKEN_LIFETIME"].total_seconds()
    assert body["expires_in"] == lifetime
    token = claims(body["access"])
    assert token["room"] == "lobby"
    assert token["exp"] <= time.time() + lifetime + 1
    identity = authenticate_token(body["access"], room_id="lobby")
    assert identity.django_user_id == member.pk


async def test_the_session_token_joins_the_room_it_names(member: Any) -> None:
    client = AsyncClient(enforce_csrf_checks=True)
    await client.aforce_login(member)
    csrf = (await client.get("/")).cookies["csrftoken"].value
    response = await client.post(
        TOKEN_PATH,
        {"room": "page-room"},
        content_type="application/json",
        headers={"X-CSRFToken": csrf},
    )
    token = response.json()["access"]
    socket = ProtocolClient(f"/ws/page-room?auth_token={token}")
    hello = await socket.join()
    assert hello.room_id == "page-room"
    await socket.close()


def test_without_the_csrf_token_the_endpoint_refuses(member: Any) -> None:
    client, _ = signed_in(member)
    response = client.post(TOKEN_PATH, {}, content_type="application/json")
    assert response.status_code == 403
    assert "CSRF" in response.json()["detail"]


def test_an_anonymous_request_is_refused() -> None:
    client = Client(enforce_csrf_checks=True)
    csrf = client.get("/").cookies["csrftoken"].value
    response = client.post(
        TOKEN_PATH, {}, content_type="application/json", headers={"X-CSRFToken": csrf}
    )
    assert response.status_code == 401  # as everywhere in the API without credentials
    assert "sign in to Django first" in response.json()["detail"]
    assert response.headers["WWW-Authenticate"].startswith("Session")


def test_a_jwt_alone_cannot_mint_page_tokens(member: Any) -> None:
    """Only the session counts: a stolen access token does not renew itself here."""
    login = Client().post(
        "/api/token/", {"username": "norm", "password": PASSWORD}, content_type="application/json"
    )
    access = login.json()["access"]
    response = Client().post(
        TOKEN_PATH, {}, content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {access}"
    )
    assert response.status_code == 401
    assert "/api/token/" in response.json()["detail"]


def test_a_bad_room_id_is_400_naming_the_rule(member: Any) -> None:
    client, csrf = signed_in(member)
    response = client.post(
        TOKEN_PATH,
        {"room": "bad room"},
        content_type="application/json",
        headers={"X-CSRFToken": csrf},
    )
    assert response.status_code == 400
    assert "room" in response.json()


def test_session_tokens_are_throttled_per_user(member: Any) -> None:
    client, csrf = signed_in(member)
    codes = [
        client.post(
            TOKEN_PATH, {}, content_type="application/json", headers={"X-CSRFToken": csrf}
        ).status_code
        for _ in range(PER_USER + 1)
    ]
    assert codes == [200] * PER_USER + [429]


@pytest.mark.usefixtures("channel_layer_kind")
async def test_public_room_list_counts_members_without_naming_them() -> None:
    sockets = [
        ProtocolClient(f"/ws/{room}?user_id={user}")
        for room, user in [("busy", "a"), ("busy", "b"), ("quiet", "c")]
    ]
    for socket in sockets:
        await socket.join()
    body: dict[str, Any] = {}
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        response = await AsyncClient().get(ROOMS_PATH)
        assert response.status_code == 200
        body = response.json()
        if {r["room_id"] for r in body["rooms"]} >= {"busy", "quiet"}:
            break
    rooms = [r for r in body["rooms"] if r["room_id"] in ("busy", "quiet")]
    assert rooms == [{"room_id": "busy", "members": 2}, {"room_id": "quiet", "members": 1}]
    assert set(body) == {"rooms", "timestamp"}
    assert all(set(r) == {"room_id", "members"} for r in body["rooms"])
    for socket in sockets:
        await socket.close()


def test_public_room_list_is_throttled_per_address() -> None:
    client = Client()
    codes = [client.get(ROOMS_PATH).status_code for _ in range(PER_IP + 1)]
    assert codes == [200] * PER_IP + [429]
    other = Client(REMOTE_ADDR="10.1.2.3")
    assert other.get(ROOMS_PATH).status_code == 200
