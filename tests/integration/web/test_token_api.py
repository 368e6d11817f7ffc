"""``POST /api/token/`` and ``/api/token/refresh/``: a token pair that opens a socket."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from presence.auth import AuthRefused, authenticate_token
from presence.protocol.codes import CloseCode, ErrorCode

# Until graphwiz.urls includes presence.web.api.urls under "api/".
pytestmark = pytest.mark.django_db

PASSWORD = "correct-horse-battery-9"


@pytest.fixture(autouse=True)
def _fast_password_hasher(settings: Any) -> None:
    # PBKDF2's default work factor costs ~0.3 s per hash and per login.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def user() -> Any:
    return get_user_model().objects.create_user("dora", password=PASSWORD)


def obtain(client: Client, username: str, password: str) -> Any:
    return client.post(
        "/api/token/",
        {"username": username, "password": password},
        content_type="application/json",
    )


def refresh(client: Client, token: str) -> Any:
    return client.post("/api/token/refresh/", {"refresh": token}, content_type="application/json")


def test_obtain_returns_an_access_and_a_refresh_token(client: Client, user: Any) -> None:
    response = obtain(client, "dora", PASSWORD)

    assert response.status_code == 200
    assert set(response.json()) == {"access", "refresh"}


def test_obtained_access_token_authenticates_the_user(client: Client, user: Any) -> None:
    access = obtain(client, "dora", PASSWORD).json()["access"]

    identity = authenticate_token(access, room_id="lobby")

    assert identity.django_user_id == user.pk
    assert identity.user_id == str(user.pk)
    assert identity.display_name == "dora"


def test_obtained_refresh_token_does_not_open_a_socket(client: Client, user: Any) -> None:
    refresh_token = obtain(client, "dora", PASSWORD).json()["refresh"]

    with pytest.raises(AuthRefused) as refused:
        authenticate_token(refresh_token, room_id="lobby")

    assert (refused.value.code, refused.value.close_code) == (
        ErrorCode.UNAUTHORIZED,
        CloseCode.UNAUTHORIZED,
    )


def test_refresh_returns_a_working_access_token(client: Client, user: Any) -> None:
    refresh_token = obtain(client, "dora", PASSWORD).json()["refresh"]

    response = refresh(client, refresh_token)

    assert response.status_code == 200
    identity = authenticate_token(response.json()["access"], room_id="lobby")
    assert identity.django_user_id == user.pk


def test_wrong_password_is_401(client: Client, user: Any) -> None:
    response = obtain(client, "dora", "wrong-password")

    assert response.status_code == 401
    assert "access" not in response.json()


def test_unknown_user_is_401(client: Client, user: Any) -> None:
    assert obtain(client, "nobody", PASSWORD).status_code == 401


def test_inactive_user_gets_no_token(client: Client, user: Any) -> None:
    user.is_active = False
    user.save()

    assert obtain(client, "dora", PASSWORD).status_code == 401


def test_refresh_with_an_access_token_is_401(client: Client, user: Any) -> None:
    access = obtain(client, "dora", PASSWORD).json()["access"]

    assert refresh(client, access).status_code == 401


# --- a refresh token outlives no account change ----------------------------------------


def test_refresh_after_a_password_change_is_refused_saying_so(client: Client, user: Any) -> None:
    refresh_token = obtain(client, "dora", PASSWORD).json()["refresh"]
    user.set_password("a-new-password-42")
    user.save()

    response = refresh(client, refresh_token)

    assert response.status_code == 401
    assert response.json()["detail"] == "password changed: log in again"


def test_refresh_of_a_disabled_account_is_refused(client: Client, user: Any) -> None:
    refresh_token = obtain(client, "dora", PASSWORD).json()["refresh"]
    user.is_active = False
    user.save()

    response = refresh(client, refresh_token)

    assert (response.status_code, response.json()["detail"]) == (401, "account disabled")


def test_refresh_of_a_deleted_account_is_refused_not_an_error(client: Client, user: Any) -> None:
    refresh_token = obtain(client, "dora", PASSWORD).json()["refresh"]
    user.delete()

    response = refresh(client, refresh_token)

    assert (response.status_code, response.json()["detail"]) == (401, "account deleted")


def test_tokens_carry_the_password_digest_that_revokes_them(client: Client, user: Any) -> None:
    access = obtain(client, "dora", PASSWORD).json()["access"]
    user.set_password("a-new-password-42")
    user.save()

    with pytest.raises(AuthRefused) as refused:
        authenticate_token(access, room_id="lobby")

    assert refused.value.text == "password changed: log in again"
