"""Development-mode identities, no credentials, and the dev-auth system check.

No database here: none of these paths may touch it (pytest-django would fail
the test if one did).
"""

from __future__ import annotations

import logging

import pytest
from django.core.checks import Tags, run_checks

from presence import auth
from presence.auth import MAX_USER_ID, AuthRefused, Identity, identify
from presence.checks import check_dev_auth
from presence.protocol.codes import CloseCode, ErrorCode

ROOM = "lobby"
UNAUTHORIZED = (ErrorCode.UNAUTHORIZED, CloseCode.UNAUTHORIZED)
BAD_REQUEST = (ErrorCode.BAD_MESSAGE, CloseCode.BAD_REQUEST)


@pytest.mark.parametrize(
    ("query", "dev_auth"),
    [
        pytest.param({}, True, id="nothing, dev on"),
        pytest.param({}, False, id="nothing, dev off"),
        pytest.param({"user_id": ""}, True, id="empty user_id, dev on"),
        pytest.param({"user_id": ""}, False, id="empty user_id, dev off"),
        pytest.param({"display_name": "Ann", "client_id": "quest"}, False, id="no credentials"),
    ],
)
def test_no_credentials_means_wait_for_client_hello(query: dict[str, str], dev_auth: bool) -> None:
    assert identify(query, room_id=ROOM, dev_auth=dev_auth) is None


def test_dev_mode_accepts_a_bare_user_id() -> None:
    identity = identify({"user_id": "alice"}, room_id=ROOM, dev_auth=True)

    assert identity == Identity(user_id="alice", display_name="alice")
    assert identity.django_user_id is None
    assert identity.expires_at is None
    assert identity.dev_mode


def test_dev_mode_identities_log_one_warning_per_process(
    auth_log: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(auth, "_dev_mode_warned", False)  # as in a fresh process

    for user in ("alice", "bob", "carol"):
        identify({"user_id": user}, room_id=ROOM, dev_auth=True)

    warnings = [r for r in auth_log.records if r.levelno == logging.WARNING]
    assert [r.getMessage() for r in warnings] == [auth.DEV_MODE_WARNING]
    assert "presence_dev_auth_connections_total" in auth.DEV_MODE_WARNING


@pytest.mark.parametrize(
    ("user_id", "dev_auth", "expected"),
    [
        pytest.param("alice", False, UNAUTHORIZED, id="dev off"),
        pytest.param("a" * (MAX_USER_ID + 1), False, UNAUTHORIZED, id="dev off wins over length"),
        pytest.param("a" * (MAX_USER_ID + 1), True, BAD_REQUEST, id="too long"),
        pytest.param("ali\nce", True, BAD_REQUEST, id="control character"),
        pytest.param("ali\x00ce", True, BAD_REQUEST, id="nul"),
    ],
)
def test_bare_user_id_is_refused(
    user_id: str, dev_auth: bool, expected: tuple[int, CloseCode]
) -> None:
    with pytest.raises(AuthRefused) as refused:
        identify({"user_id": user_id}, room_id=ROOM, dev_auth=dev_auth)

    assert (refused.value.code, refused.value.close_code) == expected


def test_dev_off_refusal_tells_the_client_what_to_send() -> None:
    with pytest.raises(AuthRefused) as refused:
        identify({"user_id": "alice"}, room_id=ROOM, dev_auth=False)

    assert refused.value.text == (
        "development mode is off: user_id alone is not accepted; send an access token "
        "as auth_token (in the URL or the first ClientHello)"
    )


def test_longest_allowed_user_id_is_accepted_in_dev_mode() -> None:
    identity = identify({"user_id": "a" * MAX_USER_ID}, room_id=ROOM, dev_auth=True)

    assert identity is not None
    assert identity.user_id == "a" * MAX_USER_ID


# --- system check ----------------------------------------------------------------

NOT_SET = object()


@pytest.mark.parametrize(
    ("debug", "dev_auth", "expected_ids"),
    [
        pytest.param(False, True, ["presence.W001"], id="dev auth on, DEBUG off"),
        pytest.param(False, False, [], id="dev auth off, DEBUG off"),
        pytest.param(False, NOT_SET, [], id="dev auth unset, DEBUG off"),
        pytest.param(True, True, [], id="dev auth on, DEBUG on"),
        pytest.param(True, False, [], id="dev auth off, DEBUG on"),
        pytest.param(True, NOT_SET, [], id="dev auth unset, DEBUG on"),
    ],
)
def test_dev_auth_check(settings, debug: bool, dev_auth: object, expected_ids: list[str]) -> None:
    presence = {k: v for k, v in settings.PRESENCE.items() if k != "DEV_AUTH"}
    if dev_auth is not NOT_SET:
        presence["DEV_AUTH"] = dev_auth
    settings.PRESENCE = presence
    settings.DEBUG = debug

    assert [m.id for m in check_dev_auth(None)] == expected_ids


def test_dev_auth_check_runs_with_the_security_checks(settings) -> None:
    settings.PRESENCE = {**settings.PRESENCE, "DEV_AUTH": True}
    settings.DEBUG = False

    ids = [m.id for m in run_checks(tags=[Tags.security])]

    assert "presence.W001" in ids
