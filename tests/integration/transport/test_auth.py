"""Access tokens at the door: every kind of bad token gets the exact refusal.

Each hostile row starts from claims that would be accepted for an existing,
active user and introduces one defect, so a row can only pass for its own
reason. Forged tokens are built with PyJWT, genuine ones with simplejwt.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from django.conf import settings
from django.contrib.auth import get_user_model
from rest_framework_simplejwt import tokens as sj_tokens
from rest_framework_simplejwt.tokens import AccessToken, RefreshToken
from rest_framework_simplejwt.utils import get_md5_hash_password

from presence import auth
from presence.auth import MAX_TOKEN_CHARS, AuthRefused, authenticate_token, identify
from presence.protocol.codes import CloseCode, ErrorCode

pytestmark = pytest.mark.django_db

ROOM = "lobby"
DROP = object()  # a claim value meaning "leave this claim out"
UNAUTHORIZED = (ErrorCode.UNAUTHORIZED, CloseCode.UNAUTHORIZED)
FORBIDDEN = (ErrorCode.FORBIDDEN, CloseCode.FORBIDDEN)


@dataclass
class Users:
    alice: Any  # active
    bob: Any  # active
    carol: Any  # inactive


@pytest.fixture
def users() -> Users:
    model = get_user_model()
    # No passwords: hashing one costs ~0.3 s and tokens never look at it.
    return Users(
        alice=model.objects.create_user("alice"),
        bob=model.objects.create_user("bob"),
        carol=model.objects.create_user("carol", is_active=False),
    )


# --- building tokens ----------------------------------------------------------


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64json(value: dict[str, Any]) -> str:
    return b64(json.dumps(value).encode())


def claims(user: Any, **changes: Any) -> dict[str, Any]:
    """Claims simplejwt would issue for ``user``, with ``changes`` applied (DROP removes)."""
    now = int(time.time())
    values: dict[str, Any] = {
        "token_type": "access",
        "exp": now + 300,
        "iat": now,
        "jti": uuid.uuid4().hex,
        "user_id": str(user.pk),
        # SIMPLE_JWT["CHECK_REVOKE_TOKEN"]: the digest of the user's password hash.
        "hash_password": get_md5_hash_password(user.password),
    }
    values.update(changes)
    return {k: v for k, v in values.items() if v is not DROP}


def forge(
    payload: dict[str, Any], *, key: Any = None, algorithm: str = "HS256", **headers: Any
) -> str:
    """A JWT signed by PyJWT; by default with the server's own key and algorithm."""
    with warnings.catch_warnings():
        # HS384/HS512 rows sign with the HS256 key on purpose: they must be refused.
        warnings.simplefilter("ignore", jwt.warnings.InsecureKeyLengthWarning)
        return jwt.encode(
            payload,
            settings.SECRET_KEY if key is None else key,
            algorithm=algorithm,
            headers=headers or None,
        )


def hs256(signing_input: str) -> str:
    """The HMAC-SHA256 signature segment with the server's key."""
    mac = hmac.new(settings.SECRET_KEY.encode(), signing_input.encode(), hashlib.sha256)
    return b64(mac.digest())


def hand_built(header: dict[str, Any], payload: dict[str, Any], *, signed: bool) -> str:
    """A JWT assembled by hand: HS256-signed with the server's key whatever the header says,
    or with an empty signature."""
    signing_input = f"{b64json(header)}.{b64json(payload)}"
    return f"{signing_input}.{hs256(signing_input) if signed else ''}"


def tampered(token: str, **changes: Any) -> str:
    """``token`` with its claims changed and its original signature kept."""
    header, payload, signature = token.split(".")
    padded = payload + "=" * (-len(payload) % 4)
    values = json.loads(base64.urlsafe_b64decode(padded))
    values.update(changes)
    return f"{header}.{b64json(values)}.{signature}"


def signed_raw(payload: bytes) -> str:
    """A correctly HS256-signed JWT whose payload is ``payload`` verbatim."""
    signing_input = f"{b64json({'alg': 'HS256', 'typ': 'JWT'})}.{b64(payload)}"
    return f"{signing_input}.{hs256(signing_input)}"


def genuine(user: Any, **claims_: Any) -> str:
    """A simplejwt access token for ``user`` with extra claims."""
    token = AccessToken.for_user(user)
    for name, value in claims_.items():
        token[name] = value
    return str(token)


