"""The checks a WebSocket handshake passes before the socket joins a room.

Every attempt first counts against the per-IP connection rate (whatever its
path, room or origin), then PROTOCOL.md's checks: a well-formed request (room
id, query, encoding), an allowed origin, then credentials. A refusal
is a :class:`Refusal`; the consumer accepts the socket, sends the ``Error``
and closes with the code, since browsers cannot read a failed upgrade.
"""

from __future__ import annotations

import asyncio
import logging
import re
import weakref
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from channels.db import database_sync_to_async
from django.conf import settings

from presence import metrics
from presence.auth import AuthRefused, Identity, identify
from presence.conf import PresenceSettings
from presence.protocol.codec import Encoding, UnsupportedSubprotocol, negotiate_encoding
from presence.protocol.codes import CloseCode, ErrorCode
from presence.protocol.errors import ProtocolError
from presence.protocol.origin import OriginPolicy
from presence.protocol.ratelimit import attempt_key
from presence.protocol.validation import name_problem
from presence.transport.ratelimits import (
    AttemptLimiter,
    RateLimitBackendError,
    build_attempt_limiter,
    client_ip,
)

logger = logging.getLogger(__name__)

ROOM_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
INVALID_ROOM_ID = "invalid room id: use 1-64 characters of [A-Za-z0-9._-]"
MAX_QUERY_FIELDS = 16
MAX_CLIENT_LABEL = 128  # the client_id label, as recorded in history and the registry
MAX_ORIGIN_ECHO = 64  # characters of a refused Origin quoted back


class Refusal(Exception):
    """The handshake is refused: answer ``Error(code)``, then close."""

    def __init__(
        self,
        code: ErrorCode,
        close_code: CloseCode,
        text: str,
        *,
        retry_after_ms: int = 0,
        outcome: str = "",
    ) -> None:
        super().__init__(text)
        self.code = code
        self.close_code = close_code
        self.text = text
        self.retry_after_ms = retry_after_ms
        self.outcome = outcome  # presence_connections_total's label; "" = by close code
        # How to answer: what the handshake negotiated before it was refused.
        self.encoding = Encoding.PROTO
        self.subprotocol: str | None = None


@dataclass(frozen=True, slots=True)
class Admission:
    """What a handshake that passed the checks carries on to the join."""

    room_id: str
    encoding: Encoding
    subprotocol: str | None
    query: dict[str, str]
    ip_address: str
    identity: Identity | None  # None: the token comes in the first ClientHello
    # A bare user_id outside development mode, held while a legacy CLIENT_HELLO
    # may still bring the token (issue 14): the answer if none comes.
    refusal: Refusal | None = None
    resume: ResumeRequest | None = None  # session_id + last_seq (PROTOCOL.md section 6)


@dataclass(frozen=True, slots=True)
class ResumeRequest:
    """A reconnect naming its session: resume after ``last_seq`` (0 = nothing processed)."""

    session_id: str
    last_seq: int


SESSION_ID = re.compile(r"[0-9a-f]{32}")
MAX_LAST_SEQ = (1 << 63) - 1
RESUME_TEXT = (
    "resume needs session_id (the 32 hex characters of ServerHello.session_id) and "
    "last_seq (the highest seq you processed, a decimal >= 0; 0 = nothing)"
)


def resume_request(query: dict[str, str]) -> ResumeRequest | None:
    """The ``session_id`` + ``last_seq`` parameters, checked; ``None`` without them.

    Either without the other, or a malformed value, is refused with 4400.
    """
    session_id, last_seq = query.get("session_id"), query.get("last_seq")
    if session_id is None and last_seq is None:
        return None
    if session_id is None or last_seq is None:
        raise Refusal(ErrorCode.BAD_MESSAGE, CloseCode.BAD_REQUEST, RESUME_TEXT)
    if not SESSION_ID.fullmatch(session_id):
        raise Refusal(
            ErrorCode.BAD_MESSAGE, CloseCode.BAD_REQUEST, f"bad session_id: {RESUME_TEXT}"
        )
    if not (last_seq.isascii() and last_seq.isdigit()) or int(last_seq) > MAX_LAST_SEQ:
        raise Refusal(ErrorCode.BAD_MESSAGE, CloseCode.BAD_REQUEST, f"bad last_seq: {RESUME_TEXT}")
    return ResumeRequest(session_id, int(last_seq))


