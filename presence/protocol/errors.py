"""Tiny exception classes used as signals by the protocol core."""

from __future__ import annotations

from presence.protocol.codes import ErrorCode


class ProtocolError(Exception):
    """A client message is refused with an ``Error`` frame (and dropped)."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class BadFrame(ProtocolError):
    """The frame is undecodable or invalid: counts towards the 4007 streak."""