def expired_genuine(user: Any) -> str:
    token = AccessToken.for_user(user)
    token.set_exp(lifetime=timedelta(seconds=-1))
    return str(token)


def rsa_signed(user: Any) -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return forge(claims(user), key=key, algorithm="RS256")


# --- the matrix ---------------------------------------------------------------

Builder = Callable[[Users], str]


@dataclass(frozen=True)
class Bad:
    """One hostile token: how to build it, the refusal's codes, the logged reason."""

    name: str
    build: Builder
    reason: str  # the fixed word presence.auth logs: proves the row failed for its own defect
    codes: tuple[int, CloseCode] = UNAUTHORIZED


def in_future(seconds: int) -> int:
    return int(time.time()) + seconds


BAD_TOKENS = [
    Bad("missing", lambda u: "", "missing"),
    Bad("garbage", lambda u: "this is not a token at all", "malformed"),
    Bad("two segments", lambda u: ".".join(genuine(u.alice).split(".")[:2]), "malformed"),
    Bad("four segments", lambda u: genuine(u.alice) + ".AAAA", "malformed"),
    Bad(
        "header not json",
        lambda u: f"{b64(b'nope')}.{b64json(claims(u.alice))}.{b64(b'signature')}",
        "malformed",
    ),
    Bad("payload not json", lambda u: signed_raw(b"\xff\xfe not json"), "malformed"),
    Bad("too long", lambda u: forge(claims(u.alice, pad="x" * MAX_TOKEN_CHARS)), "too long"),
    Bad("wrong key", lambda u: forge(claims(u.alice), key="another-key" * 4), "bad signature"),
    Bad("signature stripped", lambda u: genuine(u.alice).rsplit(".", 1)[0] + ".", "bad signature"),
    Bad(
        "tampered user_id",
        lambda u: tampered(genuine(u.alice), user_id=str(u.bob.pk)),
        "bad signature",
    ),
    Bad(
        "tampered exp",
        lambda u: tampered(genuine(u.alice), exp=in_future(86400 * 365)),
        "bad signature",
    ),
    Bad(
        "tampered room",
        lambda u: tampered(genuine(u.alice, room="other-room"), room=ROOM),
        "bad signature",
    ),
    Bad(
        "alg none",
        lambda u: hand_built({"alg": "none", "typ": "JWT"}, claims(u.alice), signed=False),
        "algorithm not allowed",
    ),
    Bad(
        "alg None",
        lambda u: hand_built({"alg": "None", "typ": "JWT"}, claims(u.alice), signed=False),
        "algorithm not allowed",
    ),
    Bad(
        "alg none by PyJWT",
        lambda u: forge(claims(u.alice), key="", algorithm="none"),
        "algorithm not allowed",
    ),
    Bad(
        "HS512 with our key",
        lambda u: forge(claims(u.alice), algorithm="HS512"),
        "algorithm not allowed",
    ),
    Bad(
        "HS384 with our key",
        lambda u: forge(claims(u.alice), algorithm="HS384"),
        "algorithm not allowed",
    ),
    Bad(
        "RS256 header, HS256 signature",
        lambda u: hand_built({"alg": "RS256", "typ": "JWT"}, claims(u.alice), signed=True),
        "algorithm not allowed",
    ),
    Bad("RS256 signed by another key", lambda u: rsa_signed(u.alice), "algorithm not allowed"),
    Bad("refresh token", lambda u: str(RefreshToken.for_user(u.alice)), "wrong token type"),
    Bad(
        "token_type refresh",
        lambda u: forge(claims(u.alice, token_type="refresh")),
        "wrong token type",
    ),
    Bad("no token_type", lambda u: forge(claims(u.alice, token_type=DROP)), "no token type"),
    Bad("no jti", lambda u: forge(claims(u.alice, jti=DROP)), "no jti"),
    Bad("expired", lambda u: forge(claims(u.alice, exp=in_future(-1))), "expired"),
    Bad("expired simplejwt token", lambda u: expired_genuine(u.alice), "expired"),
    Bad(
        "not yet valid (nbf)",
        lambda u: forge(claims(u.alice, nbf=in_future(300))),
        "not yet valid",
    ),
    Bad(
        "issued in the future (iat)",
        lambda u: forge(claims(u.alice, iat=in_future(300))),
        "not yet valid",
    ),
    Bad("no exp", lambda u: forge(claims(u.alice, exp=DROP)), "no exp"),
    Bad("exp not a number", lambda u: forge(claims(u.alice, exp="soon")), "malformed"),
    Bad(
        "exp a numeric string",
        lambda u: forge(claims(u.alice, exp=str(in_future(300)))),
        "bad time claim",
    ),
    Bad("exp beyond year 9999", lambda u: forge(claims(u.alice, exp=10**20)), "bad time claim"),
    Bad("no user_id", lambda u: forge(claims(u.alice, user_id=DROP)), "no user id"),
    Bad("empty user_id", lambda u: forge(claims(u.alice, user_id="")), "no user id"),
    Bad("user_id a list", lambda u: forge(claims(u.alice, user_id=[u.alice.pk])), "no user id"),
    # True would otherwise find the user with pk 1.
    Bad("user_id a bool", lambda u: forge(claims(u.alice, user_id=True)), "no user id"),
    Bad(
        "user_id not a number",
        lambda u: forge(claims(u.alice, user_id="alice")),
        "unknown user",
    ),
    Bad(
        "unknown user",
        lambda u: forge(claims(u.alice, user_id=str(u.carol.pk + 1000))),
        "unknown user",
    ),
    Bad("inactive user", lambda u: genuine(u.carol), "inactive user"),
    Bad(
        "issued before the password changed",
        lambda u: forge(claims(u.alice, hash_password="0" * 32)),
        "password changed",
    ),
    Bad(
        "no password digest",
        lambda u: forge(claims(u.alice, hash_password=DROP)),
        "password changed",
    ),
    Bad(
        "room claim for another room",
        lambda u: genuine(u.alice, room="other-room"),
        "room claim does not match",
        FORBIDDEN,
    ),
    Bad(
        "room claim not a string",
        lambda u: genuine(u.alice, room=[ROOM]),
        "room claim does not match",
        FORBIDDEN,
    ),
]
EACH_BAD_TOKEN = pytest.mark.parametrize("bad", [pytest.param(b, id=b.name) for b in BAD_TOKENS])


