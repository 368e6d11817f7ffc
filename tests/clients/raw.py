"""A raw-socket WebSocket client for attacks below the application.

A library client refuses to send what an attacker sends (endless empty
continuation frames, pings by the thousand, a header line of 100 KiB) and
answers the server's pings for you. This one writes whatever frames it is
given (masked, as a client must), never answers a ping, and reports the close
code the server sent. Frame encoding and parsing are ``bench.wsframes``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from dataclasses import dataclass, field

from bench.wsframes import (
    FrameParser,
    Opcode,
    encode_frame,
    handshake_end,
    handshake_request,
    parse_close,
)

DEADLINE = 5.0
READ_BYTES = 1 << 16


def frame(opcode: int, payload: bytes = b"", *, fin: bool = True) -> bytes:
    """One masked client frame."""
    return encode_frame(opcode, payload, mask_key=os.urandom(4), fin=fin)


async def http_answer(host: str, port: int, request: bytes, *, timeout: float) -> bytes | None:
    """Send ``request`` as is: the response head, ``b""`` if closed, ``None`` if silent."""
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(request)
        await writer.drain()
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout)
        except asyncio.IncompleteReadError as partial:
            return partial.partial
        except TimeoutError:
            return None
        return head
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


@dataclass
class RawClient:
    """One raw WebSocket connection past its opening handshake."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    parser: FrameParser = field(default_factory=lambda: FrameParser(max_size=1 << 20))
    close_code: int | None = None
    close_reason: str = ""
    closed_after: float | None = None  # seconds from the first write to the close
    pings_seen: int = 0
    _started: float = 0.0
    _reading: asyncio.Task[None] | None = None

    @classmethod
    async def connect(cls, host: str, port: int, path: str) -> RawClient:
        """Open ``path`` and complete the opening handshake (101 required)."""
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(handshake_request(host, port, path))
        await writer.drain()
        buffer = b""
        while (end := handshake_end(buffer)) < 0:
            chunk = await asyncio.wait_for(reader.read(READ_BYTES), DEADLINE)
            if not chunk:
                raise ConnectionError("closed during the handshake")
            buffer += chunk
        status = buffer[:end].split(b"\r\n", 1)[0]
        if b" 101 " not in status:
            raise ConnectionError(f"handshake answered {status!r}")
        client = cls(reader, writer)
        client._started = time.monotonic()
        if buffer[end:]:
            client._feed(buffer[end:])
        client._reading = asyncio.create_task(client._read())
        return client

    def _feed(self, data: bytes) -> None:
        for opcode, payload in self.parser.feed(data):
            if opcode == Opcode.PING:
                self.pings_seen += 1
            elif opcode == Opcode.CLOSE and self.close_code is None:
                self.close_code, self.close_reason = parse_close(payload)
                self.closed_after = time.monotonic() - self._started

    async def _read(self) -> None:
        with contextlib.suppress(OSError):
            while data := await self.reader.read(READ_BYTES):
                self._feed(data)

    @property
    def gone(self) -> bool:
        """The server closed the connection (TCP end of stream)."""
        return self._reading is not None and self._reading.done()

    async def flood(self, batch: bytes, *, seconds: float) -> None:
        """Write ``batch`` again and again for ``seconds``, or until the server closes."""
        self._started = time.monotonic()
        deadline = self._started + seconds
        with contextlib.suppress(OSError):
            while time.monotonic() < deadline and self.close_code is None and not self.gone:
                self.writer.write(batch)
                await self.writer.drain()
                # drain() returns without yielding while the kernel takes it all:
                # let the reader see the server's close frame before a reset can
                # destroy it.
                await asyncio.sleep(0)

    async def wait_closed(self, timeout: float = DEADLINE) -> int | None:
        """Wait for the server's close frame or end of stream; the close code, if one came."""
        assert self._reading is not None
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(self._reading), timeout)
        return self.close_code

    async def aclose(self) -> None:
        """Drop the connection."""
        if self._reading is not None:
            self._reading.cancel()
        self.writer.close()
        with contextlib.suppress(OSError):
            await self.writer.wait_closed()
