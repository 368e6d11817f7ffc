"""One benchmark WebSocket connection as an asyncio ``Protocol``.

The handshake, masked sends and frame parsing come from :mod:`bench.wsframes`;
what a received frame means is the owner's business (``gen.on_frames``), so
one :class:`Client` costs one parser and a few attributes — no library
per message, no task per connection.
"""

from __future__ import annotations

import asyncio
import random
from typing import TYPE_CHECKING

from bench.pose import LegacyPoseEncoder, PoseEncoder
from bench.wsframes import (
    CloseCode,
    FrameParser,
    HandshakeError,
    Opcode,
    ProtocolViolation,
    check_handshake_response,
    close_payload,
    encode_frame,
    handshake_end,
    parse_close,
)
from presence.protocol import pb

if TYPE_CHECKING:
    from bench.loadgen import Generator


class Client(asyncio.Protocol):
    """One WebSocket connection: handshake, masked sends, counted receives."""

    def __init__(
        self,
        gen: Generator,
        number: int,
        request: bytes,
        *,
        hello: bytes | None,
        wait_hello: bool,
        legacy: bool = False,
    ) -> None:
        self.gen = gen
        self.number = number
        self.request = request
        self.hello = hello
        self.wait_hello = wait_hello
        self.ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.transport: asyncio.Transport | None = None
        self.handshaken = False
        self.head = b""
        self.parser = FrameParser()
        self.encoder: PoseEncoder | LegacyPoseEncoder = (
            LegacyPoseEncoder(number) if legacy else PoseEncoder(number)
        )
        self.close_sent = False
        self.close_code: int | None = None
        self.lost = False
        self.next_send = 0.0

    # --- asyncio.Protocol -------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """TCP is up: send the upgrade request."""
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        """Bytes arrived: finish the handshake, then parse and count frames."""
        if not self.handshaken:
            self.head += data
            try:
                end = handshake_end(self.head)
                if end < 0:
                    return
                check_handshake_response(self.head[:end])
            except HandshakeError as exc:
                self.fail(exc)
                return
            data, self.head, self.handshaken = self.head[end:], b"", True
            if self.hello is not None:
                self.send_frame(Opcode.BINARY, self.hello)
            if not self.wait_hello and not self.ready.done():
                self.ready.set_result(None)
            if not data:
                return
        try:
            frames = self.parser.feed(data)
        except ProtocolViolation as exc:
            self.close(exc.code)
            self.fail(exc)  # the stream cannot be parsed any further
            return
        gen = self.gen
        gen.reads += 1
        if frames:
            gen.on_frames(self, frames)

    def connection_lost(self, exc: Exception | None) -> None:
        """The TCP connection is gone."""
        self.lost = True
        if not self.ready.done():
            self.ready.set_exception(ConnectionError(f"closed before ready ({self.close_code})"))
        self.gen.on_lost(self)

    # --- actions ----------------------------------------------------------------

    def send_frame(self, opcode: int, payload: bytes) -> None:
        """Write one masked frame (a fresh masking key per frame, RFC 6455 5.3)."""
        if self.transport is not None and not self.lost:
            key = random.getrandbits(32).to_bytes(4, "little")
            self.transport.write(encode_frame(opcode, payload, mask_key=key))

    def on_close_frame(self, payload: bytes) -> None:
        """The server closed: echo the close frame, then drop TCP."""
        try:
            self.close_code, _ = parse_close(payload)
        except ProtocolViolation:
            self.close_code = CloseCode.PROTOCOL_ERROR
        if not self.close_sent:
            self.close_sent = True
            self.send_frame(Opcode.CLOSE, payload[:2])
        if self.transport is not None:
            self.transport.close()

    def close(self, code: int = CloseCode.NORMAL) -> None:
        """Start the closing handshake (the server drops TCP when it answers)."""
        if not self.close_sent and self.transport is not None and not self.lost:
            self.close_sent = True
            self.send_frame(Opcode.CLOSE, close_payload(code))

    def abort(self) -> None:
        """Drop the connection now."""
        if self.transport is not None:
            self.transport.abort()

    def fail(self, exc: Exception) -> None:
        """Give up on this connection: fail a pending connect, drop TCP."""
        if not self.ready.done():
            self.ready.set_exception(exc)
        self.abort()


def check_hello(client: Client, payload: bytes) -> None:
    """The service's first frame: ``ServerHello`` makes the client ready, ``Error`` fails it."""
    if payload.startswith(b'{"type":"SERVER_HELLO"'):  # the legacy wire's text hello
        client.ready.set_result(None)
        return
    try:
        message = pb.Message.FromString(payload)
    except Exception:
        client.ready.set_exception(HandshakeError("first frame is not a protobuf Message"))
        return
    kind = message.WhichOneof("payload")
    if kind == "server_hello":
        client.ready.set_result(None)
    elif kind == "error":
        error = message.error
        client.ready.set_exception(HandshakeError(f"refused: {error.code} {error.message}"))
    # anything else before the hello is ignored; the hello is still awaited