@EACH_BAD_TOKEN
def test_bad_token_is_refused_with_exact_codes(users: Users, bad: Bad) -> None:
    token = bad.build(users)

    with pytest.raises(AuthRefused) as refused:
        authenticate_token(token, room_id=ROOM)

    assert (refused.value.code, refused.value.close_code) == bad.codes


@EACH_BAD_TOKEN
def test_bad_token_is_refused_for_its_own_defect(
    users: Users, bad: Bad, auth_log: pytest.LogCaptureFixture
) -> None:
    token = bad.build(users)

    with pytest.raises(AuthRefused):
        authenticate_token(token, room_id=ROOM)

    assert [r.getMessage() for r in auth_log.records if r.name == "presence.auth"] == [
        f"access token refused: {bad.reason}"
    ]


@EACH_BAD_TOKEN
def test_refusal_never_reveals_the_token(
    users: Users, bad: Bad, auth_log: pytest.LogCaptureFixture
) -> None:
    token = bad.build(users)

    with pytest.raises(AuthRefused) as refused:
        authenticate_token(token, room_id=ROOM)

    exc = refused.value
    texts = [str(exc), repr(exc.args), exc.text, auth_log.text]
    texts += [record.getMessage() for record in auth_log.records]
    secrets = [part for part in [token, *token.split(".")] if len(part) >= 8]
    assert auth_log.records, "the refusal is logged (so this test is not vacuous)"
    for secret in secrets:
        assert not any(secret in text for text in texts)
    # Nothing chained either: PyJWT's and Django's errors can quote claims.
    assert exc.__cause__ is None
    assert exc.__context__ is None


# --- accepted tokens ----------------------------------------------------------


def test_simplejwt_access_token_names_the_user(users: Users) -> None:
    token = AccessToken.for_user(users.alice)

    identity = authenticate_token(str(token), room_id=ROOM)

    assert identity.user_id == str(users.alice.pk)
    assert identity.django_user_id == users.alice.pk
    assert identity.display_name == "alice"
    assert identity.expires_at == float(token["exp"])
    assert not identity.dev_mode


def test_forged_claims_with_the_server_key_are_accepted(users: Users) -> None:
    """The control row: the matrix's builder makes valid tokens until a defect is added."""
    identity = authenticate_token(forge(claims(users.bob)), room_id=ROOM)

    assert identity.django_user_id == users.bob.pk


