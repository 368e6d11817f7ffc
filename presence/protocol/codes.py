"""Close codes (PROTOCOL.md section 7) and the wire error codes."""

from __future__ import annotations

from enum import IntEnum

from presence.protocol import core_pb2 as pb

ErrorCode = pb.Error.ErrorCode


class CloseCode(IntEnum):
    """WebSocket close codes the server sends (PROTOCOL.md section 7).

    The application closes with 1000 or 3000-4999 (all daphne passes on);
    1009 comes from the WebSocket layer below it (a frame or message over
    64 KiB, or in too many fragments: ``presence.protocol.frameguard``).
    """

    NORMAL = 1000
    MESSAGE_TOO_BIG = 1009
    GOING_AWAY = 4000
    UNSUPPORTED_DATA = 4003
    INVALID_MESSAGES = 4007
    RATE_LIMITED = 4008
    SLOW_CONSUMER = 4009
    SESSION_TAKEN_OVER = 4010
    INTERNAL_ERROR = 4011
    BACKEND_UNAVAILABLE = 4012
    BAD_REQUEST = 4400
    UNAUTHORIZED = 4401
    FORBIDDEN = 4403
    AUTH_TIMEOUT = 4408
    ROOM_UNAVAILABLE = 4423
    TOO_MANY_CONNECTIONS = 4429
