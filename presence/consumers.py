"""The WebSocket consumer: a thin shell around the protocol core.

frame -> :class:`Session` (decode, validate) -> :class:`Hub` (room decisions,
fan-out) -> outbox -> socket. One error boundary maps any failure to a close
code from PROTOCOL.md section 7; nothing escapes to the server.

Unlike channels' ``AsyncConsumer.dispatch``, this consumer does not hop to a
worker thread (``aclose_old_connections``) before every event: only the
chat handler touches the database, through ``database_sync_to_async``
(which closes stale connections itself); connection history is queued for
:mod:`presence.history`, which writes it in batches.
"""

from __future__ import annotations

import asyncio
import logging
import re
import uuid
from typing import Any
from urllib.parse import parse_qsl

from channels.consumer import AsyncConsumer
from channels.db import database_sync_to_async
from channels.exceptions import StopConsumer
from django.utils import timezone

from presence import services
from presence.auth import AuthRefused, Identity, identify
from presence.conf import PresenceSettings, presence_settings
from presence.history import get_history
from presence.hub import BackendUnavailable, Hub, get_hub
from presence.protocol import SERVER_VERSION
from presence.protocol import core_pb2 as pb
from presence.protocol.batch import TickBatch
from presence.protocol.codec import EncodedMessage, Encoding, encode, negotiate_encoding
from presence.protocol.codes import CloseCode, ErrorCode
from presence.protocol.envelope import error_message, stamp
from presence.protocol.errors import ProtocolError
from presence.protocol.outbox import Outbox
from presence.protocol.room import Player
from presence.protocol.session import Rejected, Session

logger = logging.getLogger(__name__)

# What waits in a connection's outbox: a reliable message and its seq (0 for
# direct replies), or one tick's poses.
OutItem = tuple[EncodedMessage | TickBatch, int]
BATCH_CAPABILITY = "batch"
SERVER_CAPABILITIES = (BATCH_CAPABILITY,)

ROOM_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
MAX_QUERY_FIELDS = 16
CLOSE_FLUSH_SECONDS = 2.0  # how long a closing connection may take to flush


class PeerGone(Exception):
    """The socket closed under a send: a normal race, not an error."""


class Refusal(Exception):
    """The handshake is refused: answer ``Error(code)``, then close."""

    def __init__(self, code: ErrorCode, close_code: CloseCode, text: str) -> None:
        super().__init__(text)
        self.code = code
        self.close_code = close_code
        self.text = text


def parse_query(raw: bytes) -> dict[str, str]:
    """The handshake's query parameters (last value wins), bounded in count."""
    try:
        pairs = parse_qsl(
            raw.decode("latin-1"), keep_blank_values=True, max_num_fields=MAX_QUERY_FIELDS
        )
    except ValueError:
        raise Refusal(
            ErrorCode.BAD_MESSAGE, CloseCode.BAD_REQUEST, "too many query parameters"
        ) from None
    return dict(pairs)


def _display_name(query: dict[str, str], identity: Identity, conf: PresenceSettings) -> str:
    name = query.get("display_name") or identity.display_name or identity.user_id
    limit = conf.field_limits.display_name
    if len(name) > limit or not name.isprintable():
        raise Refusal(
            ErrorCode.BAD_MESSAGE,
            CloseCode.BAD_REQUEST,
            f"display_name: 1-{limit} printable characters",
        )
    return name