def parse_query(raw: bytes) -> dict[str, str]:
    """The handshake's query parameters (last value wins), bounded in count."""
    try:
        pairs = parse_qsl(
            raw.decode("latin-1"), keep_blank_values=True, max_num_fields=MAX_QUERY_FIELDS
        )
    except ValueError:
        raise Refusal(
            ErrorCode.BAD_MESSAGE,
            CloseCode.BAD_REQUEST,
            f"too many query parameters: at most {MAX_QUERY_FIELDS}",
        ) from None
    return dict(pairs)


def negotiated(scope: Mapping[str, Any], query: dict[str, str]) -> tuple[Encoding, str | None]:
    """The connection's encoding and the subprotocol to echo (PROTOCOL.md section 2)."""
    try:
        return negotiate_encoding(scope.get("subprotocols") or [], query.get("format"))
    except UnsupportedSubprotocol as unknown:
        refusal = Refusal(unknown.code, CloseCode.BAD_REQUEST, unknown.message)
        # Select the client's own offer, so a browser completes the handshake and
        # reads the Error and the close code (it fails one that selects none).
        refusal.encoding, refusal.subprotocol = unknown.encoding, unknown.offered
        raise refusal from None
    except ProtocolError as bad:
        raise Refusal(bad.code, CloseCode.BAD_REQUEST, bad.message) from None


def display_name_for(name: str, identity: Identity, conf: PresenceSettings) -> str:
    """The name others see: asked for, else the account's, else the user id."""
    limit = conf.field_limits.display_name
    # An account's own name may be longer than a display name: cut it; a name
    # the client asked for is checked as it is.
    name = name or (identity.display_name or identity.user_id)[:limit]
    if len(name) > limit or name_problem(name) is not None:
        raise Refusal(
            ErrorCode.BAD_MESSAGE,
            CloseCode.BAD_REQUEST,
            f"display_name: 1-{limit} printable characters",
        )
    return name


def client_label(query: dict[str, str]) -> str:
    """The client's own label (its ``client_id`` parameter), checked like any name."""
    label = query.get("client_id", "")
    problem = name_problem(label)
    if len(label) > MAX_CLIENT_LABEL or problem is not None:
        reason = problem or f"is longer than {MAX_CLIENT_LABEL} characters"
        raise Refusal(
            ErrorCode.BAD_MESSAGE,
            CloseCode.BAD_REQUEST,
            f"client_id {reason}; use up to {MAX_CLIENT_LABEL} printable characters",
        )
    return label


def _header(scope: Mapping[str, Any], name: bytes) -> str | None:
    for key, value in scope.get("headers") or []:
        if key == name:
            return bytes(value).decode("latin-1")
    return None


async def admit(
    scope: Mapping[str, Any], conf: PresenceSettings, *, hello_may_authenticate: bool = False
) -> Admission:
    """Run every handshake check; raise :class:`Refusal` at the first that fails.

    Every attempt counts against the per-IP limit, a malformed one too.
    ``hello_may_authenticate``: the socket may speak the legacy wire, whose
    client always names a ``user_id`` and sends its token in its hello; a bare
    ``user_id`` outside development mode is then held in ``Admission.refusal``.
    """
    try:
        query = parse_query(scope.get("query_string", b""))
        encoding, subprotocol = negotiated(scope, query)
    except Refusal:
        await count_attempt(scope, conf)  # may refuse with 4429 instead
        raise
    try:
        ip_address = await count_attempt(scope, conf)
        return await _check(
            scope, conf, query, ip_address, (encoding, subprotocol), hello_may_authenticate
        )
    except Refusal as refused:
        refused.encoding, refused.subprotocol = encoding, subprotocol
        raise


async def count_attempt(scope: Mapping[str, Any], conf: PresenceSettings) -> str:
    """Count one connection attempt of the client's IP; return the IP or refuse (4429, 4012)."""
    ip_address = client_ip(scope, frozenset(conf.TRUSTED_PROXIES))
    try:
        decision = await get_attempt_limiter(conf).hit(attempt_key(ip_address))
    except RateLimitBackendError:
        logger.warning("rate-limit backend unavailable; refusing the handshake")
        raise Refusal(
            ErrorCode.UNAVAILABLE, CloseCode.BACKEND_UNAVAILABLE, "backend unavailable"
        ) from None
    metrics.count_rate_decision("connection", decision.allowed)
    if not decision.allowed:
        raise Refusal(
            ErrorCode.RATE_LIMITED,
            CloseCode.TOO_MANY_CONNECTIONS,
            "too many connection attempts",
            retry_after_ms=decision.retry_after_ms,
        )
    return ip_address


