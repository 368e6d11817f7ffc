"""The outbound half of a connection: outbox, writer, frames.

The hub hands a connection reliable messages and tick batches; they wait in
the connection's bounded :class:`Outbox`; a writer task, running only while
something waits, frames them for this client (protobuf or JSON, ``Batch`` or
single frames, ``seq`` appended) and sends them. When the socket cannot take
more (uvicorn waits for writability), poses merge and reliable messages queue
up to ``MESSAGE_QUEUE_SIZE``, then the connection closes with 4009.
Under uvicorn a tick's Batch frame to an idle member (nothing queued, no
writer running, the socket writable) is written from the tick itself.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from presence import metrics
from presence.cluster.hub import Hub
from presence.conf import PresenceSettings
from presence.protocol import core_pb2 as pb
from presence.protocol.batch import TickBatch
from presence.protocol.codec import EncodedMessage, Encoding
from presence.protocol.codes import CloseCode
from presence.protocol.outbox import Outbox
from presence.protocol.session import Session
from presence.transport.legacy import LegacyWire

logger = logging.getLogger(__name__)

# What waits in a connection's outbox: a reliable message and its seq (0 for
# direct replies), or one tick's poses.
OutItem = tuple[EncodedMessage | TickBatch, int]
BATCH_CAPABILITY = "batch"
SERVER_CAPABILITIES = (BATCH_CAPABILITY, "ack")


class PeerGone(Exception):
    """The socket closed under a send: a normal race, not an error."""


class Outbound:
    """Queueing and writing frames for one connection (mixed into the consumer)."""

    base_send: Any
    conf: PresenceSettings
    encoding: Encoding
    client_id: str
    session: Session | None
    hub: Hub | None
    outbox: Outbox[OutItem] | None
    _writer: asyncio.Task[None] | None
    _close_code: CloseCode | None
    messages_out: int
    bytes_out: int
    _meter: metrics.ConnectionMeter
    _peer_gone: bool  # a send failed: the socket is gone, nothing more is written
    clock_ms: Callable[[], int]  # stamps Batch frames (the hub's clock once joined)
    legacy: LegacyWire | None  # a GraphWiz-XR hub-client: its own frames (issue 14)

    # The hub, also after the connection left it (a detached session); the
    # newest journal mark of what this connection numbered or answered.
    _hub_ref: Hub | None = None
    _journal_mark: int = 0
    # The server's synchronous write of one data frame (uvicorn_ws.SEND_NOW_EXTENSION),
    # when it offers one: ``False`` when the frame would have to wait.
    _send_now: Callable[[bytes | str], bool] | None = None

    async def _leave_room(self, close_code: int) -> None:
        raise NotImplementedError

    def _written(self, seq: int) -> None:
        """Numbered message ``seq`` was written (the session's window records it)."""

    def deliver_volatile(self, batch: TickBatch) -> None:
        """Queue one tick's poses; unsent older poses merge into it (newest wins)."""
        if self.outbox is None or self._close_code is not None:
            return
        if self._send_now is not None:
            try:
                if self._write_now(batch):
                    return
            except Exception:  # the tick delivers to every room: nothing may escape
                # As when the writer fails on a frame: logged, the poses dropped.
                logger.exception("tick write to %s failed", self.client_id)
                return
        self.outbox.push((batch, 0), reliable=False)
        self._kick()

    def _write_now(self, batch: TickBatch) -> bool:
        """Write a tick's Batch frame from the tick itself; ``False``: queue it for the writer.

        A writer task per member per tick was most of the send path's cost in
        small rooms. Only when nothing can be overtaken: the outbox is empty,
        no writer is running (it may hold drained frames while it awaits the
        journal or a send), the client takes Batch frames, and the socket
        takes the frame without waiting. Everything else goes through the
        writer as before, which keeps order, backpressure and durability.
        """
        assert self._send_now is not None and self.outbox is not None
        if self.outbox or self._peer_gone or self.legacy is not None:
            return False
        if self._writer is not None and not self._writer.done():
            return False
        if self.session is None or BATCH_CAPABILITY not in self.session.capabilities:
            return False
        frame = batch.frame(self.client_id, self.encoding, self.clock_ms())
        if frame is None:
            return True  # nothing in this tick for this client (as the writer would find)
        if not self._send_now(frame):
            return False
        if self.conf.LATENCY_TRACKING_ENABLED:
            metrics.observe_batch(batch, self.client_id)
        self._count_sent(frame, pb.BATCH)
        return True

    def send_rtt_probe(self, ping: EncodedMessage, sent_ms: int) -> bool:
        """Queue the server's RTT probe, a ``Ping`` carrying ``sent_ms`` (never numbered)."""
        if self.outbox is None or self._close_code is not None or self.legacy is not None:
            return False  # a legacy client has no answer to a Ping
        # A full queue is closed by the next reliable message, never by a probe.
        if not self.outbox.push((ping, 0), reliable=True):
            return False
        self._meter.probe(sent_ms)
        self._kick()
        return True

    def _merge_volatile(self, older: OutItem, newer: OutItem) -> OutItem:
        assert isinstance(older[0], TickBatch) and isinstance(newer[0], TickBatch)
        merged = TickBatch.merge(
            older[0],
            newer[0],
            limit=self.conf.VOLATILE_MERGE_LIMIT,
            max_bytes=self.conf.VOLATILE_MERGE_BYTES,
        )
        return merged, 0

    def _queue(self, message: pb.Message) -> None:
        """Queue a direct, unnumbered reply (hello, error, ack, pong)."""
        assert self.outbox is not None
        if not self.outbox.push((EncodedMessage.of(message), 0), reliable=True):
            metrics.count_slow_consumer("outbox")
            self._close(CloseCode.SLOW_CONSUMER)
            return
        self._kick()

    def _close(self, code: CloseCode) -> None:
        """Flush what is queued, then close with ``code``."""
        if self._close_code is None:
            self._close_code = code
        self._kick()

    def _kick(self) -> None:
        """Make sure a writer runs; it exits once the outbox is empty.

        No task waits per idle connection: it costs memory that a room full of
        idle members would pay for nothing. Once the socket is gone no writer
        starts again: what is still queued is dropped with the connection.
        """
        if self._peer_gone:
            return
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_loop())

    async def _write_loop(self) -> None:
        try:
            await self._write_until_closed()
        except asyncio.CancelledError:
            raise
        except PeerGone:
            # A client that drops its TCP connection while frames wait is a
            # normal end; the connection's one log line comes when it leaves.
            self._peer_gone = True
            if self.outbox is not None:
                self.outbox.drain()
            logger.debug("client %s went away while frames were being sent", self.client_id)
        except Exception:
            logger.exception("writer of %s failed", self.client_id)

    async def _write_until_closed(self) -> None:
        assert self.outbox is not None
        while True:
            if not self.outbox and self._close_code is None:
                return
            # Was the close asked for before this round's drain? Then the round
            # holds everything queued before it, and the close follows it.
            closing = self._close_code is not None
            if self._close_code is CloseCode.SLOW_CONSUMER:
                self.outbox.drain()  # the client resumes; sending more only deepens the backlog
            items = await self._durable_items()
            for index, (item, seq) in enumerate(items):
                if index:
                    # Let the server see a lost connection between two frames of a
                    # backlog: uvicorn writes data frames to a transport that has
                    # already lost its peer, and asyncio logs every such write.
                    await asyncio.sleep(0)
                    if self._peer_gone:
                        return
                if self.legacy is not None:
                    await self.legacy.send(self, item, track=self.conf.LATENCY_TRACKING_ENABLED)
                elif isinstance(item, TickBatch):
                    await self._send_batch(item)
                else:
                    kind = metrics.sent_type(item, track=self.conf.LATENCY_TRACKING_ENABLED)
                    await self._send_frame(item.frame(self.encoding, seq), kind)
                if seq:
                    self._written(seq)
            code = self._close_code
            if code is not None and (closing or not self.outbox):
                # What was queued while the frames above were written, before
                # the close was asked for, goes out first (one more round).
                await self._send_event({"type": "websocket.close", "code": int(code)})
                self._meter.closed(code)
                await self._leave_room(code)
                return

    async def _durable_items(self) -> list[OutItem]:
        """What is queued, once the journal holds what it numbers and answers.

        A frame the store could not record is not sent: the client resumes from
        what the store holds (the hub closes everyone with 4012 then).
        """
        assert self.outbox is not None
        mark, hub = self._journal_mark, self._hub_ref
        if mark and hub is not None and hub.journal.needed and not await hub.journal.durable(mark):
            return [
                (item, seq)
                for item, seq in self.outbox.drain()
                if isinstance(item, EncodedMessage) and item.head[1] == pb.ERROR
            ]
        return self.outbox.drain()

    async def _send_batch(self, batch: TickBatch) -> None:
        """One Batch frame to clients with the ``batch`` capability, else one frame each."""
        capabilities = self.session.capabilities if self.session is not None else frozenset()
        if BATCH_CAPABILITY in capabilities:
            frame = batch.frame(self.client_id, self.encoding, self.clock_ms())
            if frame is not None:
                if self.conf.LATENCY_TRACKING_ENABLED:
                    metrics.observe_batch(batch, self.client_id)
                await self._send_frame(frame, pb.BATCH)
            return
        track = self.conf.LATENCY_TRACKING_ENABLED
        for index, encoded in enumerate(batch.for_recipient(self.client_id)):
            if index:
                await asyncio.sleep(0)  # as between the items of a backlog
            kind = metrics.sent_type(encoded, track=track)
            await self._send_frame(encoded.frame(self.encoding), kind)

    async def _send_frame(self, frame: bytes | str, kind: int) -> None:
        """Send one frame of MessageType ``kind``."""
        if isinstance(frame, bytes):
            event = {"type": "websocket.send", "bytes": frame}
        else:
            event = {"type": "websocket.send", "text": frame}
        self._count_sent(frame, kind)
        await self._send_event(event)

    def _count_sent(self, frame: bytes | str, kind: int) -> None:
        """Count one frame of MessageType ``kind`` as sent (connection and metrics)."""
        size = len(frame) if isinstance(frame, bytes) else len(frame.encode("utf-8"))
        self.messages_out += 1
        self.bytes_out += size
        metrics.count_sent(kind, size)

    async def _send_event(self, event: dict[str, Any]) -> None:
        """Hand one ASGI event to the server; a closed socket raises :class:`PeerGone`."""
        try:
            await self.base_send(event)
        except Exception as exc:  # servers raise their own errors for a closed socket
            raise PeerGone(str(exc)) from exc