def test_integer_user_id_claim_is_accepted(users: Users) -> None:
    identity = authenticate_token(forge(claims(users.bob, user_id=users.bob.pk)), room_id=ROOM)

    assert identity.user_id == str(users.bob.pk)


def test_room_claim_matching_the_path_is_accepted(users: Users) -> None:
    identity = authenticate_token(genuine(users.alice, room=ROOM), room_id=ROOM)

    assert identity.django_user_id == users.alice.pk


def test_access_token_from_a_refresh_token_is_accepted(users: Users) -> None:
    access = RefreshToken.for_user(users.alice).access_token

    identity = authenticate_token(str(access), room_id=ROOM)

    assert identity.django_user_id == users.alice.pk


# --- identify() with a token -----------------------------------------------------


@pytest.mark.parametrize("dev_auth", [True, False])
def test_identify_takes_the_token(users: Users, dev_auth: bool) -> None:
    query = {"auth_token": genuine(users.alice), "user_id": str(users.alice.pk)}

    identity = identify(query, room_id=ROOM, dev_auth=dev_auth)

    assert identity is not None
    assert identity.django_user_id == users.alice.pk


@pytest.mark.parametrize("dev_auth", [True, False])
def test_user_id_param_differing_from_the_token_is_refused(users: Users, dev_auth: bool) -> None:
    query = {"auth_token": genuine(users.alice), "user_id": str(users.bob.pk)}

    with pytest.raises(AuthRefused) as refused:
        identify(query, room_id=ROOM, dev_auth=dev_auth)

    assert (refused.value.code, refused.value.close_code) == UNAUTHORIZED


def test_dev_mode_does_not_rescue_a_bad_token(users: Users) -> None:
    query = {"auth_token": expired_genuine(users.alice), "user_id": str(users.alice.pk)}

    with pytest.raises(AuthRefused) as refused:
        identify(query, room_id=ROOM, dev_auth=True)

    assert (refused.value.code, refused.value.close_code) == UNAUTHORIZED


def test_empty_auth_token_param_is_refused_not_waited_for() -> None:
    with pytest.raises(AuthRefused) as refused:
        identify({"auth_token": ""}, room_id=ROOM, dev_auth=True)

    assert (refused.value.code, refused.value.close_code) == UNAUTHORIZED


def test_room_mismatch_through_identify_is_forbidden(users: Users) -> None:
    query = {"auth_token": genuine(users.alice, room="elsewhere")}

    with pytest.raises(AuthRefused) as refused:
        identify(query, room_id=ROOM, dev_auth=False)

    assert (refused.value.code, refused.value.close_code) == FORBIDDEN


# --- explicit checks beyond simplejwt's ------------------------------------------


def patch_simplejwt(monkeypatch: pytest.MonkeyPatch, name: str, value: Any) -> None:
    """Change a SIMPLE_JWT setting where simplejwt's tokens and presence.auth read it.

    Both modules hold the api_settings object they imported, so override_settings
    (which makes simplejwt build a new one) would not reach them.
    """
    for holder in (sj_tokens, auth):
        monkeypatch.setattr(holder.api_settings, name, value)


def test_refresh_token_is_refused_even_with_simplejwt_type_check_off(
    users: Users, monkeypatch: pytest.MonkeyPatch, auth_log: pytest.LogCaptureFixture
) -> None:
    """simplejwt skips its type check when TOKEN_TYPE_CLAIM is None; we do not."""
    refresh_token = str(RefreshToken.for_user(users.alice))
    patch_simplejwt(monkeypatch, "TOKEN_TYPE_CLAIM", None)

    with pytest.raises(AuthRefused) as refused:
        authenticate_token(refresh_token, room_id=ROOM)

    assert (refused.value.code, refused.value.close_code) == UNAUTHORIZED
    assert "access token refused: not an access token" in auth_log.text


def test_password_change_revokes_tokens_when_simplejwt_says_so(
    users: Users, monkeypatch: pytest.MonkeyPatch, settings: Any
) -> None:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    patch_simplejwt(monkeypatch, "CHECK_REVOKE_TOKEN", True)
    users.alice.set_password("before")
    users.alice.save()
    token = genuine(users.alice)
    assert authenticate_token(token, room_id=ROOM).django_user_id == users.alice.pk

    users.alice.set_password("after")
    users.alice.save()

    with pytest.raises(AuthRefused) as refused:
        authenticate_token(token, room_id=ROOM)
    assert (refused.value.code, refused.value.close_code) == UNAUTHORIZED