async def _check(
    scope: Mapping[str, Any],
    conf: PresenceSettings,
    query: dict[str, str],
    ip_address: str,
    negotiation: tuple[Encoding, str | None],
    hello_may_authenticate: bool = False,
) -> Admission:
    room_id = scope["url_route"]["kwargs"].get("room_id", "")
    if not ROOM_ID.fullmatch(room_id):
        raise Refusal(ErrorCode.BAD_MESSAGE, CloseCode.BAD_REQUEST, INVALID_ROOM_ID)
    client_label(query)
    origin = _header(scope, b"origin")
    if not origin_policy(conf).allows(origin):
        raise Refusal(
            ErrorCode.FORBIDDEN,
            CloseCode.FORBIDDEN,
            origin_refusal_text(origin),
            outcome="refused_origin",
        )
    try:
        if query.get("auth_token"):
            identity = await database_sync_to_async(identify)(
                query, room_id=room_id, dev_auth=conf.DEV_AUTH
            )
        else:  # no database needed
            identity = identify(query, room_id=room_id, dev_auth=conf.DEV_AUTH)
    except AuthRefused as refused:
        refusal = Refusal(refused.code, refused.close_code, refused.text)
        if hello_may_authenticate and _bare_user_id(query, conf):
            return Admission(room_id, *negotiation, query, ip_address, None, refusal)
        raise refusal from None
    # After the credentials: a session is only asked about by who may resume it.
    resume = resume_request(query)
    if identity is not None and identity.dev_mode:
        metrics.DEV_AUTH_CONNECTIONS.inc()
    return Admission(room_id, *negotiation, query, ip_address, identity, resume=resume)


def _bare_user_id(query: dict[str, str], conf: PresenceSettings) -> bool:
    """A user_id without a token, outside development mode."""
    return not conf.DEV_AUTH and "auth_token" not in query and bool(query.get("user_id"))


def awaiting_credentials_text(conf: PresenceSettings) -> str:
    """What a socket without credentials must send (development mode says so at once)."""
    return (
        f"no credentials yet: send a ClientHello with auth_token within "
        f"{conf.AUTH_TIMEOUT_SECONDS:g} s, or reconnect with user_id in the URL "
        "(development mode)"
    )


def credentials_too_late_text(conf: PresenceSettings) -> str:
    """Why a socket without credentials is closed with 4408."""
    text = (
        f"no credentials within {conf.AUTH_TIMEOUT_SECONDS:g} s: send a ClientHello with auth_token"
    )
    return text + " or user_id in the URL (development mode)" if conf.DEV_AUTH else text


HELLO_WITHOUT_TOKEN = (
    "this socket came without credentials: its first ClientHello must carry auth_token"
)


def origin_refusal_text(origin: str | None) -> str:
    """Why an origin was refused, naming the settings that would allow it."""
    if not origin:
        return "an Origin header is required: PRESENCE_ALLOW_MISSING_ORIGIN is off on this server"
    shown = origin[:MAX_ORIGIN_ECHO] + ("..." if len(origin) > MAX_ORIGIN_ECHO else "")
    return (
        f"origin {shown!r} not allowed: the server accepts origins whose host is in "
        "ALLOWED_HOSTS or that are listed in PRESENCE_ALLOWED_ORIGINS"
    )


def origin_policy(conf: PresenceSettings) -> OriginPolicy:
    """Allowed origins: ``ALLOWED_HOSTS`` plus ``PRESENCE_ALLOWED_ORIGINS``."""
    return OriginPolicy.of(
        settings.ALLOWED_HOSTS, conf.ALLOWED_ORIGINS, allow_missing=conf.ALLOW_MISSING_ORIGIN
    )


_limiters: weakref.WeakKeyDictionary[
    asyncio.AbstractEventLoop, tuple[tuple[str, str, int, float], AttemptLimiter]
] = weakref.WeakKeyDictionary()


def get_attempt_limiter(conf: PresenceSettings) -> AttemptLimiter:
    """The connection-attempt limiter of the running event loop (rebuilt on new settings)."""
    config = (
        conf.REDIS_URL,
        conf.REDIS_CHANNEL_PREFIX,
        conf.RATE_LIMIT_MAX_REQUESTS,
        conf.RATE_LIMIT_WINDOW_SECONDS,
    )
    loop = asyncio.get_running_loop()
    cached = _limiters.get(loop)
    if cached is None or cached[0] != config:
        redis_url, prefix, limit, window = config
        limiter = build_attempt_limiter(
            redis_url=redis_url, prefix=prefix, limit=limit, window=window
        )
        cached = _limiters[loop] = (config, limiter)
    return cached[1]
