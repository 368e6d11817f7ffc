"""The legacy GraphWiz-XR wire at the edge of a connection (issue 14).

The hub and the room never see the legacy wire: a legacy connection decodes
its frames into ``graphwiz.core`` messages (:mod:`presence.protocol.legacy`)
and renders what the hub queued for it — encoded protobuf, once per room —
into legacy frames here, one frame per update (a legacy client reads no
``Batch``). The rendering of a message is made once per process and kept on
its :class:`EncodedMessage`, however many legacy members a room has.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from functools import partial
from typing import Any, Protocol
from urllib.parse import parse_qsl

from presence import metrics
from presence.protocol import core_pb2 as pb
from presence.protocol import legacy
from presence.protocol.batch import TickBatch
from presence.protocol.codec import EncodedMessage
from presence.protocol.codes import CloseCode, ErrorCode
from presence.protocol.legacy import LegacyLimits, Wire, WireRefused
from presence.transport.handshake import MAX_QUERY_FIELDS, Refusal

__all__ = ["LegacyWire", "Wire", "is_legacy_frame", "wire_of"]

is_legacy_frame = legacy.is_legacy_frame

HELLO_FIRST = (
    "this socket came without credentials: send a CLIENT_HELLO (type 1) whose authToken "
    "is an access token first"
)


class _Sender(Protocol):
    client_id: str

    async def _send_frame(self, frame: bytes | str, kind: int) -> None: ...


def wire_of(scope: Mapping[str, Any]) -> tuple[Wire, Refusal | None]:
    """What the handshake asks for, and a 4400 refusal for a bad ``protocol`` parameter.

    Never raises: the refusal is answered after the handshake's own checks
    (which count the attempt).
    """
    raw = scope.get("query_string", b"").decode("latin-1")
    try:
        query = dict(parse_qsl(raw, keep_blank_values=True, max_num_fields=MAX_QUERY_FIELDS))
    except ValueError:
        return Wire.PROTOCOL, None  # the handshake refuses it with its own text
    try:
        return legacy.choose_wire(scope.get("subprotocols") or [], query), None
    except WireRefused as bad:
        return Wire.PROTOCOL, Refusal(ErrorCode.BAD_MESSAGE, CloseCode.BAD_REQUEST, str(bad))


class LegacyWire:
    """One connection's legacy wire: its decoder and the writer of its frames."""

    __slots__ = ("limits",)

    def __init__(self, limits: LegacyLimits | None = None) -> None:
        self.limits = limits or LegacyLimits()

    def decoder(self, client_id: str) -> Callable[[bytes | str], pb.Message]:
        """The frame decoder of the connection whose server id is ``client_id``."""
        return partial(legacy.decode, sender_id=client_id, limits=self.limits)

    @staticmethod
    def frames(encoded: EncodedMessage) -> list[bytes | str]:
        """The legacy frames of one server message, rendered once per message."""
        frames = encoded.legacy
        if frames is None:
            frames = encoded.legacy = legacy.frames_of(pb.Message.FromString(encoded.proto))
        return frames

    @staticmethod
    def direct(message: pb.Message) -> list[bytes | str]:
        """The frames of a reply that is not queued (a refusal's ``Error``)."""
        return legacy.frames_of(message)

    async def send(self, conn: _Sender, item: EncodedMessage | TickBatch, *, track: bool) -> None:
        """Write one outbox item: a message, or one tick's poses as one frame each."""
        if isinstance(item, TickBatch):
            for index, encoded in enumerate(item.for_recipient(conn.client_id)):
                if index:
                    await asyncio.sleep(0)  # as between the items of a backlog
                await self._send_one(conn, encoded, track)
            return
        await self._send_one(conn, item, track)

    async def _send_one(self, conn: _Sender, encoded: EncodedMessage, track: bool) -> None:
        kind = metrics.sent_type(encoded, track=track)
        for frame in self.frames(encoded):
            await conn._send_frame(frame, kind)
