"""An ``Outbound`` without a consumer or a socket, for tests of the send path."""

from __future__ import annotations

from presence import metrics
from presence.conf import presence_settings
from presence.protocol.codec import Encoding
from presence.protocol.outbox import Outbox
from presence.protocol.session import Session
from presence.transport.outbound import Outbound


class BareOutbound(Outbound):
    """The state a consumer gives its outbound half; subclasses record what is sent."""

    def __init__(self, client_id: str, session: Session | None = None) -> None:
        self.conf = presence_settings()
        self.encoding = Encoding.PROTO
        self.client_id = client_id
        self.session = session
        self.hub = None
        self.outbox = Outbox(max_reliable=100, merge=self._merge_volatile)
        self._writer = None
        self._close_code = None
        self.messages_out = self.bytes_out = 0
        self._meter = metrics.ConnectionMeter()
        self._peer_gone = False
        self.clock_ms = lambda: 0
        self.legacy = None

    async def _leave_room(self, close_code: int) -> None:
        pass