class PresenceConsumer(AsyncConsumer):
    """One WebSocket connection to one room."""

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        """Run the connection until it ends; nothing escapes."""
        self.scope = scope
        self.base_send = send
        self.conf = presence_settings()
        self.encoding = Encoding.PROTO
        self.room_id = ""
        self.session: Session | None = None
        self.hub: Hub | None = None
        self.client_id = ""
        self.outbox: Outbox[OutItem] | None = None
        self._writer: asyncio.Task[None] | None = None  # runs only while frames wait
        self._close_code: CloseCode | None = None
        self._recorded = False  # a history row was queued for this connection
        self._cleaned = False
        self._accepted = False
        self.messages_out = 0
        self.bytes_out = 0
        try:
            while True:
                await self.dispatch(await receive())
        except StopConsumer:
            pass
        finally:
            await self._cleanup(self._close_code or CloseCode.NORMAL)

    async def dispatch(self, message: dict[str, Any]) -> None:
        """Route one ASGI event to its handler inside the error boundary."""
        handlers = {
            "websocket.connect": self.websocket_connect,
            "websocket.receive": self.websocket_receive,
            "websocket.disconnect": self.websocket_disconnect,
        }
        handler = handlers.get(message["type"])
        if handler is None:
            return
        try:
            await handler(message)
        except StopConsumer:
            raise
        except BackendUnavailable:
            logger.warning("channel layer unavailable; closing %s", self.client_id or "handshake")
            await self._fail(
                ErrorCode.UNAVAILABLE, CloseCode.BACKEND_UNAVAILABLE, "backend unavailable"
            )
        except Exception:
            logger.exception("internal error on connection %s", self.client_id or "handshake")
            await self._fail(ErrorCode.INTERNAL, CloseCode.INTERNAL_ERROR, "internal error")

    # --- handshake ------------------------------------------------------------

    async def websocket_connect(self, event: dict[str, Any]) -> None:
        """Client asked to connect: check, accept, join the room, say hello."""
        subprotocol: str | None = None
        try:
            query = parse_query(self.scope.get("query_string", b""))
            try:
                self.encoding, subprotocol = negotiate_encoding(
                    self.scope.get("subprotocols") or [], query.get("format")
                )
            except ProtocolError as bad:
                raise Refusal(bad.code, CloseCode.BAD_REQUEST, bad.message) from None
            room_id = self.scope["url_route"]["kwargs"].get("room_id", "")
            if not ROOM_ID.fullmatch(room_id):
                raise Refusal(ErrorCode.BAD_MESSAGE, CloseCode.BAD_REQUEST, "invalid room id")
            identity = identify(query)
            display_name = _display_name(query, identity, self.conf)
        except (Refusal, AuthRefused) as refused:
            await self._refuse(subprotocol, refused.code, refused.close_code, refused.text)
            return
        await self._accept(subprotocol)
        await self._join(room_id, identity, display_name, query)

    async def _join(
        self, room_id: str, identity: Identity, display_name: str, query: dict[str, str]
    ) -> None:
        self.room_id = room_id
        self.client_id = f"c{uuid.uuid4().hex[:15]}"
        self.session = Session(
            self.client_id, limits=self.conf.field_limits, bad_frame_limit=self.conf.BAD_FRAME_LIMIT
        )
        self.outbox = Outbox(max_reliable=self.conf.MESSAGE_QUEUE_SIZE, merge=self._merge_volatile)
        self.hub = get_hub()
        present = self.hub.room(room_id)
        headers = dict(self.scope.get("headers") or [])
        client = self.scope.get("client") or [None]
        get_history().opened(
            connected_at=timezone.now(),
            room_id=room_id,
            external_user_id=identity.user_id,
            django_user_id=identity.django_user_id,
            assigned_client_id=self.client_id,
            client_label=query.get("client_id", "")[:128],
            display_name=display_name,
            ip_address=client[0],
            user_agent=headers.get(b"user-agent", b"").decode("latin-1"),
            occupancy=(len(present.state) if present else 0) + 1,
        )
        self._recorded = True
        player = Player(
            client_id=self.client_id, user_id=identity.user_id, display_name=display_name
        )
        hello, joined = await self.hub.join(room_id, self, player)
        hello.server_version = SERVER_VERSION
        hello.session_id = uuid.uuid4().hex
        hello.heartbeat_interval_ms = self.conf.HEARTBEAT_INTERVAL_MS
        hello.capabilities.extend(SERVER_CAPABILITIES)
        self._queue(stamp(pb.Message(server_hello=hello), now_ms=self.hub.now_ms()))
        logger.info("client %s joined room %s", self.client_id, room_id)
        await self.hub.publish(room_id, joined)

    async def _accept(self, subprotocol: str | None) -> None:
        await self.base_send({"type": "websocket.accept", "subprotocol": subprotocol})
        self._accepted = True

    async def _refuse(
        self, subprotocol: str | None, code: ErrorCode, close_code: CloseCode, text: str
    ) -> None:
        logger.info("refused a connection: %s (%d)", text, close_code)
        await self._accept(subprotocol)
        frame = encode(error_message(code, text, now_ms=0), self.encoding)
        await self._send_frame(frame)
        await self.base_send({"type": "websocket.close", "code": int(close_code)})
        self._close_code = close_code
        # Stay until the server reports the disconnect: returning now can cut
        # the socket before the client has read the close frame.

    # --- steady state ---------------------------------------------------------

    async def websocket_receive(self, event: dict[str, Any]) -> None:
        """A frame arrived: validate it, apply it to the room, fan it out."""
        if self.session is None or self.hub is None or self._close_code is not None:
            return
        data = event.get("bytes")
        if data is None:
            data = event.get("text")
            if data is None:
                return
        result = self.session.receive(data)
        if isinstance(result, Rejected):
            now_ms = self.hub.now_ms()
            self._queue(
                error_message(
                    result.code, result.text, now_ms=now_ms, ref_message_id=result.ref_message_id
                )
            )
            if result.close_code is not None:
                self._close(result.close_code)
            return
        outcome = self.hub.apply(self.room_id, self.client_id, result.kind, result.message)
        await self.hub.publish(self.room_id, outcome.broadcasts)
        if outcome.chat_text is not None:
            await self._store_chat(outcome.chat_text)
        for reply in outcome.replies:  # an Ack goes out once the message is stored
            self._queue(reply)

    async def _store_chat(self, text: str) -> None:
        assert self.hub is not None
        player = self.hub.rooms[self.room_id].state.players.get(self.client_id)
        await get_history().flush()  # the sender's session row exists before its chat
        await database_sync_to_async(services.chat_message_store)(
            room_id=self.room_id,
            sender_client_id=self.client_id,
            sender_name=player.display_name if player else "",
            text=text,
        )

    async def websocket_disconnect(self, event: dict[str, Any]) -> None:
        """The socket closed: leave the room and close the history row."""
        await self._cleanup(self._close_code or int(event.get("code") or CloseCode.NORMAL))
        raise StopConsumer

    # --- outbound -------------------------------------------------------------

    def deliver_reliable(self, encoded: EncodedMessage) -> None:
        """Queue a reliable room message, numbered with this session's next seq."""
        if self.outbox is None or self.session is None or self._close_code is not None:
            return
        if not self.outbox.push((encoded, self.session.next_seq()), reliable=True):
            logger.warning("client %s is too slow; closing 4009", self.client_id)
            self._close(CloseCode.SLOW_CONSUMER)
            return
        self._kick()

    def deliver_volatile(self, batch: TickBatch) -> None:
        """Queue one tick's poses; unsent older poses merge into it (newest wins)."""
        if self.outbox is None or self._close_code is not None:
            return
        self.outbox.push((batch, 0), reliable=False)
        self._kick()

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
        idle members would pay for nothing.
        """
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_loop())

    async def _write_loop(self) -> None:
        try:
            await self._write_until_closed()
        except asyncio.CancelledError:
            raise
        except PeerGone:
            logger.info("client %s went away while frames were being sent", self.client_id)
        except Exception:
            logger.exception("writer of %s failed", self.client_id)

    async def _write_until_closed(self) -> None:
        assert self.outbox is not None
        while True:
            if not self.outbox and self._close_code is None:
                return
            if self._close_code is CloseCode.SLOW_CONSUMER:
                self.outbox.drain()  # the client resumes; sending more only deepens the backlog
            for item, seq in self.outbox.drain():
                if isinstance(item, TickBatch):
                    await self._send_batch(item)
                else:
                    await self._send_frame(item.frame(self.encoding, seq))
            if self._close_code is not None:
                await self.base_send({"type": "websocket.close", "code": int(self._close_code)})
                await self._leave_room()
                return

    async def _send_batch(self, batch: TickBatch) -> None:
        """One Batch frame to clients with the ``batch`` capability, else one frame each."""
        assert self.session is not None and self.hub is not None
        if BATCH_CAPABILITY in self.session.capabilities:
            frame = batch.frame(self.client_id, self.encoding, self.hub.now_ms())
            if frame is not None:
                await self._send_frame(frame)
            return
        for encoded in batch.for_recipient(self.client_id):
            await self._send_frame(encoded.frame(self.encoding))

    async def _send_frame(self, frame: bytes | str) -> None:
        self.messages_out += 1
        if isinstance(frame, bytes):
            self.bytes_out += len(frame)
            event = {"type": "websocket.send", "bytes": frame}
        else:
            self.bytes_out += len(frame.encode("utf-8"))
            event = {"type": "websocket.send", "text": frame}
        try:
            await self.base_send(event)
        except Exception as exc:  # servers raise their own errors for a closed socket
            raise PeerGone(str(exc)) from exc

    async def _fail(self, code: ErrorCode, close_code: CloseCode, text: str) -> None:
        """Error boundary: tell the client, close with ``close_code``, stop."""
        try:
            if self.outbox is not None:
                self._queue(error_message(code, text, now_ms=0))
                self._close(close_code)
                assert self._writer is not None
                await asyncio.wait_for(asyncio.shield(self._writer), CLOSE_FLUSH_SECONDS)
            else:
                if not self._accepted:
                    await self._accept(None)
                await self._send_frame(encode(error_message(code, text, now_ms=0), self.encoding))
                await self.base_send({"type": "websocket.close", "code": int(close_code)})
                self._close_code = close_code
        except Exception:
            logger.exception("could not close connection %s cleanly", self.client_id)
        raise StopConsumer

    # --- teardown -------------------------------------------------------------

    async def _leave_room(self) -> None:
        hub, self.hub = self.hub, None
        if hub is not None and self.room_id:
            try:
                await hub.leave(self.room_id, self)
            except BackendUnavailable:
                logger.warning("could not announce %s leaving to other instances", self.client_id)

    async def _cleanup(self, close_code: int) -> None:
        """Leave the room and close the history row, once."""
        if self._cleaned:
            return
        self._cleaned = True
        if self._close_code is None:
            self._close_code = CloseCode.NORMAL
        try:
            await self._leave_room()
        finally:
            if self._writer is not None and not self._writer.done():
                self._writer.cancel()
            if self._recorded and self.session is not None:
                get_history().closed(
                    assigned_client_id=self.client_id,
                    close_code=int(close_code),
                    messages_in=self.session.messages_in,
                    messages_out=self.messages_out,
                    bytes_in=self.session.bytes_in,
                    bytes_out=self.bytes_out,
                )
                logger.info("client %s left room %s (%d)", self.client_id, self.room_id, close_code)
