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
