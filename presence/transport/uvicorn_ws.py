"""uvicorn's websockets-sansio protocol, bounded below the application.

Served with ``uvicorn --ws presence.transport.uvicorn_ws:GuardedWebSocketProtocol``
(``make run``, the Dockerfile, ``bench/servers.py``). Measured on uvicorn
0.54.0 with websockets 17.4, the upstream protocol class:

* never sends the 414/431 answer websockets prepares for a request line or
  header line over 8 KiB (``websockets.http11.MAX_LINE_LENGTH``), nor closes
  the socket: it stays open, silent, for as long as the client likes;
* answers every ``Ping`` and collects every continuation frame of a message
  for ever (a flood of empty ones grew a process by 76 MB in 30 s at 100 %
  CPU), none of which the application sees;
* closes a client that does not answer its keep-alive ping with 1011
  (internal error), a code PROTOCOL.md section 7 does not list.

This subclass sends the prepared answer and closes, feeds every frame header
to :class:`~presence.protocol.frameguard.FrameGuard` (4008 for a ping or
pong flood, 1009 for a message in too many fragments), and closes a client
that does not answer the keep-alive ping with 4009 (slow consumer: resume),
and stops reading the socket only while a backlog of events waits for the
application, not after every message. Everything else is uvicorn's.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, cast

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.frames import Frame, Opcode
from websockets.http11 import Request
from websockets.protocol import State

from presence.conf import presence_settings
from presence.protocol.codes import CloseCode
from presence.protocol.frameguard import FrameGuard

KEEPALIVE_TIMEOUT_REASON = "keepalive ping timeout"
# After its close frame the server half-closes and discards what still comes
# for this long, then drops the socket. Closing at once while the client is
# still sending makes the kernel answer with a reset, which can destroy the
# close frame (and its code) before the client has read it.
LINGER_SECONDS = 1.0
# Reading pauses once more events than this wait for the application, and
# resumes when it has taken them all. uvicorn paused after every message and
# resumed when the application took it: two event-loop calls (and, on uvloop,
# epoll changes) per frame of a client sending at a steady rate, whose events
# almost never queue up. What may wait stays bounded: this many events plus
# what one read of the socket holds (as before: a read is parsed whole).
RECEIVE_PAUSE_EVENTS = 4
# The ASGI scope extension under which the protocol offers a synchronous write
# of one data frame (``send_now``) to an application that can use it: the room
# tick writes Batch frames without a task per member (presence/transport/outbound.py).
SEND_NOW_EXTENSION = "graphwiz.send_now"


class ReceiveQueue:
    """The events waiting for the application: uvicorn's ``asyncio.Queue``, lighter.

    An ``asyncio.Queue`` per connection costs three deques and an ``Event``
    (~2 KB), made whether or not anything ever waits. This keeps a list of
    events and the futures of waiting readers (the consumer is the one
    reader); the same ``put_nowait``, ``get``, ``empty`` and ``qsize``.
    Unbounded like uvicorn's: the protocol stops reading the socket while
    more than ``RECEIVE_PAUSE_EVENTS`` events wait.
    """

    __slots__ = ("_items", "_waiters")

    def __init__(self) -> None:
        self._items: list[Any] = []
        self._waiters: list[asyncio.Future[None]] | None = None

    def put_nowait(self, item: Any) -> None:
        """Queue an event and wake the readers."""
        self._items.append(item)
        waiters, self._waiters = self._waiters, None
        for waiter in waiters or ():
            if not waiter.done():
                waiter.set_result(None)

    async def get(self) -> Any:
        """The oldest event, waiting for one if none is queued."""
        while not self._items:
            waiter = asyncio.get_running_loop().create_future()
            if self._waiters is None:
                self._waiters = []
            self._waiters.append(waiter)
            try:
                await waiter
            finally:
                if self._waiters is not None and waiter in self._waiters:
                    self._waiters.remove(waiter)
        return self._items.pop(0)

    def empty(self) -> bool:
        """No event waiting."""
        return not self._items

    def qsize(self) -> int:
        """Events waiting."""
        return len(self._items)


class GuardedWebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's websockets-sansio protocol with the frame guard and documented close codes."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.queue = ReceiveQueue()  # type: ignore[assignment]
        self.guard = FrameGuard(presence_settings().frame_limits, clock=time.monotonic)

    def data_received(self, data: bytes) -> None:
        """Bytes arrived; answer a request websockets refused, which uvicorn leaves hanging."""
        super().data_received(data)
        refused = self.conn.handshake_exc is not None and not self.handshake_initiated
        if refused and not self.transport.is_closing():
            # websockets queued "431 Request Header Fields Too Large" (or 414, or
            # end of stream for a request it cannot parse) and stopped parsing.
            self.transport.write(b"".join(self.conn.data_to_send()))
            self.transport.close()

    def handle_events(self) -> None:
        """uvicorn's event loop, with every frame header shown to the guard first."""
        for event in self.conn.events_received():
            if isinstance(event, Request):
                self.handle_connect(event)
                continue
            if not isinstance(event, Frame):
                continue
            verdict = self.guard.frame(int(event.opcode), event.fin)
            if verdict is not None:
                self.fail(verdict.code, verdict.reason)
                return
            if event.opcode == Opcode.CONT:
                self.handle_cont(event)
            elif event.opcode == Opcode.TEXT:
                self.handle_text(event)
            elif event.opcode == Opcode.BINARY:
                self.handle_bytes(event)
            elif event.opcode == Opcode.PING:
                self.handle_ping()
            elif event.opcode == Opcode.PONG:
                self.handle_pong(event)
            elif event.opcode == Opcode.CLOSE:
                self.handle_close(event)

    def handle_connect(self, event: Request) -> None:
        """uvicorn's; the application's scope also offers :meth:`send_now`."""
        super().handle_connect(event)
        if self.handshake_initiated and not self.close_sent:  # an upgrade, not a refusal
            extensions = cast("dict[str, Any]", self.scope["extensions"])
            extensions[SEND_NOW_EXTENSION] = self.send_now

    def connection_lost(self, exc: Exception | None) -> None:
        """uvicorn's, and the scope lets go of the protocol (a reference cycle otherwise)."""
        super().connection_lost(exc)
        scope = getattr(self, "scope", None)
        if scope is not None:
            scope["extensions"].pop(SEND_NOW_EXTENSION, None)

    def send_now(self, frame: bytes | str) -> bool:
        """Write one data frame at once; ``False`` when :meth:`send` would wait or fail.

        The ``websocket.send`` branch of uvicorn's ``send`` without the event
        and the awaits, for a caller that cannot wait (the room tick), which
        then hands the frame to its writer task instead.
        """
        if not self.writable.is_set() or self.disconnected or self.close_sent:
            return False
        if not self.handshake_complete or self.initial_response is not None:
            return False
        if self.conn.state is not State.OPEN or self.transport.is_closing():
            return False
        if isinstance(frame, bytes):
            self.conn.send_binary(frame)
        else:
            self.conn.send_text(frame.encode())
        self.transport.write(b"".join(self.conn.data_to_send()))
        return True

    def send_receive_event_to_app(self) -> None:
        """A whole message arrived: queue it; pause reading only behind a backlog."""
        data = self.frames[0] if len(self.frames) == 1 else b"".join(self.frames)
        self.frames = []
        if self.close_sent:  # past the close: discarded, reading stays on for the close reply
            return
        if self.curr_msg_data_type == "text":
            try:
                self.queue.put_nowait({"type": "websocket.receive", "text": data.decode()})
            except UnicodeDecodeError:
                self.logger.exception("Invalid UTF-8 sequence received from client.")
                self.conn.send_close(1007)
                self.handle_parser_exception()
                return
        else:
            self.queue.put_nowait({"type": "websocket.receive", "bytes": data})
        if not self.read_paused and self.queue.qsize() > RECEIVE_PAUSE_EVENTS:
            self.read_paused = True
            self.transport.pause_reading()

    def start_keepalive(self) -> None:
        """uvicorn's, called once the 101 is written: the handshake is no longer needed.

        The request and the response (their headers, ~2-3 KB) stayed with
        the connection for its whole life; nothing reads them after the 101.
        """
        super().start_keepalive()
        self.request = None  # type: ignore[assignment]
        self.response = None  # type: ignore[assignment]

    def keepalive_timeout(self) -> None:
        """No pong in time: close with 4009, the code for a reader that stopped reading."""
        self.pong_timer = None
        self.pending_ping_payload = None
        self.fail(CloseCode.SLOW_CONSUMER, KEEPALIVE_TIMEOUT_REASON)

    def fail(self, code: int, reason: str) -> None:
        """Close with ``code``: tell the application, send the close frame, drop the socket."""
        if self.close_sent or self.transport.is_closing():
            return
        self.queue.put_nowait({"type": "websocket.disconnect", "code": code, "reason": reason})
        if not self.handshake_complete:  # frames sent before the 101: nothing to close politely
            self.close_sent = True
            self.transport.close()
            return
        self.conn.fail(code, reason)  # queues the close frame; later input is discarded
        self.transport.write(b"".join(self.conn.data_to_send()))
        self.close_sent = True
        if self.transport.can_write_eof():
            self.transport.write_eof()
        if self.read_paused:
            self.read_paused = False
            self.transport.resume_reading()
        # Abort, not close: a client that stopped reading never lets the
        # write buffer drain, and close() would wait for it for ever. Kept as
        # uvicorn's close timer, so an application that returns at once does
        # not close the socket before the linger (uvicorn closes it unless one is set).
        self.close_timer = self.loop.call_later(LINGER_SECONDS, self.transport.abort)
