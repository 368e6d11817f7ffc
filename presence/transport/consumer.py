"""The WebSocket consumer: a thin shell around the protocol core.

frame -> :class:`Session` (decode, validate) -> :class:`Hub` (room decisions,
fan-out) -> outbox -> socket. One error boundary maps any failure to a close
code from PROTOCOL.md section 7; nothing escapes to the server.

Unlike channels' ``AsyncConsumer.dispatch``, this consumer does not hop to a
worker thread (``aclose_old_connections``) before every event: only the
chat handler touches the database, through ``database_sync_to_async``
(which closes stale connections itself); connection history is queued for
:mod:`presence.storage.history`, which writes it in batches.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from typing import TYPE_CHECKING, Any, cast

from channels.consumer import AsyncConsumer
from channels.db import database_sync_to_async
from channels.exceptions import StopConsumer
from django.utils import timezone

from presence import metrics, moderation
from presence.auth import EXPIRED_TOKEN, AuthRefused, Identity, authenticate_token
from presence.cluster.account_watch import watch_accounts
from presence.cluster.hub import BackendUnavailable, Draining, Hub
from presence.cluster.instance import get_hub
from presence.cluster.recent_chat import chat_recorded
from presence.cluster.registry import RegistryUnavailable
from presence.cluster.sessions import Claimed, Refused, SessionRecord
from presence.conf import presence_settings
from presence.protocol import SERVER_VERSION
from presence.protocol import core_pb2 as pb
from presence.protocol.codec import Encoding, encode
from presence.protocol.codes import CloseCode, ErrorCode
from presence.protocol.envelope import error_message, stamp
from presence.protocol.moderation import order_from_client
from presence.protocol.outbox import Outbox
from presence.protocol.ratelimit import MessageRateLimiter
from presence.protocol.room import Player
from presence.protocol.session import Rejected, Session
from presence.storage import services
from presence.storage.history import get_history
from presence.transport import legacy as legacy_wire
from presence.transport.handshake import (
    HELLO_WITHOUT_TOKEN,
    Admission,
    Refusal,
    admit,
    awaiting_credentials_text,
    client_label,
    credentials_too_late_text,
    display_name_for,
)
from presence.transport.outbound import SERVER_CAPABILITIES, Outbound, OutItem
from presence.transport.probes import get_prober
from presence.transport.reliable import ACK_CAPABILITY, ENDS_SESSION, ReliableSession
from presence.transport.room_access import get_room_access
from presence.transport.uvicorn_ws import SEND_NOW_EXTENSION

if TYPE_CHECKING:
    from channels.consumer import _ChannelScope  # types-channels' name for a consumer's scope

logger = logging.getLogger(__name__)


CLOSE_FLUSH_SECONDS = 2.0  # how long a closing connection may take to flush
# The Error that precedes a close the hub asks for (4000 needs none).
_ABORT_ERRORS = {
    CloseCode.BACKEND_UNAVAILABLE: ErrorCode.UNAVAILABLE,
    CloseCode.FORBIDDEN: ErrorCode.FORBIDDEN,
    CloseCode.UNAUTHORIZED: ErrorCode.UNAUTHORIZED,  # the account was disabled, ...
}


def _wall_clock_ms() -> int:
    return int(time.time() * 1000)


class PresenceConsumer(ReliableSession, Outbound, AsyncConsumer):
    """One WebSocket connection to one room."""

    async def __call__(self, scope: _ChannelScope, receive: Any, send: Any) -> None:
        """Run the connection until it ends; nothing escapes."""
        self.scope = scope
        self.base_send = send
        # uvicorn's guarded protocol writes a tick's frame without a task (outbound.py).
        extensions = cast("dict[str, Any]", scope.get("extensions") or {})
        self._send_now = extensions.get(SEND_NOW_EXTENSION)
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
        self._admission: Admission | None = None  # set between accept and join
        self.legacy: legacy_wire.LegacyWire | None = None  # a GraphWiz-XR hub-client (issue 14)
        # Nothing negotiated: the handshake's outcome waits for the first frame.
        self._sniffing: Admission | Refusal | None = None
        self._sniff_task: asyncio.Task[None] | None = None
        self.identity: Identity | None = None
        self._timers: list[asyncio.TimerHandle] = []
        self._rate = MessageRateLimiter(
            limit=self.conf.MESSAGE_RATE_LIMIT,
            window=self.conf.MESSAGE_RATE_WINDOW_SECONDS,
            strikes=self.conf.MESSAGE_RATE_STRIKES,
        )
        self.messages_out = 0
        self.bytes_out = 0
        self._peer_gone = False
        self._close_reason = ""  # why the server closed, for the connection's one log line
        self.clock_ms = _wall_clock_ms
        self._meter = metrics.ConnectionMeter()
        self._init_session()
        self._joining_hello: pb.ClientHello | None = None  # the hello a socket joined with
        self._resync = False  # a refused resume: RESYNC_REQUIRED follows the hello
        try:
            while True:
                await self.dispatch(await receive())
        except StopConsumer:
            pass
        except GeneratorExit:
            # The coroutine is being closed without its loop (a server or test
            # abandoned it): nothing can be awaited any more.
            self._cleaned = True
            raise
        finally:
            await self._cleanup(self._close_code or CloseCode.NORMAL)

    async def dispatch(self, message: dict[str, Any]) -> None:
        """Route one ASGI event to its handler inside the error boundary."""
        handlers = {
            "websocket.connect": self.websocket_connect,
            "websocket.receive": self.websocket_receive,
            "websocket.disconnect": self.websocket_disconnect,
            "presence.sniff_timeout": self._sniff_timeout,
        }
        handler = handlers.get(message["type"])
        if handler is None:
            return
        try:
            await handler(message)
        except StopConsumer:
            raise
        except Draining:
            await self._fail(ErrorCode.UNAVAILABLE, CloseCode.GOING_AWAY, "server going away")
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
        """Client asked to connect: check, accept, then join (or wait for a token)."""
        wire, bad_wire = legacy_wire.wire_of(self.scope)
        start: Admission | Refusal
        try:
            hello_auth = wire is not legacy_wire.Wire.PROTOCOL
            start = await admit(self.scope, self.conf, hello_may_authenticate=hello_auth)
            if bad_wire is not None:  # answered in the encoding the client negotiated
                bad_wire.encoding, bad_wire.subprotocol = start.encoding, start.subprotocol
                raise bad_wire
        except Refusal as refused:
            start = refused
        if wire is legacy_wire.Wire.SNIFF and self.conf.LEGACY_DETECT_SECONDS > 0:
            # Issue 14: the first client frame says whether this is a legacy client,
            # so the server holds its first word until then (or the deadline).
            await self._accept(None)
            self._sniffing = start
            self._after(self.conf.LEGACY_DETECT_SECONDS, self._sniff_deadline)
            return
        if wire is legacy_wire.Wire.LEGACY:
            self.legacy = legacy_wire.LegacyWire()
        await self._start(start)

    def _sniff_deadline(self) -> None:
        if self._sniffing is not None and self._sniff_task is None:
            event = {"type": "presence.sniff_timeout"}
            self._sniff_task = asyncio.create_task(self._dispatch_quietly(event))

    async def _dispatch_quietly(self, event: dict[str, Any]) -> None:
        """Run a handler of the consumer's own inside the error boundary, off the receive loop."""
        with contextlib.suppress(StopConsumer):  # the close is sent; the disconnect follows
            await self.dispatch(event)

    async def _sniff_timeout(self, event: dict[str, Any]) -> None:
        """No frame before the deadline: not a legacy client; go on as PROTOCOL.md says."""
        start, self._sniffing = self._sniffing, None
        if start is not None:
            await self._start(start)

    async def _start(self, start: Admission | Refusal, *, first_frame: bool = False) -> None:
        """Go on with the handshake's outcome: refuse, wait for a token, or join."""
        if isinstance(start, Refusal):
            self.encoding = start.encoding
            await self._refuse(start.subprotocol, start)
            return
        admission = start
        if admission.refusal is not None and self.legacy is None:
            await self._start(admission.refusal)  # no legacy hello can bring a token
            return
        self.encoding = admission.encoding
        if not self._accepted:
            await self._accept(admission.subprotocol)
        self.client_id = f"c{uuid.uuid4().hex[:15]}"
        self.session = Session(
            self.client_id, limits=self.conf.field_limits, bad_frame_limit=self.conf.BAD_FRAME_LIMIT
        )
        if self.legacy is not None:
            self.session.decode = self.legacy.decoder(self.client_id)
        self.outbox = Outbox(max_reliable=self.conf.MESSAGE_QUEUE_SIZE, merge=self._merge_volatile)
        if self.legacy is not None and admission.identity is not None and first_frame:
            # A legacy client's first frame is its CLIENT_HELLO: join with its name.
            self._admission = admission
            return
        if admission.identity is None:
            # PROTOCOL.md section 4.2: the token may come in the first ClientHello.
            self._admission = admission
            if self.conf.DEV_AUTH and self.legacy is None:  # no silent wait: say what would
                notice = awaiting_credentials_text(self.conf)
                self._queue(error_message(ErrorCode.UNAUTHORIZED, notice, now_ms=0))
            self._after(self.conf.AUTH_TIMEOUT_SECONDS, self._credentials_too_late)
            return
        name = admission.query.get("display_name", "")
        await self._join(admission, admission.identity, name)

    async def _hello_with_token(self, hello: pb.ClientHello) -> None:
        """The first ClientHello of a socket that came without credentials.

        Or a legacy client's CLIENT_HELLO: its ``authToken`` authenticates; without
        one, the URL's development-mode ``user_id`` does.
        """
        admission, self._admission = self._admission, None
        assert admission is not None
        if not hello.auth_token:
            if admission.identity is not None:  # legacy, development mode
                await self._join(admission, admission.identity, hello.display_name, hello)
                return
            if admission.refusal is not None:
                refused = admission.refusal
                self._refuse_late(refused.code, refused.close_code, refused.text)
                return
            text = legacy_wire.HELLO_FIRST if self.legacy is not None else HELLO_WITHOUT_TOKEN
            self._refuse_late(ErrorCode.UNAUTHORIZED, CloseCode.UNAUTHORIZED, text)
            return
        try:
            identity = await database_sync_to_async(authenticate_token)(
                hello.auth_token, room_id=admission.room_id
            )
        except AuthRefused as refused:
            self._refuse_late(refused.code, refused.close_code, refused.text)
            return
        await self._join(admission, identity, hello.display_name, hello)

    def _credentials_too_late(self) -> None:
        if self._admission is not None:
            self._admission = None
            text = credentials_too_late_text(self.conf)
            self._refuse_late(ErrorCode.UNAUTHORIZED, CloseCode.AUTH_TIMEOUT, text)

    def _refuse_late(
        self, code: ErrorCode, close_code: CloseCode, text: str, *, outcome: str = ""
    ) -> None:
        if self._recorded:  # a member: its one log line comes when it leaves
            self._close_reason = text
        else:
            logger.info("refused a connection after accept: %s (%d)", text, close_code)
        self._meter.refused(close_code, outcome)  # counts only before the join
        self._queue(error_message(code, text, now_ms=0))
        self._close(close_code)

    def abort(self, close_code: CloseCode, text: str) -> None:
        """Close on the hub's word: Redis failed (4012), kicked (4403), going away (4000).

        A session whose socket already dropped (in its grace) and that is
        kicked or loses its account ends at once: it leaves the room.
        """
        if self._close_code is not None and close_code in ENDS_SESSION:
            self._end_detached()
            return
        if self._close_code is not None or self.outbox is None:
            return
        self._close_reason = text
        error = _ABORT_ERRORS.get(close_code)
        if error is not None:
            self._queue(error_message(error, text, now_ms=0))
        self._close(close_code)

    def _after(self, seconds: float, callback: Any) -> None:
        self._timers.append(asyncio.get_running_loop().call_later(seconds, callback))

    def _token_expired(self) -> None:
        if self._close_code is None:
            self._refuse_late(ErrorCode.UNAUTHORIZED, CloseCode.UNAUTHORIZED, EXPIRED_TOKEN)

    async def _join(
        self,
        admission: Admission,
        identity: Identity,
        name: str,
        hello: pb.ClientHello | None = None,
    ) -> None:
        try:
            display_name = display_name_for(name, identity, self.conf)
        except Refusal as refused:
            self._refuse_late(refused.code, refused.close_code, refused.text)
            return
        room_id = admission.room_id
        self.hub = get_hub()
        self._hub_ref = self.hub
        occupancy = await self.hub.occupancy(room_id)  # on every instance
        if admission.resume is not None:
            occupancy = max(0, occupancy - 1)  # a member in its grace counts itself
        access = await get_room_access().get(room_id)
        refusal = access.refusal(occupancy, identity.user_id)
        if refusal is not None:
            self._refuse_late(*refusal, outcome="refused_room")
            return
        if identity.expires_at is not None:
            self._after(max(0.0, identity.expires_at - time.time()), self._token_expired)
        self.room_id = room_id
        self.identity = identity
        self.connection_id = uuid.uuid4().hex
        label = client_label(admission.query)
        self._joining_hello = hello
        self._resync = admission.resume is not None
        resumed = None
        if admission.resume is not None:
            resumed = await self._resume(admission, identity, display_name, label)
        replayed = 0
        if resumed is not None:
            self._resync = False
            server_hello, joined, replayed = resumed
            self._greet(server_hello)
        else:
            joined = await self._fresh_session(admission, identity, display_name, label)
        self._record_history(admission, identity, display_name, label, occupancy)
        self._meter.accepted()
        get_prober().ensure(self.hub)
        watch_accounts(self.hub, identity)
        after = admission.resume.last_seq if resumed is not None and admission.resume else 0
        queued = self._go_live(after)
        if replayed:
            metrics.REPLAYED.inc(min(queued, replayed))
        logger.debug("client %s joined room %s", self.client_id, room_id)
        await self.hub.publish(room_id, joined)

    def _record_history(
        self,
        admission: Admission,
        identity: Identity,
        display_name: str,
        label: str,
        occupancy: int,
    ) -> None:
        headers = dict(self.scope.get("headers") or [])
        get_history().opened(
            connected_at=timezone.now(),
            room_id=self.room_id,
            external_user_id=identity.user_id,
            django_user_id=identity.django_user_id,
            assigned_client_id=self.client_id,
            client_label=label,  # also in the registry
            display_name=display_name,
            ip_address=admission.ip_address,
            user_agent=headers.get(b"user-agent", b"").decode("latin-1"),
            occupancy=occupancy + 1,
        )
        self._recorded = True

    def _player(self, identity: Identity, display_name: str) -> Player:
        player = Player(
            client_id=self.client_id,
            user_id=identity.user_id,
            display_name=display_name,
            moderator=identity.moderator,
        )
        hello = self._joining_hello
        if hello is not None:  # the avatar a joining hello brings
            player.avatar_url = hello.avatar_url
            if hello.HasField("avatar_config"):
                player.avatar_config = hello.avatar_config
        return player

    async def _fresh_session(
        self, admission: Admission, identity: Identity, display_name: str, label: str
    ) -> list[Any]:
        """A new session: recorded in the store, then joined (the room hears JOIN)."""
        assert self.hub is not None and self.session is not None
        capabilities = self.session.capabilities
        self._new_window(acks=ACK_CAPABILITY in capabilities)
        assert self.window is not None and self.answers is not None
        self.session_id = uuid.uuid4().hex
        record = SessionRecord(
            session_id=self.session_id,
            user_id=identity.user_id,
            room_id=self.room_id,
            client_id=self.client_id,
            instance_id=self.hub.instance_id,
            connection_id=self.connection_id,
            capabilities=tuple(sorted(capabilities)),
        )
        try:
            await self.hub.sessions.open(record, self.window, self.answers)
        except RegistryUnavailable as exc:
            raise self.hub.backend_failed("sessions", exc) from exc
        self.hub.hold(self.session_id, self)
        player = self._player(identity, display_name)
        _, joined = await self.hub.join(
            self.room_id, self, player, client_label=label, greet=self._greet
        )
        return joined

    async def _resume(
        self, admission: Admission, identity: Identity, display_name: str, label: str
    ) -> tuple[pb.ServerHello, list[Any], int] | None:
        """Claim the named session; its hello, what to publish and the replay's length.

        ``None``: not resumable (counted; a session of the same identity ended).
        """
        assert self.hub is not None and self.session is not None and admission.resume
        request = admission.resume
        hub, session = self.hub, self.session
        # A holder in this process hands its own window over; otherwise what
        # the room logged that the holder never recorded is caught up.
        catch_up = request.session_id not in hub.holders
        claimed: list[Claimed] = []

        async def claim() -> Claimed | Refused:
            try:
                result = await hub.sessions.claim(
                    request.session_id,
                    user_id=identity.user_id,
                    room_id=self.room_id,
                    last_seq=request.last_seq,
                    instance_id=hub.instance_id,
                    connection_id=self.connection_id,
                    catch_up=catch_up,
                )
            except RegistryUnavailable as exc:
                raise hub.backend_failed("sessions", exc) from exc
            if isinstance(result, Claimed):
                # Before anything the room says reaches this connection.
                self.client_id = session.client_id = result.record.client_id
                self.session_id = request.session_id
                capabilities = frozenset(result.record.capabilities) | session.capabilities
                session.capabilities = capabilities
                self._adopt_claim(result, request.last_seq, ACK_CAPABILITY in capabilities)
                claimed.append(result)
            return result

        result, hello, joined = await hub.resume(
            self.room_id,
            self,
            lambda: self._player(identity, display_name),
            session_id=request.session_id,
            claim=claim,
            client_label=label,
        )
        if isinstance(result, Refused) or hello is None:
            metrics.count_resume("resync")
            assert isinstance(result, Refused)
            logger.info("resume refused (%s); a new session", result.reason)
            if result.ended is not None:
                await hub.end_session(result.ended)
            return None
        metrics.count_resume("resumed")
        if result.record.instance_id != hub.instance_id:
            hub.notify_holder(result.record, "taken")  # a half-open socket there gets 4010
        hello.resumed = True
        hello.ClearField("initial_state")
        return hello, joined, len(result.replay)

    def _greet(self, hello: pb.ServerHello) -> None:
        """Queue the ``ServerHello``: the first message of the joined connection.

        A refused resume's ``RESYNC_REQUIRED`` follows it at once, before any
        numbered message (those wait for :meth:`_go_live`).
        """
        assert self.hub is not None
        self.clock_ms = self.hub.now_ms
        hello.server_version = SERVER_VERSION
        hello.session_id = self.session_id
        hello.heartbeat_interval_ms = self.conf.HEARTBEAT_INTERVAL_MS
        hello.capabilities.extend(SERVER_CAPABILITIES)
        self._queue(stamp(pb.Message(server_hello=hello), now_ms=self.hub.now_ms()))
        if self._resync:
            text = "session not resumable: this is a new session; rebuild your state from it"
            self._queue(error_message(ErrorCode.RESYNC_REQUIRED, text, now_ms=self.hub.now_ms()))

    async def _accept(self, subprotocol: str | None) -> None:
        await self.base_send({"type": "websocket.accept", "subprotocol": subprotocol})
        self._accepted = True

    async def _refuse(self, subprotocol: str | None, refused: Refusal) -> None:
        logger.info("refused a connection: %s (%d)", refused.text, refused.close_code)
        self._meter.refused(refused.close_code, refused.outcome)
        if not self._accepted:
            await self._accept(subprotocol)
        error = error_message(
            refused.code, refused.text, now_ms=0, retry_after_ms=refused.retry_after_ms
        )
        await self._send_direct(error)
        await self.base_send({"type": "websocket.close", "code": int(refused.close_code)})
        self._close_code = refused.close_code
        # Stay until the server reports the disconnect: returning now can cut
        # the socket before the client has read the close frame.

    async def _send_direct(self, error: pb.Message) -> None:
        """Send an ``Error`` without the outbox, in the connection's framing."""
        if self.legacy is None:
            await self._send_frame(encode(error, self.encoding), pb.ERROR)
            return
        for frame in self.legacy.direct(error):
            await self._send_frame(frame, pb.ERROR)

    # --- steady state ---------------------------------------------------------

    async def websocket_receive(self, event: dict[str, Any]) -> None:
        """A frame arrived: validate it, apply it to the room, fan it out."""
        data = event.get("bytes")
        if data is None:
            data = event.get("text")
            if data is None:
                return
        if self._sniffing is not None:  # the first frame: is it a legacy client?
            start, self._sniffing = self._sniffing, None
            if legacy_wire.is_legacy_frame(data):
                self.legacy = legacy_wire.LegacyWire()
            await self._start(start, first_frame=True)
        elif self._sniff_task is not None:  # the deadline passed: let it finish first
            await asyncio.shield(self._sniff_task)
        if self.session is None or self._close_code is not None:
            return
        started = time.perf_counter()
        verdict = self._rate.check()
        metrics.count_rate_decision("message", verdict.allowed)
        if not verdict.allowed:  # dropped before it is even decoded: never fanned out
            self.session.messages_in += 1
            metrics.count_rate_limited(data)
            if verdict.notify:
                self._queue(
                    error_message(
                        ErrorCode.RATE_LIMITED,
                        f"too many messages: at most {self.conf.MESSAGE_RATE_LIMIT} per "
                        f"{self.conf.MESSAGE_RATE_WINDOW_SECONDS:g} s; wait retry_after_ms",
                        now_ms=0,
                        retry_after_ms=verdict.retry_after_ms,
                    )
                )
            if verdict.close:
                self._close(CloseCode.RATE_LIMITED)
            return
        received = self.session.bytes_in
        result = self.session.receive(data)
        metrics.count_received(result, self.session.bytes_in - received)
        if self._admission is not None and not isinstance(result, Rejected):
            if result.kind == "client_hello":
                await self._hello_with_token(result.message.client_hello)
                return
            admission = self._admission
            if self.legacy is not None and admission.identity is not None:
                self._admission = None  # no hello first: join as the URL says
                await self._join(admission, admission.identity, "")
            else:
                result = Rejected(ErrorCode.UNAUTHORIZED, self._hello_first_text())
        if self.hub is None:
            if isinstance(result, Rejected):
                metrics.count_message_error(result.code)
                self._queue(error_message(result.code, result.text, now_ms=0))
                if result.close_code is not None:
                    self._close(result.close_code)
            return
        if isinstance(result, Rejected):
            metrics.count_message_error(result.code)
            now_ms = self.hub.now_ms()
            self._queue(
                error_message(
                    result.code, result.text, now_ms=now_ms, ref_message_id=result.ref_message_id
                )
            )
            if result.close_code is not None:
                self._close(result.close_code)
            return
        if result.kind == "pong":  # the answer to a server RTT probe (README "Metrics")
            track = self.conf.LATENCY_TRACKING_ENABLED
            self._meter.pong(result.message.pong.client_time_ms, track=track)
            return
        if result.kind == "ack":
            up_to = result.message.ack.up_to_seq
            last = self.window.last_seq if self.window is not None else 0
            if up_to > last:  # a client bug that would only stop its own re-sends
                text = (
                    f"ack up_to_seq {up_to} is beyond the last seq sent ({last}): "
                    "acknowledge only seqs you received"
                )
                metrics.count_message_error(ErrorCode.BAD_MESSAGE)
                self._queue(error_message(ErrorCode.BAD_MESSAGE, text, now_ms=self.hub.now_ms()))
                return
            self._acked(up_to)
            return
        answered = self._answered(result.kind, result.message)
        if answered is not None:  # a repeat: the same answer, never applied again
            self._queue(answered)
            return
        message_id = result.message.message_id
        absent = await self._absent_target(result.kind, result.message)
        if absent is not None:  # answered like any refusal, the same again on a repeat
            metrics.count_message_error(absent.error.code)
            self._remember_answers(result.kind, message_id, [absent])
            self._queue(absent)
            return
        outcome = self.hub.apply(self.room_id, self.client_id, result.kind, result.message)
        if result.kind == "client_hello" and result.message.client_hello.capabilities:
            self._capabilities_changed(self.session.capabilities)
        self._remember_answers(result.kind, message_id, outcome.replies)
        if outcome.moderation is not None:  # the audit record (and a lock) first
            assert self.identity is not None
            await moderation.record(
                self.room_id, outcome.moderation, actor_user_id=self.identity.django_user_id
            )
            moderation.signal(
                self.room_id, outcome.moderation, actor_user_id=self.identity.django_user_id
            )
        sender_name = ""
        if outcome.chat_text is not None:
            # In the room's recent chat before anyone else can hear it: a joiner
            # on another instance that subscribes after the publish below still
            # finds the line in its ServerHello (it missed it live).
            sender_name = self._sender_name()
            await chat_recorded(
                self.hub.recent_chat, self.room_id, result.message.chat_message, sender_name
            )
        await self.hub.publish(self.room_id, outcome.broadcasts, moderation=outcome.moderation)
        if self.conf.LATENCY_TRACKING_ENABLED:
            metrics.observe_processing(time.perf_counter() - started)
        if outcome.chat_text is not None:
            await self._store_chat(result.message.chat_message, sender_name)
        for reply in outcome.replies:  # an Ack goes out once the message is stored
            if reply.type == pb.ERROR:
                metrics.count_message_error(reply.error.code)
            self._queue(reply)

    async def _absent_target(self, kind: str, message: pb.Message) -> pb.Message | None:
        """A moderator's kick or mute of nobody in the room (any instance): its ``Error``.

        ``None`` for everything else, which the room itself answers (a plain
        member's order is refused as forbidden, whoever it names).
        """
        if kind not in ("kick_player", "mute_player") or not (
            self.identity is not None and self.identity.moderator and self.hub is not None
        ):
            return None
        order = order_from_client(kind, message, self.client_id)
        if order is None or order.target_client_id in ("", self.client_id):
            return None
        if await self.hub.has_member(self.room_id, order.target_client_id):
            return None
        text = (
            f"{order.target_client_id[:64]!r} is not in this room: name the client id of a "
            "member who is here (the ServerHello and JOIN events give them)"
        )
        return error_message(
            ErrorCode.BAD_MESSAGE,
            text,
            now_ms=self.hub.now_ms(),
            ref_message_id=message.message_id,
        )

    def _hello_first_text(self) -> str:
        if self.legacy is not None:
            return legacy_wire.HELLO_FIRST
        return "send a ClientHello with auth_token first"

    def _sender_name(self) -> str:
        """The sender's display name as the room knows it now."""
        assert self.hub is not None
        player = self.hub.rooms[self.room_id].state.players.get(self.client_id)
        return player.display_name if player else ""

    async def _store_chat(self, chat: pb.ChatMessage, sender_name: str) -> None:
        """Store the line in the database before it is acknowledged."""
        await get_history().flush()  # the sender's session row exists before its chat
        await database_sync_to_async(services.chat_message_store)(
            room_id=self.room_id,
            sender_client_id=self.client_id,
            sender_name=sender_name,
            text=chat.message,
        )

    async def websocket_disconnect(self, event: dict[str, Any]) -> None:
        """The socket closed: leave the room and close the history row."""
        await self._cleanup(self._close_code or int(event.get("code") or CloseCode.NORMAL))
        raise StopConsumer

    async def _fail(self, code: ErrorCode, close_code: CloseCode, text: str) -> None:
        """Error boundary: tell the client, close with ``close_code``, stop."""
        self._meter.refused(close_code)  # counts only before the join
        try:
            if self.outbox is not None:
                self._queue(error_message(code, text, now_ms=0))
                self._close(close_code)
                if self._writer is not None:  # none once the socket is gone
                    await asyncio.wait_for(asyncio.shield(self._writer), CLOSE_FLUSH_SECONDS)
            else:
                if not self._accepted:
                    await self._accept(None)
                await self._send_direct(error_message(code, text, now_ms=0))
                await self.base_send({"type": "websocket.close", "code": int(close_code)})
                self._close_code = close_code
        except Exception:
            logger.exception("could not close connection %s cleanly", self.client_id)
        raise StopConsumer

    # --- teardown -------------------------------------------------------------

    async def _leave_room(self, close_code: int) -> None:
        """The socket ended with ``close_code``: leave at once, or stay present for the grace."""
        hub, self.hub = self.hub, None
        self._cancel_retry()
        if hub is None or not self.room_id or self.released:
            return
        if self.session_id and close_code not in ENDS_SESSION and not self.lost:
            hub.detach(self.room_id, self)  # PROTOCOL.md section 6: present, resumable
            try:
                await hub.sessions.detach(self.session_id, self.connection_id)
            except RegistryUnavailable:
                logger.warning("could not start the resume window of a session")
            return
        self.released = True
        if self.session_id and hub.holders.get(self.session_id) is self:
            del hub.holders[self.session_id]
        try:
            # Shielded: the writer (which leaves after a server close) may be
            # cancelled by the disconnect; the leave must still finish.
            await asyncio.shield(hub.leave(self.room_id, self, close_code=close_code))
            if self.session_id:
                await hub.sessions.end(self.session_id, self.connection_id)
        except (BackendUnavailable, RegistryUnavailable):
            logger.warning("could not announce %s leaving to other instances", self.client_id)

    async def _cleanup(self, close_code: int) -> None:
        """Leave the room and close the history row, once."""
        if self._cleaned:
            return
        self._cleaned = True
        if self._accepted:
            self._meter.closed(close_code)
        if self._close_code is None:
            self._close_code = CloseCode.NORMAL
        for timer in self._timers:
            timer.cancel()
        try:
            await self._leave_room(close_code)
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
                reason = f" {self._close_reason}" if self._close_reason else ""
                logger.info(
                    "client %s left room %s (%d%s)",
                    self.client_id,
                    self.room_id,
                    close_code,
                    reason,
                )
