"""Which sockets an account change ends (presence/accounts.py ``revocation``, pure)."""

from __future__ import annotations

import pytest

from presence.accounts import (
    ACCOUNT_DELETED,
    ACCOUNT_DISABLED,
    PASSWORD_CHANGED,
    AccountState,
    password_stamp,
    revocation,
)
from presence.auth import Identity

STAMP = password_stamp("pbkdf2_sha256$1$salt$old")
TOKEN_USER = Identity(user_id="7", django_user_id=7, expires_at=1e10, password_stamp=STAMP)


def test_an_unchanged_active_account_keeps_its_socket() -> None:
    assert revocation(TOKEN_USER, AccountState(active=True, password_stamp=STAMP)) is None


@pytest.mark.parametrize(
    ("state", "text"),
    [
        pytest.param(None, ACCOUNT_DELETED, id="deleted"),
        pytest.param(AccountState(False, STAMP), ACCOUNT_DISABLED, id="disabled"),
        pytest.param(
            AccountState(True, password_stamp("pbkdf2_sha256$1$salt$new")),
            PASSWORD_CHANGED,
            id="password changed",
        ),
        pytest.param(
            AccountState(False, password_stamp("other")), ACCOUNT_DISABLED, id="disabled first"
        ),
    ],
)
def test_a_changed_account_ends_the_socket_saying_why(
    state: AccountState | None, text: str
) -> None:
    assert revocation(TOKEN_USER, state) == text


def test_the_texts_say_what_to_do() -> None:
    assert PASSWORD_CHANGED == "password changed: log in again"
    assert ACCOUNT_DISABLED == "account disabled"


@pytest.mark.parametrize("state", [None, AccountState(False, "")])
def test_development_identities_have_no_account_to_revoke(state: AccountState | None) -> None:
    assert revocation(Identity(user_id="dev-user"), state) is None


def test_the_stamp_is_simplejwts_digest_of_the_password_hash() -> None:
    from rest_framework_simplejwt.utils import get_md5_hash_password

    assert password_stamp("abc") == get_md5_hash_password("abc")
    assert password_stamp("abc") != password_stamp("abd")
