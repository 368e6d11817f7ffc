"""uvicorn's h11 HTTP protocol, with a deadline for a request's head.

Served with ``uvicorn --http presence.transport.uvicorn_http:GuardedH11Protocol``
(``make run``, the Dockerfile, ``bench/servers.py``). Measured on uvicorn
0.54.0 (h11; httptools is not installed): a client that connects and sends
nothing, or half a request head (``GET /ws/lobby HTTP/1.1\\r\\nHost: x\\r\\n``
and no blank line), holds its socket for ever: uvicorn's only timer is the
keep-alive one, armed after a response and cancelled by any byte. One address
could hold every file descriptor of the process (slowloris); the WebSocket
handshake never reaches the per-IP attempt limit, which counts in the app.

This subclass gives every request head ``PRESENCE["HTTP_HEAD_TIMEOUT_SECONDS"]``
seconds (10; ``presence/transport/http_head.py``, shared with daphne's guard)
from the connection, or from the previous response, to arrive complete; a
client that takes longer is answered ``408 Request Timeout`` and closed.
Everything else is uvicorn's.
"""

from __future__ import annotations

import asyncio

import h11
from h11._connection import DEFAULT_MAX_INCOMPLETE_EVENT_SIZE  # uvicorn's default, from here
from uvicorn.protocols.http.h11_impl import H11Protocol

# Imported by uvicorn before the application configures Django: nothing here
# reads a setting until a connection arrives.
from presence.conf import presence_settings
from presence.transport.http_head import REQUEST_TIMEOUT


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol; a request head must arrive within ``HTTP_HEAD_TIMEOUT_SECONDS``."""

    _head_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        """uvicorn's, then the head deadline starts."""
        super().connection_made(transport)
        self._arm_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        """uvicorn's, without the deadline."""
        self._cancel_head_timer()
        super().connection_lost(exc)

    def on_response_complete(self) -> None:
        """uvicorn's; the next request's head gets a fresh deadline."""
        super().on_response_complete()
        if not self.transport.is_closing():
            self._arm_head_timer()

    def send_400_response(self, msg: str) -> None:
        """uvicorn's 400, or 431 when the head outgrew h11's buffer unfinished.

        Which of the two a head over the limit gets depended on how the event
        loop cut the bytes: read whole, websockets answers it 431; cut, h11
        gave up on it with a 400. Now it is 431 either way.
        """
        pending, _ = self.conn.trailing_data
        if self.conn.their_state is h11.ERROR and len(pending) > self._max_head_bytes():
            self._send_status_and_close(431, b"Request Header Fields Too Large")
            return
        super().send_400_response(msg)

    def _max_head_bytes(self) -> int:
        limit = self.config.h11_max_incomplete_event_size
        return int(limit if limit is not None else DEFAULT_MAX_INCOMPLETE_EVENT_SIZE)

    def _send_status_and_close(self, status: int, reason: bytes) -> None:
        headers = [(b"content-type", b"text/plain; charset=utf-8"), (b"connection", b"close")]
        response = h11.Response(status_code=status, headers=headers, reason=reason)
        self.transport.write(self.conn.send(response) or b"")
        self.transport.write(self.conn.send(h11.Data(data=reason)) or b"")
        self.transport.write(self.conn.send(h11.EndOfMessage()) or b"")
        self.transport.close()

    def _arm_head_timer(self) -> None:
        self._cancel_head_timer()
        deadline = presence_settings().HTTP_HEAD_TIMEOUT_SECONDS
        self._head_timer = self.loop.call_later(deadline, self._head_timed_out)

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        # A head that arrived moved h11 out of IDLE (a request being served, or a
        # WebSocket upgraded away from this protocol): nothing to end.
        if self.conn.their_state is not h11.IDLE or self.transport.is_closing():
            return
        if self.transport.get_protocol() is not self:
            return
        self.transport.write(REQUEST_TIMEOUT)
        self.transport.close()
