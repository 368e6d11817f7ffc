"""A WebSocket upgrade to a path with no endpoint (``/ws``, ``/``, ``/socket.io/``).

Without it channels' ``URLRouter`` raises, and the server answers HTTP 500
with an ERROR traceback per request. Here such an attempt counts against the
per-IP connection limit like any other, is counted in
``presence_connections_total{outcome="refused_path"}``, and is refused the
way every handshake is (PROTOCOL.md section 4.1): accepted, an ``Error``
naming the endpoint to use, close 4400 (or 4429 past the attempt limit).
"""

from __future__ import annotations

import logging
from typing import Any

from presence import metrics
from presence.conf import presence_settings
from presence.protocol.codec import encode
from presence.protocol.codes import CloseCode, ErrorCode
from presence.protocol.envelope import error_message
from presence.transport.handshake import Refusal, count_attempt, negotiated, parse_query

logger = logging.getLogger(__name__)

MAX_PATH_ECHO = 64  # characters of the requested path quoted back


def unrouted_text(path: str) -> str:
    """Where the client should have connected."""
    shown = path[:MAX_PATH_ECHO] + ("..." if len(path) > MAX_PATH_ECHO else "")
    return (
        f"no WebSocket endpoint at {shown!r}: connect to /ws/{{room_id}} "
        "(a room id is 1-64 characters of [A-Za-z0-9._-])"
    )


class UnroutedConsumer:
    """Refuse a WebSocket at an unknown path: ``Error`` + 4400, never an HTTP 500."""

    @classmethod
    def as_asgi(cls) -> UnroutedConsumer:
        """The ASGI application (one instance serves every connection: it keeps no state)."""
        return cls()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        """Answer the handshake with the refusal, then wait for the socket to close."""
        event = await receive()
        if event.get("type") != "websocket.connect":
            return
        conf = presence_settings()
        refusal = Refusal(
            ErrorCode.BAD_MESSAGE,
            CloseCode.BAD_REQUEST,
            unrouted_text(scope.get("path", "")),
            outcome="refused_path",
        )
        try:
            await count_attempt(scope, conf)
        except Refusal as over_the_limit:  # 4429 (or 4012: the limit's backend is down)
            refusal = over_the_limit
        else:
            try:
                query = parse_query(scope.get("query_string", b""))
                refusal.encoding, refusal.subprotocol = negotiated(scope, query)
            except Refusal as unreadable:  # still this refusal, in what the client reads
                refusal.encoding, refusal.subprotocol = unreadable.encoding, unreadable.subprotocol
        logger.info("refused a connection to an unrouted path (%d)", refusal.close_code)
        meter = metrics.ConnectionMeter()
        meter.refused(refusal.close_code, refusal.outcome)
        error = error_message(
            refusal.code, refusal.text, now_ms=0, retry_after_ms=refusal.retry_after_ms
        )
        frame = encode(error, refusal.encoding)
        data = {"bytes": frame} if isinstance(frame, bytes) else {"text": frame}
        try:
            await send({"type": "websocket.accept", "subprotocol": refusal.subprotocol})
            await send({"type": "websocket.send", **data})
            await send({"type": "websocket.close", "code": int(refusal.close_code)})
        except Exception:  # each server raises its own error for a socket gone meanwhile
            logger.info("client went away during the refusal")
            return
        finally:
            meter.closed(refusal.close_code)
        # Stay until the server reports the disconnect, as the room consumer
        # does: returning at once can cut the socket before the close is read.
        while (await receive()).get("type") != "websocket.disconnect":
            pass
