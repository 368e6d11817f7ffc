"""A minimal RFC 6455 client core, sans I/O: bytes in, frames out.

The load generator must receive 150k+ frames a second on a machine it shares
with the server, so it cannot afford a full WebSocket library per message.
This module is only what a benchmark client needs: the opening handshake,
masked client frames, and an incremental parser of the server's (unmasked)
frames that reassembles fragmented messages. No sockets, no event loop.
"""

from __future__ import annotations

import base64
import hashlib
from enum import IntEnum

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
# RFC 6455 section 1.3's sample nonce. A fixed key is fine for a benchmark on
# 127.0.0.1: the key only proves the server speaks WebSocket, it is no secret.
CLIENT_KEY = "dGhlIHNhbXBsZSBub25jZQ=="
MAX_HANDSHAKE_BYTES = 16 * 1024  # a response head larger than this is refused
MAX_MESSAGE_BYTES = 1 << 20  # largest reassembled message accepted (1 MiB)
MAX_CONTROL_BYTES = 125  # RFC 6455 section 5.5


class Opcode(IntEnum):
    """Frame opcodes (RFC 6455 section 5.2)."""

    CONT = 0x0
    TEXT = 0x1
    BINARY = 0x2
    CLOSE = 0x8
    PING = 0x9
    PONG = 0xA


class CloseCode(IntEnum):
    """The close codes this client sends."""

    NORMAL = 1000
    PROTOCOL_ERROR = 1002
    NO_STATUS = 1005  # never sent: what an empty close frame means
    MESSAGE_TOO_BIG = 1009


class HandshakeError(Exception):
    """The server did not switch protocols."""


class ProtocolViolation(Exception):
    """The server broke RFC 6455; ``code`` is the close code to answer with."""

    def __init__(self, code: CloseCode, text: str) -> None:
        super().__init__(text)
        self.code = code


# --- opening handshake -------------------------------------------------------


def accept_key(key: str = CLIENT_KEY) -> str:
    """The ``Sec-WebSocket-Accept`` value a server must answer ``key`` with."""
    return base64.b64encode(hashlib.sha1(key.encode("ascii") + GUID).digest()).decode("ascii")


