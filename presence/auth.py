"""Who is connecting: credentials from the handshake -> an :class:`Identity`.

A simplejwt access token (``auth_token``) names a Django user; in development
mode only, a bare ``user_id`` query parameter is taken at its word. Nothing
here ever puts a token, or any part of one, into an exception or a log line
(PROTOCOL.md section 4; issue 4).
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from typing import Any

import jwt
from django.contrib.auth import get_user_model
from django.contrib.auth.base_user import AbstractBaseUser
from django.core.exceptions import ValidationError
from rest_framework_simplejwt.exceptions import ExpiredTokenError, TokenError
from rest_framework_simplejwt.settings import api_settings
from rest_framework_simplejwt.tokens import AccessToken
from rest_framework_simplejwt.utils import get_md5_hash_password

from presence.protocol.codes import CloseCode, ErrorCode

logger = logging.getLogger(__name__)

MAX_USER_ID = 128
# A simplejwt access token is ~250 characters; 4 KiB leaves room for custom
# claims while keeping a hostile client from making us base64-decode and
# JSON-parse megabytes before the signature check.
MAX_TOKEN_CHARS = 4096
ROOM_CLAIM = "room"
# The Django permission that lets a user kick, mute and lock (clients, admin, HTTP API).
MODERATE_PERMISSION = "presence.moderate_room"

# What the client reads: how to get a token that works, never why this one did
# not (the reason goes to the log only: see _unauthorized).
INVALID_TOKEN = (
    "invalid token: send an access token from POST /api/token/ as it came "
    "(refresh tokens and altered or not-yet-valid tokens are refused)"
)
EXPIRED_TOKEN = "token expired: get a new access token (POST /api/token/refresh/) and connect again"
# Said to the client: the token was genuine, the account no longer lets it in.
ACCOUNT_DISABLED = "account disabled"
PASSWORD_CHANGED = "password changed: log in again"


@dataclass(frozen=True, slots=True)
class Identity:
    """An authenticated (or, in development mode, asserted) user."""

    user_id: str
    django_user_id: int | None = None
    display_name: str = ""
    expires_at: float | None = None  # the token's ``exp`` (epoch seconds); None in dev mode
    moderator: bool = False  # has presence.moderate_room: may kick, mute and lock
    # simplejwt's digest of the user's password hash when the token was checked:
    # a socket whose user's password changed since is closed (presence/accounts.py).
    password_stamp: str = ""

    @property
    def dev_mode(self) -> bool:
        """True for a development-mode identity: asserted, not proven by a token."""
        return self.expires_at is None


class AuthRefused(Exception):
    """The connection is refused: send ``Error(code)`` and close with ``close_code``."""

    def __init__(self, code: ErrorCode, close_code: CloseCode, text: str) -> None:
        super().__init__(text)
        self.code = code
        self.close_code = close_code
        self.text = text


def _unauthorized(reason: str, text: str = INVALID_TOKEN) -> AuthRefused:
    # ``reason`` is one of this module's fixed strings: never exception text
    # from PyJWT (its decode errors can quote bytes of the token).
    logger.info("access token refused: %s", reason)
    return AuthRefused(ErrorCode.UNAUTHORIZED, CloseCode.UNAUTHORIZED, text)


# Why simplejwt refused a token, as fixed words for the operator's log: from
# PyJWT's exception types (never their text), else simplejwt's own messages.
_JWT_REASONS: tuple[tuple[type[Exception], str], ...] = (
    (jwt.InvalidAlgorithmError, "algorithm not allowed"),
    (jwt.InvalidSignatureError, "bad signature"),
    (jwt.ImmatureSignatureError, "not yet valid"),
    (jwt.DecodeError, "malformed"),
)
_SIMPLEJWT_REASONS = {
    "Token has wrong type": "wrong token type",
    "Token has no type": "no token type",
    "Token has no id": "no jti",
    "Token has no 'exp' claim": "no exp",
}


def _token_error_reason(exc: TokenError) -> str:
    if isinstance(exc, ExpiredTokenError):
        return "expired"
    cause = exc.__cause__  # TokenError <- TokenBackendError <- PyJWT's error
    while cause is not None:
        for kind, reason in _JWT_REASONS:
            if isinstance(cause, kind):
                return reason
        cause = cause.__cause__
    return _SIMPLEJWT_REASONS.get(str(exc), "invalid")


def authenticate_token(token: str, *, room_id: str) -> Identity:
    """Validate a simplejwt access token for ``room_id``; raise :class:`AuthRefused`.

    Sync and hits the database (the user lookup): call it through
    ``database_sync_to_async`` from a consumer.
    """
    if not isinstance(token, str) or not token:
        raise _unauthorized("missing")
    if len(token) > MAX_TOKEN_CHARS:
        raise _unauthorized("too long")
    # AccessToken checks: signature with settings.SIMPLE_JWT's key, algorithm
    # pinned to SIMPLE_JWT["ALGORITHM"] (so "none", HS512 or RS256 headers are
    # refused by PyJWT), exp present and in the future, nbf and iat not in the
    # future, jti present, token_type == "access".
    access: AccessToken | None = None
    reason = ""
    try:
        access = AccessToken(token)  # type: ignore[arg-type]  # it takes the encoded str
    except TokenError as exc:
        reason = _token_error_reason(exc)
    # PyJWT accepts any int()-able exp ("123", 1e20); simplejwt's datetime
    # conversion then raises these instead of TokenError.
    except (TypeError, ValueError, OverflowError):
        reason = "bad time claim"
    if access is None:
        # Raised outside the except block, so the refusal does not carry the
        # PyJWT error (whose text can quote claims) as its __context__.
        raise _unauthorized(reason, EXPIRED_TOKEN if reason == "expired" else INVALID_TOKEN)
    payload = access.payload
    # Belt and braces: simplejwt skips the type check when TOKEN_TYPE_CLAIM is
    # set to None, which would let a (longer-lived) refresh token through.
    if payload.get(api_settings.TOKEN_TYPE_CLAIM) != AccessToken.token_type:
        raise _unauthorized("not an access token")
    exp = payload.get("exp")
    if isinstance(exp, bool) or not isinstance(exp, int | float):
        raise _unauthorized("no exp")
    user = _token_user(payload)
    room = payload.get(ROOM_CLAIM)
    if room is not None and room != room_id:
        logger.info("access token refused: room claim does not match")
        raise AuthRefused(ErrorCode.FORBIDDEN, CloseCode.FORBIDDEN, "token not valid for this room")
    return Identity(
        user_id=str(payload[api_settings.USER_ID_CLAIM]),
        django_user_id=user.pk,
        display_name=user.get_username(),
        expires_at=float(exp),
        moderator=may_moderate(user),
        password_stamp=get_md5_hash_password(user.password),
    )


def may_moderate(user: Any) -> bool:
    """True for an active user with ``presence.moderate_room`` (superusers have it)."""
    has_perm = getattr(user, "has_perm", None)
    return bool(has_perm is not None and has_perm(MODERATE_PERMISSION))


def _token_user(payload: dict[str, Any]) -> AbstractBaseUser:
    """The active Django user the token names, as simplejwt's JWTAuthentication finds it."""
    user_id = payload.get(api_settings.USER_ID_CLAIM)
    if isinstance(user_id, bool) or not isinstance(user_id, str | int) or user_id == "":
        raise _unauthorized("no user id")
    model = get_user_model()
    user: AbstractBaseUser | None = None
    # A non-numeric id against an integer primary key raises ValueError or
    # ValidationError (quoting the id), which JWTAuthentication.get_user lets escape.
    with contextlib.suppress(model.DoesNotExist, ValueError, TypeError, ValidationError):
        user = model.objects.get(**{api_settings.USER_ID_FIELD: user_id})
    if user is None:
        raise _unauthorized("unknown user")
    if not user.is_active:
        raise _unauthorized("inactive user", ACCOUNT_DISABLED)
    if api_settings.CHECK_REVOKE_TOKEN and payload.get(
        api_settings.REVOKE_TOKEN_CLAIM
    ) != get_md5_hash_password(user.password):
        raise _unauthorized("password changed", PASSWORD_CHANGED)
    return user


