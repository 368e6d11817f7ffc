"""One connection's protocol state: frame checks, the bad-frame streak, seq.

Pure: it decides, the consumer does the I/O.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from presence.protocol import core_pb2 as pb
from presence.protocol.codec import decode_frame
from presence.protocol.codes import CloseCode, ErrorCode
from presence.protocol.errors import BadFrame
from presence.protocol.validation import FieldLimits, validate_client_message

BAD_FRAME_STREAK_LIMIT = 10  # consecutive bad frames before close 4007


@dataclass(slots=True)
class Accepted:
    """A valid client message and its payload name."""

    kind: str
    message: pb.Message


@dataclass(slots=True)
class Rejected:
    """A refused frame: answer with ``error``; close with ``close_code`` if set."""

    code: ErrorCode
    text: str
    ref_message_id: str = ""
    close_code: CloseCode | None = None


class Session:
    """Frame intake and outbound numbering for one connection."""

    def __init__(
        self,
        client_id: str,
        *,
        limits: FieldLimits | None = None,
        bad_frame_limit: int = BAD_FRAME_STREAK_LIMIT,
    ) -> None:
        self.client_id = client_id
        self.limits = limits or FieldLimits()
        self.bad_frame_limit = bad_frame_limit
        self.bad_streak = 0
        self.last_seq = 0
        self.capabilities: frozenset[str] = frozenset()
        self.messages_in = 0
        self.bytes_in = 0
        # Frame -> Message; a legacy connection swaps in presence.protocol.legacy.decode.
        self.decode: Callable[[bytes | str], pb.Message] = decode_frame

    def receive(self, data: bytes | str) -> Accepted | Rejected:
        """Decode and validate one inbound frame."""
        size = len(data) if isinstance(data, bytes) else len(data.encode("utf-8"))
        self.messages_in += 1
        self.bytes_in += size
        message: pb.Message | None = None
        try:
            if size > self.limits.frame_bytes:
                raise BadFrame(ErrorCode.TOO_LARGE, f"frame larger than {self.limits.frame_bytes}")
            message = self.decode(data)
            kind = validate_client_message(message, self.limits)
        except BadFrame as bad:
            self.bad_streak += 1
            close = CloseCode.INVALID_MESSAGES if self.bad_streak >= self.bad_frame_limit else None
            ref = message.message_id if message is not None else ""
            return Rejected(bad.code, bad.message, ref[: self.limits.identifier], close)
        self.bad_streak = 0
        if kind == "client_hello" and message.client_hello.capabilities:
            self.capabilities = frozenset(message.client_hello.capabilities)
        return Accepted(kind, message)

    def next_seq(self) -> int:
        """The ``seq`` of the next reliable message to this connection."""
        self.last_seq += 1
        return self.last_seq
