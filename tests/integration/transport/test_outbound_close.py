"""A server close follows every frame queued before it was asked for.

The writer sends a drained round of frames, awaiting each send; frames
queued meanwhile, and then the close, used to be cut off: the close went out
after the round, and an offender closed with 4007 saw 3 of its 10 Errors.
"""

from __future__ import annotations

import asyncio
from typing import Any

from presence.protocol import core_pb2 as pb
from presence.protocol.codes import CloseCode
from tests.clients.outbound import BareOutbound


class HeldSocket(BareOutbound):
    """An Outbound whose first send waits until released; it records what it sends."""

    def __init__(self) -> None:
        super().__init__("c-held")
        self.sent: list[dict[str, Any]] = []
        self.first_send = asyncio.Event()
        self.release = asyncio.Event()

    async def _send_event(self, event: dict[str, Any]) -> None:
        if not self.sent:
            self.first_send.set()
            await self.release.wait()
        self.sent.append(event)


def error(n: int) -> pb.Message:
    return pb.Message(type=pb.ERROR, error=pb.Error(message=f"error {n}"))


async def test_frames_queued_while_the_writer_sends_go_out_before_the_close() -> None:
    socket = HeldSocket()
    socket._queue(error(1))
    await socket.first_send.wait()  # the writer is inside its first send
    for n in range(2, 11):
        socket._queue(error(n))
    socket._close(CloseCode.INVALID_MESSAGES)
    socket.release.set()
    assert socket._writer is not None
    await socket._writer

    texts = [pb.Message.FromString(e["bytes"]).error.message for e in socket.sent[:-1]]
    assert texts == [f"error {n}" for n in range(1, 11)]
    assert socket.sent[-1] == {"type": "websocket.close", "code": 4007}
