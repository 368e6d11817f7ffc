"""daphne's HTTP channel, with a deadline for a request's head.

daphne 4.2.3 serves HTTP with Twisted's (26.10.0) ``twisted.web.http.HTTPChannel``,
whose only timer is an idle timeout of 12 hours that every byte restarts.
Measured: a client that connects and sends nothing, half a request head
(``GET /ws/lobby HTTP/1.1\\r\\nHost: x\\r\\n`` and no blank line), or one byte
every few seconds, held its socket for ever (40 s and counting), under
``make run-daphne`` and ``runserver`` alike. One address could hold every file
descriptor of the process (slowloris): the per-IP attempt limit counts in the
application, which such a client never reaches.

:class:`GuardedHTTPChannel` gives every request head
``PRESENCE["HTTP_HEAD_TIMEOUT_SECONDS"]`` seconds (10; shared with uvicorn's
guard, ``presence/transport/http_head.py``) from the connection, or from the
previous response on a kept-alive connection, to arrive complete; bytes that
trickle in do not move the deadline. A client that takes longer is answered
``408 Request Timeout`` and closed. Once a head is whole the deadline is gone:
a request the application takes long to answer, and a WebSocket daphne has
upgraded the connection to, are never touched.

daphne has no option for an HTTP protocol class; its ``HTTPFactory`` builds
Twisted's ``HTTPFactory.protocol``, which :func:`install` points at a builder
of this channel. ``graphwiz.asgi`` calls it, so ``make run-daphne``,
``manage.py runserver`` (daphne's) and ``bench/servers.py`` all serve with it.
"""

from __future__ import annotations

from typing import Any

from daphne.http_protocol import HTTPFactory
from twisted.internet.protocol import connectionDone
from twisted.protocols.policies import ProtocolWrapper
from twisted.python.failure import Failure
from twisted.web import http

from presence.conf import presence_settings
from presence.transport.http_head import REQUEST_TIMEOUT


class GuardedHTTPChannel(http.HTTPChannel):
    """Twisted's HTTP/1.1 channel; a request head must arrive in ``HTTP_HEAD_TIMEOUT_SECONDS``."""

    _head_timer: Any = None  # an IDelayedCall from self.callLater (the factory's reactor)
    _head_late = False  # answered 408: closing, whatever still arrives is dropped
    _owner: Any = None  # the protocol the transport delivers to while it is ours

    def connectionMade(self) -> None:
        """Twisted's, then the first head's deadline starts."""
        super().connectionMade()
        self._owner = _protocol_of(self.transport)
        self._arm_head_timer()

    def dataReceived(self, data: bytes) -> None:
        """Twisted's, unless the head was late and the 408 is on its way."""
        if not self._head_late:
            super().dataReceived(data)

    def allHeadersReceived(self) -> None:
        """The head is whole: its deadline is over, then Twisted's."""
        self._cancel_head_timer()
        super().allHeadersReceived()

    def requestDone(self, request: Any) -> None:
        """The response is sent: the next head on a kept-alive connection gets a fresh deadline.

        Armed before Twisted's, which replays pipelined bytes: a whole head
        among them cancels the deadline again at once.
        """
        if self.persistent:
            self._arm_head_timer()
        super().requestDone(request)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        """Twisted's, without the deadline."""
        self._cancel_head_timer()
        super().connectionLost(reason)

    def _arm_head_timer(self) -> None:
        self._cancel_head_timer()
        deadline = presence_settings().HTTP_HEAD_TIMEOUT_SECONDS
        self._head_timer = self.callLater(deadline, self._head_timed_out)

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            if self._head_timer.active():
                self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        transport = self.transport
        if transport is None or transport.disconnecting or self._handlingRequest:
            return
        # daphne hands an upgraded connection to its WebSocket protocol by
        # repointing the transport: such a socket is no longer this channel's.
        # Over TLS, an HTTP/2 negotiation swaps this channel out of its wrapper.
        owner = _protocol_of(transport)
        if owner is not self._owner or getattr(owner, "_channel", self) is not self:
            return
        self._head_late = True
        # Twisted's interfaces declare methods without ``self`` (zope.interface),
        # so mypy reads ``data`` as the instance and finds one argument too many.
        transport.write(REQUEST_TIMEOUT)  # type: ignore[call-arg, misc]
        # As Twisted's own idle timeout does: a client that reads nothing keeps
        # the 408 in our buffer and the socket open, so abort after a while.
        if self.abortTimeout is not None:
            self._abortingCall = self.callLater(self.abortTimeout, self.forceAbortClient)
        self.loseConnection()


def _protocol_of(transport: Any) -> Any:
    """The protocol ``transport`` delivers bytes to (behind TLS: the wrapped one)."""
    if isinstance(transport, ProtocolWrapper):
        return transport.wrappedProtocol
    return getattr(transport, "protocol", None)


def _build_guarded_channel(factory: Any) -> Any:
    """What Twisted's ``HTTPFactory.protocol`` builds, with :class:`GuardedHTTPChannel` inside."""
    # Twisted's own builder, _genericHTTPChannelProtocolFactory, with our
    # channel: the wrapper switches to HTTP/2 when TLS negotiates it (then the
    # channel, and its deadline, are discarded: Twisted's H2Connection serves).
    return http._GenericHTTPChannelProtocol(GuardedHTTPChannel())


def install() -> None:
    """Make daphne's HTTP factory build :class:`GuardedHTTPChannel` for every connection."""
    HTTPFactory.protocol = _build_guarded_channel