def handshake_request(
    host: str, port: int, path: str, *, key: str = CLIENT_KEY, origin: str | None = None
) -> bytes:
    """The HTTP/1.1 upgrade request for ``path`` (which may carry a query)."""
    lines = [
        f"GET {path} HTTP/1.1",
        f"Host: {host}:{port}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {key}",
        "Sec-WebSocket-Version: 13",
    ]
    if origin is not None:
        lines.append(f"Origin: {origin}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("ascii")


def handshake_end(buffer: bytes) -> int:
    """Where the response head ends (index after the blank line), or -1 if incomplete."""
    end = buffer.find(b"\r\n\r\n")
    if end < 0:
        if len(buffer) > MAX_HANDSHAKE_BYTES:
            raise HandshakeError("response head too large")
        return -1
    return end + 4


def check_handshake_response(head: bytes, key: str = CLIENT_KEY) -> None:
    """Raise ``HandshakeError`` unless ``head`` is a valid 101 answer to ``key``."""
    lines = head.decode("latin-1").split("\r\n")
    status = lines[0].split(" ", 2)
    if len(status) < 2 or status[1] != "101":
        raise HandshakeError(f"server answered {lines[0]!r}")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    if headers.get("upgrade", "").lower() != "websocket":
        raise HandshakeError("no 'Upgrade: websocket' in the response")
    if headers.get("sec-websocket-accept") != accept_key(key):
        raise HandshakeError("wrong Sec-WebSocket-Accept")


# --- frames ------------------------------------------------------------------


def mask(payload: bytes, key: bytes) -> bytes:
    """XOR ``payload`` with the 4-byte masking ``key`` (also unmasks)."""
    n = len(payload)
    if n == 0:
        return b""
    repeated = (key * (n // 4 + 1))[:n]
    # One big-integer XOR is far cheaper in Python than a per-byte loop.
    masked = int.from_bytes(payload, "little") ^ int.from_bytes(repeated, "little")
    return masked.to_bytes(n, "little")


def encode_frame(
    opcode: int, payload: bytes, *, mask_key: bytes | None = None, fin: bool = True
) -> bytes:
    """One frame; a client passes a 4-byte ``mask_key`` (servers send unmasked)."""
    n = len(payload)
    mask_bit = 0x80 if mask_key is not None else 0
    header = bytearray([(0x80 if fin else 0) | opcode])
    if n < 126:
        header.append(mask_bit | n)
    elif n < 1 << 16:
        header.append(mask_bit | 126)
        header += n.to_bytes(2, "big")
    else:
        header.append(mask_bit | 127)
        header += n.to_bytes(8, "big")
    if mask_key is None:
        return bytes(header) + payload
    if len(mask_key) != 4:
        raise ValueError("mask_key must be 4 bytes")
    return bytes(header) + mask_key + mask(payload, mask_key)


def close_payload(code: int = CloseCode.NORMAL, reason: str = "") -> bytes:
    """The body of a close frame."""
    return code.to_bytes(2, "big") + reason.encode("utf-8")


def parse_close(payload: bytes) -> tuple[int, str]:
    """(code, reason) of a close frame's body; an empty body is 1005."""
    if not payload:
        return CloseCode.NO_STATUS, ""
    if len(payload) == 1:
        raise ProtocolViolation(CloseCode.PROTOCOL_ERROR, "close frame body of 1 byte")
    return int.from_bytes(payload[:2], "big"), payload[2:].decode("utf-8", "replace")


class FrameParser:
    """Server frames from a byte stream fed in arbitrary pieces.

    :meth:`feed` returns the complete messages and control frames found so far
    as ``(opcode, payload)``; a fragmented message comes out once, whole, with
    the opcode of its first frame. Masked or reserved-bit frames are refused.
    ``max_size`` bounds a reassembled message: memory stays bounded whatever
    the server sends.
    """

    __slots__ = ("_buffer", "_fragments", "_fragments_size", "_message_opcode", "max_size")

    def __init__(self, *, max_size: int = MAX_MESSAGE_BYTES) -> None:
        self.max_size = max_size
        self._buffer = b""
        self._message_opcode = -1  # opcode of the message being reassembled
        self._fragments: list[bytes] = []
        self._fragments_size = 0

    @property
    def buffered(self) -> int:
        """Bytes received that do not yet form a whole frame."""
        return len(self._buffer)

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        """Consume ``data``; return the messages and control frames it completed."""
        buf = self._buffer + data if self._buffer else data
        end = len(buf)
        pos = 0
        out: list[tuple[int, bytes]] = []
        max_size = self.max_size
        # The hot loop of the load generator: one iteration per frame.
        while end - pos >= 2:
            b0 = buf[pos]
            b1 = buf[pos + 1]
            length = b1 & 0x7F
            start = pos + 2
            if length == 126:
                if end - pos < 4:
                    break
                length = int.from_bytes(buf[start : start + 2], "big")
                start += 2
            elif length == 127:
                if end - pos < 10:
                    break
                length = int.from_bytes(buf[start : start + 8], "big")
                start += 8
            if b1 & 0x80:
                raise ProtocolViolation(
                    CloseCode.PROTOCOL_ERROR, "server frames must not be masked"
                )
            if b0 & 0x70:
                raise ProtocolViolation(CloseCode.PROTOCOL_ERROR, "reserved bits set")
            if length > max_size:
                raise ProtocolViolation(CloseCode.MESSAGE_TOO_BIG, f"frame of {length} bytes")
            stop = start + length
            if stop > end:
                break
            opcode = b0 & 0x0F
            fin = b0 & 0x80
            if fin and (opcode == 2 or opcode == 1) and self._message_opcode < 0:
                out.append((opcode, buf[start:stop]))  # the common case: one whole frame
            else:
                self._frame(opcode, bool(fin), buf[start:stop], out)
            pos = stop
        self._buffer = buf[pos:] if pos < end else b""
        return out

    def _frame(self, opcode: int, fin: bool, payload: bytes, out: list[tuple[int, bytes]]) -> None:
        if opcode >= 0x8:
            if opcode not in (Opcode.CLOSE, Opcode.PING, Opcode.PONG):
                raise ProtocolViolation(CloseCode.PROTOCOL_ERROR, f"unknown opcode {opcode:#x}")
            if not fin or len(payload) > MAX_CONTROL_BYTES:
                raise ProtocolViolation(CloseCode.PROTOCOL_ERROR, "bad control frame")
            out.append((opcode, payload))
            return
        if opcode == Opcode.CONT:
            if self._message_opcode < 0:
                raise ProtocolViolation(CloseCode.PROTOCOL_ERROR, "continuation without a start")
        elif opcode in (Opcode.TEXT, Opcode.BINARY):
            if self._message_opcode >= 0:
                raise ProtocolViolation(CloseCode.PROTOCOL_ERROR, "new message inside a fragment")
            self._message_opcode = opcode
        else:
            raise ProtocolViolation(CloseCode.PROTOCOL_ERROR, f"unknown opcode {opcode:#x}")
        self._fragments_size += len(payload)
        if self._fragments_size > self.max_size:
            raise ProtocolViolation(CloseCode.MESSAGE_TOO_BIG, "fragmented message too large")
        self._fragments.append(payload)
        if fin:
            out.append((self._message_opcode, b"".join(self._fragments)))
            self._message_opcode = -1
            self._fragments = []
            self._fragments_size = 0
