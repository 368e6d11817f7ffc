"""Bytes and text frames <-> ``graphwiz.core.Message``.

Binary frames carry protobuf, text frames the canonical proto3 JSON mapping.
A message is encoded once per fan-out (:class:`EncodedMessage`); the
per-recipient ``seq`` is appended to the encoded bytes instead of encoding
again (protobuf keeps the last value of a repeated scalar field).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from enum import Enum

from google.protobuf import json_format
from google.protobuf.message import DecodeError

from presence.protocol import core_pb2 as pb
from presence.protocol.codes import ErrorCode
from presence.protocol.errors import BadFrame, ProtocolError
from presence.protocol.jsonshape import FALLBACK, explain_json_frame, quoted

PROTO_SUBPROTOCOL = "graphwiz.proto.v1"
JSON_SUBPROTOCOL = "graphwiz.json.v1"
OUR_SUBPROTOCOLS = "graphwiz."  # the prefix of this protocol's subprotocol names
UNDECODABLE_PROTOBUF = (
    "undecodable protobuf frame: a binary frame holds one graphwiz.core.Message "
    "(PROTOCOL.md section 3) and its strings are UTF-8 (entitySpawn components are "
    "strings, entityUpdate components bytes)"
)
_SEQ_TAG = bytes([(4 << 3) | 0])  # field 4 (seq), wire type varint


class Encoding(Enum):
    """How the server writes frames to one connection."""

    PROTO = "proto"
    JSON = "json"


class UnsupportedSubprotocol(ProtocolError):
    """The client offered only ``graphwiz.*`` subprotocols this server does not speak.

    RFC 6455 lets a server ignore unknown subprotocols, but a browser that
    offered some fails a handshake whose answer selects none, and never sees
    why. So the refusal selects the client's own ``offered`` (a server may
    select any offered one), answers in the encoding its name suggests, and
    says which subprotocols exist.
    """

    def __init__(self, offered: str) -> None:
        super().__init__(
            ErrorCode.BAD_MESSAGE,
            f"unsupported subprotocol {quoted(offered)}: this server speaks "
            f"{PROTO_SUBPROTOCOL} (binary protobuf) and {JSON_SUBPROTOCOL} (proto3 JSON)",
        )
        self.offered = offered
        self.encoding = Encoding.JSON if "json" in offered.lower() else Encoding.PROTO


def negotiate_encoding(
    subprotocols: Sequence[str], format_param: str | None
) -> tuple[Encoding, str | None]:
    """Pick the connection's encoding: subprotocol, else ``format``, else proto.

    Returns the encoding and the subprotocol to echo (``None`` for none).
    Subprotocols of other protocols are ignored (RFC 6455 section 4.2.2);
    offering only unknown ``graphwiz.*`` ones raises :class:`UnsupportedSubprotocol`.
    """
    for offered in subprotocols:
        if offered == PROTO_SUBPROTOCOL:
            return Encoding.PROTO, offered
        if offered == JSON_SUBPROTOCOL:
            return Encoding.JSON, offered
    for offered in subprotocols:
        if offered.startswith(OUR_SUBPROTOCOLS):
            raise UnsupportedSubprotocol(offered)
    wanted = (format_param or "").strip().lower()
    if not wanted:
        return Encoding.PROTO, None
    try:
        return Encoding(wanted), None
    except ValueError:
        raise ProtocolError(
            ErrorCode.BAD_MESSAGE,
            f"format must be proto or json, got {quoted(format_param or '')}",
        ) from None


def decode_frame(data: bytes | str) -> pb.Message:
    """Decode one frame (binary protobuf or proto3 JSON text) into a ``Message``."""
    message = pb.Message()
    if isinstance(data, bytes):
        try:
            message.ParseFromString(data)
        except DecodeError:
            raise BadFrame(ErrorCode.BAD_MESSAGE, UNDECODABLE_PROTOBUF) from None
        message.DiscardUnknownFields()
        return message
    try:
        json_format.Parse(data, message)
    except (json_format.ParseError, ValueError, RecursionError):
        pass
    else:
        return message
    # Only now, off the hot path: say which field is wrong and what it must be.
    try:
        explanation = explain_json_frame(data)
    except Exception:  # an input the explainer did not foresee: still the client's fault
        explanation = FALLBACK
    raise BadFrame(ErrorCode.BAD_MESSAGE, explanation)


def to_json(message: pb.Message) -> str:
    """Encode ``message`` as compact proto3 JSON."""
    as_dict = json_format.MessageToDict(message)
    return json.dumps(as_dict, separators=(",", ":"), ensure_ascii=False)


def encode(message: pb.Message, encoding: Encoding) -> bytes | str:
    """Encode one message for a connection (used for direct replies)."""
    if encoding is Encoding.PROTO:
        return message.SerializeToString()
    return to_json(message)


def varint(value: int) -> bytes:
    """Protobuf base-128 varint of a non-negative integer."""
    if value < 0:
        raise ValueError("varint of a negative number")
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


_MESSAGE_ID_TAG = 0x0A  # Message.message_id: field 1, length-delimited
_TIMESTAMP_TAG = 0x10  # Message.timestamp: field 2, varint
_TYPE_TAG = 0x18  # Message.type: field 3, varint


def _read_varint(data: bytes, at: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[at]
        at += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, at
        shift += 7
        if shift > 63:
            raise ValueError("varint longer than 64 bits")


def leading_message_id(proto: bytes) -> str:
    """The ``message_id`` (field 1) of an encoded server message; "" if it has none.

    Protobuf writes it first; a server message always has one (room messages)
    or none (direct replies).
    """
    if not proto or proto[0] != _MESSAGE_ID_TAG:
        return ""
    try:
        length, at = _read_varint(proto, 1)
        return proto[at : at + length].decode("utf-8")
    except (IndexError, ValueError):
        return ""


def envelope_head(proto: bytes) -> tuple[int, int]:
    """``(timestamp, type)`` of an encoded server ``Message``; 0 for what is unset.

    Protobuf writes known fields in field-number order, so ``message_id`` (1),
    ``timestamp`` (2) and ``type`` (3) lead every message the server stamps;
    the walk reads at most those three fields (O(1) whatever the payload) and
    stops at the first other one. Malformed input yields what was read so far.
    """
    timestamp = message_type = 0
    at, end = 0, len(proto)
    try:
        while at < end:
            tag = proto[at]
            if tag == _TIMESTAMP_TAG:
                timestamp, at = _read_varint(proto, at + 1)
            elif tag == _TYPE_TAG:
                message_type, _ = _read_varint(proto, at + 1)
                break  # nothing the caller needs comes later
            elif tag == _MESSAGE_ID_TAG and at == 0:
                length, at = _read_varint(proto, at + 1)
                at += length
            else:
                break
    except (IndexError, ValueError):
        pass
    return timestamp, message_type


class EncodedMessage:
    """One server message encoded once, framed per recipient.

    ``proto`` is encoded eagerly; JSON only when a JSON recipient asks for it.
    """

    __slots__ = ("_head", "_json", "legacy", "proto")

    def __init__(self, proto: bytes, json_text: str | None = None) -> None:
        self.proto = proto
        self._json = json_text
        self._head: tuple[int, int] | None = None
        # Its legacy frames, made on first use by a legacy recipient
        # (presence.transport.legacy); protobuf recipients never touch it.
        self.legacy: list[bytes | str] | None = None

    @property
    def head(self) -> tuple[int, int]:
        """``(timestamp, type)`` of the message, read from its first bytes once."""
        if self._head is None:
            self._head = envelope_head(self.proto)
        return self._head

    @classmethod
    def of(cls, message: pb.Message) -> EncodedMessage:
        """Encode ``message`` (whose ``seq`` must be unset)."""
        return cls(message.SerializeToString())

    @property
    def json(self) -> str:
        """The proto3 JSON text, encoded on first use."""
        if self._json is None:
            self._json = to_json(pb.Message.FromString(self.proto))
        return self._json

    def frame(self, encoding: Encoding, seq: int = 0) -> bytes | str:
        """The frame for one recipient, with ``seq`` set when non-zero."""
        if encoding is Encoding.PROTO:
            return self.proto + _SEQ_TAG + varint(seq) if seq else self.proto
        text = self.json
        if not seq:
            return text
        if text == "{}":
            return f'{{"seq":"{seq}"}}'
        return f'{{"seq":"{seq}",{text[1:]}'
