"""Who is connecting: credentials from the handshake -> an :class:`Identity`.

Development mode takes a bare ``user_id`` query parameter. JWT access tokens
(``auth_token``) plug in here with the security issue; nothing else in the
service needs to change for that.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from presence.protocol.codes import CloseCode, ErrorCode

logger = logging.getLogger(__name__)

MAX_USER_ID = 128


@dataclass(frozen=True, slots=True)
class Identity:
    """An authenticated (or, in development mode, asserted) user."""

    user_id: str
    django_user_id: int | None = None
    display_name: str = ""


class AuthRefused(Exception):
    """The connection is refused: send ``Error(code)`` and close with ``close_code``."""

    def __init__(self, code: ErrorCode, close_code: CloseCode, text: str) -> None:
        super().__init__(text)
        self.code = code
        self.close_code = close_code
        self.text = text


def identify(query: dict[str, str]) -> Identity:
    """Resolve the handshake's credentials or raise :class:`AuthRefused`."""
    user_id = query.get("user_id", "")
    if not user_id:
        raise AuthRefused(ErrorCode.UNAUTHORIZED, CloseCode.UNAUTHORIZED, "credentials required")
    if len(user_id) > MAX_USER_ID or not user_id.isprintable():
        raise AuthRefused(ErrorCode.BAD_MESSAGE, CloseCode.BAD_REQUEST, "invalid user_id")
    return Identity(user_id=user_id, display_name=user_id)
