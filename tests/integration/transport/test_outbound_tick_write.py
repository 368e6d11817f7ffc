"""A tick's Batch frame is written from the tick only when nothing can be overtaken.

Under uvicorn the guarded protocol offers a synchronous write
(``presence.transport.uvicorn_ws.SEND_NOW_EXTENSION``); the tick uses it
instead of starting a writer task per member. Anything queued or being
written, a client without the ``batch`` capability, or a socket that would
make the send wait: the frame goes through the writer as before, in order.
"""

from __future__ import annotations

import asyncio
from typing import Any

from presence.protocol import core_pb2 as pb
from presence.protocol.batch import Entry, TickBatch
from presence.protocol.codec import EncodedMessage
from presence.protocol.session import Session
from presence.transport.outbound import BATCH_CAPABILITY
from tests.clients.outbound import BareOutbound


class Socket(BareOutbound):
    """An Outbound over a recording socket: what the tick wrote, what the writer sent."""

    def __init__(self, *, capabilities: frozenset[str] = frozenset({BATCH_CAPABILITY})) -> None:
        session = Session("c-me")
        session.capabilities = capabilities
        super().__init__("c-me", session)
        self.writable = True
        self.wire: list[tuple[str, bytes]] = []  # ("now" | "writer", frame), in order
        self.hold_writer: asyncio.Event | None = None
        self._send_now = self._write_at_once

    def _write_at_once(self, frame: bytes | str) -> bool:
        if not self.writable:
            return False
        assert isinstance(frame, bytes)
        self.wire.append(("now", frame))
        return True

    async def _send_event(self, event: dict[str, Any]) -> None:
        if self.hold_writer is not None:
            await self.hold_writer.wait()
        self.wire.append(("writer", event["bytes"]))


def pose_batch(n: int) -> TickBatch:
    message = pb.Message(
        message_id=f"p{n}",
        position_update=pb.PositionUpdate(entity_id="other", position=pb.Vector3(x=n)),
    )
    return TickBatch([Entry("c-other", "other", EncodedMessage.of(message))], newest_only=False)


def error(n: int) -> pb.Message:
    return pb.Message(type=pb.ERROR, error=pb.Error(message=f"error {n}"))


def kinds(socket: Socket) -> list[str]:
    """Each frame on the wire as who wrote it and what it is (a pose's x or an error)."""
    out = []
    for who, frame in socket.wire:
        message = pb.Message.FromString(frame)
        if message.type == pb.BATCH:
            poses = message.batch.messages
            out.append(
                f"{who}:" + ",".join(f"pose {int(p.position_update.position.x)}" for p in poses)
            )
        else:
            out.append(f"{who}:{message.error.message}")
    return out


async def test_an_idle_member_gets_the_ticks_frame_written_at_once_and_counted() -> None:
    socket = Socket()

    socket.deliver_volatile(pose_batch(1))

    assert kinds(socket) == ["now:pose 1"]
    assert socket._writer is None  # no task for it
    assert socket.messages_out == 1
    assert socket.bytes_out == len(socket.wire[0][1])


async def test_a_tick_with_nothing_for_the_member_writes_nothing() -> None:
    socket = Socket()
    own = pb.Message(position_update=pb.PositionUpdate(entity_id="me"))
    batch = TickBatch([Entry("c-me", "me", EncodedMessage.of(own))], newest_only=False)

    socket.deliver_volatile(batch)

    assert socket.wire == [] and socket._writer is None and socket.messages_out == 0


async def test_poses_follow_a_reliable_frame_still_queued() -> None:
    socket = Socket()
    socket._queue(error(1))  # the writer is started, has not run yet

    socket.deliver_volatile(pose_batch(1))
    assert socket._writer is not None
    await socket._writer

    assert kinds(socket) == ["writer:error 1", "writer:pose 1"]


async def test_poses_wait_for_a_writer_that_is_still_sending() -> None:
    socket = Socket()
    socket.hold_writer = asyncio.Event()
    socket._queue(error(1))
    await asyncio.sleep(0)  # the writer drained the outbox and waits in its send
    assert not socket.outbox and socket._writer is not None and not socket._writer.done()

    socket.deliver_volatile(pose_batch(1))
    socket.hold_writer.set()
    await socket._writer

    assert kinds(socket) == ["writer:error 1", "writer:pose 1"]


async def test_a_socket_that_would_make_the_send_wait_gets_the_frame_through_the_writer() -> None:
    socket = Socket()
    socket.writable = False

    socket.deliver_volatile(pose_batch(1))
    socket.deliver_volatile(pose_batch(2))  # merges with the unsent one: newest wins
    assert socket._writer is not None
    await socket._writer

    assert kinds(socket) == ["writer:pose 2"]


async def test_a_client_without_batch_frames_is_sent_one_frame_per_pose_by_the_writer() -> None:
    socket = Socket(capabilities=frozenset())

    socket.deliver_volatile(pose_batch(1))
    assert socket._writer is not None
    await socket._writer

    assert len(socket.wire) == 1 and socket.wire[0][0] == "writer"
    assert pb.Message.FromString(socket.wire[0][1]).HasField("position_update")
