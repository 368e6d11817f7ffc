"""daphne's WebSocket protocol, bounded below the application.

daphne 4.2.3 (autobahn 26.10.2 on Twisted 26.10.0) answers every ``Ping``
and collects every continuation frame of a message, none of which the
application sees: a ping flood or a stream of empty continuation frames is
never closed. It also fails a connection by dropping TCP without a close
frame (autobahn's ``failByDrop``), so a frame over 64 KiB reached the client
as 1006 rather than 1009.

daphne has no option for a protocol class; its ``WebSocketFactory`` builds
``WebSocketFactory.protocol`` (Twisted's ``Factory.protocol``), which
:func:`install` points at :class:`GuardedWebSocketProtocol`. ``graphwiz.asgi``
calls it, so ``make run-daphne``, ``manage.py runserver`` (daphne's) and
``bench/servers.py`` all serve with it: both load the application before
building the factory.
"""

from __future__ import annotations

import time
from typing import Any

from daphne.ws_protocol import WebSocketFactory, WebSocketProtocol
from twisted.internet import reactor

from presence.conf import presence_settings
from presence.protocol.frameguard import FrameGuard

# After its close frame the server half-closes and discards what still comes
# for this long, then drops the socket: closing at once while the client is
# still sending makes the kernel answer with a reset, which can destroy the
# close frame (and its code) before the client has read it.
LINGER_SECONDS = 1.0


class GuardedWebSocketProtocol(WebSocketProtocol):  # type: ignore[misc]
    """daphne's protocol with the frame guard, failing with close frames, not silent drops."""

    guard: FrameGuard
    guard_code: int | None = None  # the close code the guard chose, for the application

    def _connectionMade(self) -> None:
        super()._connectionMade()
        # Copied from the factory by the call above: fail with a close frame
        # and its code (1009 for a frame over the limit), then drop.
        self.failByDrop = False
        self.guard = FrameGuard(presence_settings().frame_limits, clock=time.monotonic)

    def onFrameBegin(self) -> None:
        """A frame header arrived: let the guard count it before autobahn handles it."""
        super().onFrameBegin()
        frame = self.current_frame
        verdict = self.guard.frame(frame.opcode, frame.fin)
        if verdict is None or self.guard_code is not None:
            return
        self.guard_code = verdict.code
        self.sendCloseFrame(code=verdict.code, reasonUtf8=verdict.reason.encode(), isReply=False)
        self.wasClean = False
        self.wasNotCleanReason = verdict.reason
        self.state = self.STATE_CLOSED  # autobahn parses nothing more
        self.transport.loseWriteConnection()  # the close frame, then FIN
        # IReactorTime declares callLater without ``self`` (zope.interface): mypy
        # takes the delay for the instance and the callable's place for the delay.
        reactor.callLater(LINGER_SECONDS, self._closeConnection, True)  # type: ignore[arg-type]

    def _dataReceived(self, data: bytes) -> None:
        if self.guard_code is None:  # else: closing, what still comes is dropped unread
            super()._dataReceived(data)

    def onClose(self, wasClean: bool, code: Any, reason: Any) -> None:
        """Report the guard's code to the application when the guard closed the socket."""
        super().onClose(wasClean, self.guard_code or code, reason)


def install() -> None:
    """Make daphne's WebSocket factory build :class:`GuardedWebSocketProtocol`."""
    WebSocketFactory.protocol = GuardedWebSocketProtocol