def identify(query: dict[str, str], *, room_id: str, dev_auth: bool) -> Identity | None:
    """Resolve the handshake's credentials; None when there are none (wait for ClientHello).

    Sync and may hit the database: call it through ``database_sync_to_async``.
    """
    user_id = query.get("user_id", "")
    if "auth_token" in query:
        identity = authenticate_token(query["auth_token"], room_id=room_id)
        if user_id and user_id != identity.user_id:
            logger.info("access token refused: user_id parameter differs from the token")
            raise AuthRefused(
                ErrorCode.UNAUTHORIZED, CloseCode.UNAUTHORIZED, "user_id does not match the token"
            )
        return identity
    if not user_id:
        return None
    if not dev_auth:
        raise AuthRefused(
            ErrorCode.UNAUTHORIZED,
            CloseCode.UNAUTHORIZED,
            "development mode is off: user_id alone is not accepted; send an access token "
            "as auth_token (in the URL or the first ClientHello)",
        )
    if len(user_id) > MAX_USER_ID or not user_id.isprintable():
        raise AuthRefused(
            ErrorCode.BAD_MESSAGE,
            CloseCode.BAD_REQUEST,
            f"user_id must be 1-{MAX_USER_ID} printable characters",
        )
    _warn_dev_mode_once()
    return Identity(user_id=user_id, display_name=user_id)


DEV_MODE_WARNING = (
    "development mode (PRESENCE_DEV_AUTH): connections are accepted on a bare user_id "
    "without a token; said once per process, each one is counted in "
    "presence_dev_auth_connections_total"
)
_dev_mode_warned = False  # a warning per connection flooded the log


def _warn_dev_mode_once() -> None:
    global _dev_mode_warned
    if not _dev_mode_warned:
        _dev_mode_warned = True
        logger.warning(DEV_MODE_WARNING)
