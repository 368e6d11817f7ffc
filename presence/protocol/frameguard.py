"""Frames below the application: control-frame floods and endless fragmented messages.

The WebSocket servers answer every ``Ping`` and keep collecting fragments of
a message for as long as they come; neither ever reaches the consumer, so
its message rate limit cannot see them. A flood of pings (each answered
with a pong) or of empty continuation frames then costs a whole core and
memory without bound while the offender is never closed. This guard is fed
every frame header by the server's protocol (``presence.transport.uvicorn_ws``,
``presence.transport.daphne_ws``) and says when to close.

Pure: frame headers and a clock in, a verdict out.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum

from presence.protocol.codes import CloseCode


class Opcode(IntEnum):
    """RFC 6455 section 5.2 opcodes."""

    CONT = 0x0
    TEXT = 0x1
    BINARY = 0x2
    CLOSE = 0x8
    PING = 0x9
    PONG = 0xA


@dataclass(frozen=True, slots=True)
class FrameLimits:
    """How many frames a connection may send that the application never sees.

    ``control_frames`` pings and pongs in any ``control_window`` seconds: a
    client's keep-alive pings every few seconds and its answers to the
    server's pings (every 20 s) stay far below 30 per 10 s, while each frame
    over it would cost a parse and a written pong. ``fragments`` per message:
    a browser sends a message in one frame; 128 fragments carry a 64 KiB
    message in 512-byte pieces, and cost 128 list entries until it ends.
    """

    control_frames: int = 30
    control_window: float = 10.0
    fragments: int = 128


@dataclass(frozen=True, slots=True)
class Verdict:
    """Close the connection with ``code``; ``reason`` goes in the close frame."""

    code: int
    reason: str


class FrameGuard:
    """One connection's frame counts; :meth:`frame` for each frame header received."""

    __slots__ = ("_clock", "_control", "_fragments", "_limits")

    def __init__(self, limits: FrameLimits, *, clock: Callable[[], float]) -> None:
        self._limits = limits
        self._clock = clock
        # Made at the first ping or pong: most connections never send one.
        self._control: deque[float] | None = None
        self._fragments = 0  # frames of the message in progress; 0 = none

    def frame(self, opcode: int, fin: bool) -> Verdict | None:
        """A frame header arrived; a :class:`Verdict` when the connection must close."""
        if opcode in (Opcode.PING, Opcode.PONG):
            return self._control_frame()
        if opcode in (Opcode.TEXT, Opcode.BINARY):
            self._fragments = 0 if fin else 1
        elif opcode == Opcode.CONT:
            self._fragments += 1
            if self._fragments > self._limits.fragments:
                return Verdict(
                    CloseCode.MESSAGE_TOO_BIG,
                    f"message in more than {self._limits.fragments} fragments",
                )
            if fin:
                self._fragments = 0
        return None

    def _control_frame(self) -> Verdict | None:
        now = self._clock()
        window = self._control
        if window is None:
            window = self._control = deque(maxlen=self._limits.control_frames)
        if len(window) == window.maxlen and now - window[0] < self._limits.control_window:
            return Verdict(
                CloseCode.RATE_LIMITED,
                f"more than {self._limits.control_frames} pings and pongs in "
                f"{self._limits.control_window:g} s",
            )
        window.append(now)
        return None
