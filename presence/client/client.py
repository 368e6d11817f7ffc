"""An asyncio client of the presence service (PROTOCOL.md), the twin of client.js.

    client = PresenceClient("ws://127.0.0.1:8083", "lobby", user_id="alice")
    client.on("chat", lambda line: print(line.name, line.message))
    await client.connect()          # returns once joined (the first ServerHello)
    await client.chat("hello")      # returns the message id once the server accepted it
    await client.close()

Binary protobuf (or proto3 JSON with ``format="json"``); ClientHello with the
``batch`` and ``ack`` capabilities; cumulative acks; reconnection by the
close-code table of section 7 with backoff and jitter; resume with
``session_id`` + ``last_seq``; own unanswered reliable messages re-sent with
the same ``message_id`` after a (re)connect; a ``seq`` already processed is
dropped. Importable without Django; I/O through the ``websockets`` library
unless a ``connect`` function is given (tests pass a fake).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import random as _random
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import quote, urlencode

from google.protobuf import json_format

from presence.client.model import ChatLine, Entity, RoomModel, Vec3
from presence.client.policy import Action, Backoff, close_action
from presence.protocol import core_pb2 as pb

logger = logging.getLogger(__name__)

SUBPROTOCOLS = {"proto": "graphwiz.proto.v1", "json": "graphwiz.json.v1"}
CAPABILITIES = ("batch", "ack")
MAX_FRAME_BYTES = 64 * 1024  # PROTOCOL.md section 8

TokenSource = str | Callable[[], str | Awaitable[str]]
Listener = Callable[[Any], None]


class SocketClosed(Exception):
    """The socket ended; ``code`` is the close code (1006 when there was none)."""

    def __init__(self, code: int, reason: str = "") -> None:
        super().__init__(code, reason)
        self.code = code
        self.reason = reason


class Socket(Protocol):
    """What the client needs of a WebSocket connection."""

    subprotocol: str | None

    async def send(self, frame: bytes | str) -> None: ...

    async def recv(self) -> bytes | str:
        """The next frame; raises :class:`SocketClosed` when the socket ends."""
        ...

    async def close(self, code: int = 1000) -> None: ...

    def abort(self) -> None:
        """Drop the connection without a close handshake."""
        ...


Connect = Callable[[str, list[str]], Awaitable[Socket]]


class ServerError(Exception):
    """The server refused an own message: ``Error{code, message, ref_message_id}``."""

    def __init__(self, code: str, message: str, retry_after_ms: int = 0) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.retry_after_ms = retry_after_ms


class ClientClosed(Exception):
    """The client stopped (``close()``, or a close code that means stop)."""


@dataclass(frozen=True, slots=True)
class StateChange:
    """The ``state`` event: connecting, open, resuming or closed.

    ``code``/``meaning``: the close that caused it; ``reconnect_in``: seconds
    until the next attempt (None when none is planned); ``resumed``: an open
    that continued the previous session.
    """

    state: str
    code: int = 0
    meaning: str = ""
    reconnect_in: float | None = None
    resumed: bool = False


@dataclass(frozen=True, slots=True)
class Hello:
    """The ``hello`` event; ``resync``: a resume was asked for and a new session given."""

    client_id: str
    room_id: str
    host: str
    resumed: bool
    resync: bool


@dataclass(slots=True)
class _Pending:
    message: pb.Message
    future: asyncio.Future[str]
    sent: bool = False


class _WebsocketsSocket:
    """:class:`Socket` over a ``websockets`` asyncio connection."""

    def __init__(self, connection: Any) -> None:
        self._connection = connection
        self.subprotocol: str | None = connection.subprotocol

    async def send(self, frame: bytes | str) -> None:
        from websockets.exceptions import ConnectionClosed

        try:
            await self._connection.send(frame)
        except ConnectionClosed as exc:
            raise SocketClosed(exc.rcvd.code if exc.rcvd else 1006) from None

    async def recv(self) -> bytes | str:
        from websockets.exceptions import ConnectionClosed

        try:
            frame: bytes | str = await self._connection.recv()
        except ConnectionClosed as exc:
            raise SocketClosed(
                exc.rcvd.code if exc.rcvd else 1006, exc.rcvd.reason if exc.rcvd else ""
            ) from None
        return frame

    async def close(self, code: int = 1000) -> None:
        await self._connection.close(code)

    def abort(self) -> None:
        self._connection.transport.abort()


async def websockets_connect(url: str, subprotocols: list[str]) -> Socket:
    """Open ``url`` with the ``websockets`` library (frames up to 64 KiB)."""
    from websockets.asyncio.client import connect

    connection = await connect(
        url,
        subprotocols=subprotocols,  # type: ignore[arg-type]
        max_size=MAX_FRAME_BYTES,
        open_timeout=10,
        ping_interval=20,
        ping_timeout=20,
    )
    return _WebsocketsSocket(connection)


def encode(message: pb.Message, fmt: str) -> bytes | str:
    """One frame: protobuf bytes, or proto3 JSON text."""
    if fmt == "json":
        return json_format.MessageToJson(message, indent=None)
    return message.SerializeToString()


def decode(frame: bytes | str) -> pb.Message:
    """A received frame (either kind) as a message."""
    message = pb.Message()
    if isinstance(frame, str):
        json_format.Parse(frame, message)
    else:
        message.ParseFromString(frame)
    return message


class PresenceClient:
    """A connection to one room that survives cuts.

    Events (``on(name, fn)``): hello, join, leave, update, host, pose, chat,
    spawn, entityUpdate, despawn, kicked, muted, locked, error, state, ack,
    rtt (ms), message (``(direction, pb.Message)``). Listeners run on the
    event loop and must not block.

    Time is injectable for tests: ``sleep`` (seconds), ``clock`` (seconds,
    monotonic) and ``random`` (the backoff's jitter).
    """

    def __init__(
        self,
        url: str,
        room: str,
        *,
        user_id: str = "",
        token: TokenSource | None = None,
        display_name: str = "",
        format: str = "proto",
        token_in: str = "hello",
        connect: Connect = websockets_connect,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
        random: Callable[[], float] = _random.random,
        backoff: Backoff | None = None,
        reconnect: bool = True,
        ack_delay: float = 0.1,
        ping_interval: float = 10.0,
        pose_hz: float = 20.0,
        chat_history: int = 500,
    ) -> None:
        if format not in SUBPROTOCOLS:
            raise ValueError(f"format must be 'proto' or 'json', not {format!r}")
        self.url = url.rstrip("/")
        self.room_id = room
        self.user_id = user_id
        self._token_source = token
        self._token = token if isinstance(token, str) else ""
        self.display_name = display_name
        self.format = format
        self.token_in = token_in
        self._connect = connect
        self._sleep = sleep
        self._clock = clock
        self.backoff = backoff or Backoff(random=random)
        self.reconnect = reconnect
        self.ack_delay = ack_delay
        self.ping_interval = ping_interval
        self.pose_gap = 1.0 / pose_hz if pose_hz > 0 else 0.0
        self.room = RoomModel(chat_history=chat_history)
        self.state = "idle"
        self.session_id = ""
        self.last_seq = 0  # the highest reliable seq processed in this session
        self.acked_seq = 0
        self.rtt_ms: float | None = None
        self.close_code = 0
        self.pending: dict[str, _Pending] = {}
        self._ids = itertools.count(1)
        self._prefix = secrets.token_hex(3)
        self._listeners: dict[str, list[Listener]] = {}
        self._socket: Socket | None = None
        self._runner: asyncio.Task[None] | None = None
        self._stopped = False
        self._want_resume = False
        self._retry_after_ms = 0
        self._heartbeat_ms = 0
        self._ack_task: asyncio.Task[None] | None = None
        self._last_pose_at = -1e18
        self._joined: asyncio.Future[Hello] | None = None
        self.attempts = 0  # socket opening attempts, for tests and logs

    # --- events ---------------------------------------------------------------

    def on(self, name: str, fn: Listener) -> Callable[[], None]:
        """Listen to ``name``; returns a function that stops listening."""
        self._listeners.setdefault(name, []).append(fn)
        return lambda: self._listeners.get(name, []).remove(fn)

    def emit(self, name: str, detail: Any) -> None:
        for fn in list(self._listeners.get(name, ())):
            try:
                fn(detail)
            except Exception:
                logger.exception("a %r listener raised", name)

    async def wait_for(
        self, name: str, test: Callable[[Any], bool] = lambda _: True, timeout: float = 10.0
    ) -> Any:
        """The next ``name`` event passing ``test``; TimeoutError after ``timeout`` s."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

        def listener(detail: Any) -> None:
            if not future.done() and test(detail):
                future.set_result(detail)

        stop = self.on(name, listener)
        try:
            return await asyncio.wait_for(future, timeout)
        finally:
            stop()

    def _set_state(self, state: str, **extra: Any) -> None:
        self.state = state
        self.emit("state", StateChange(state, **extra))

    # --- connection -------------------------------------------------------------

    async def connect(self, *, timeout: float | None = 30.0) -> Hello:
        """Start the connection loop; return the first ``hello`` (within ``timeout`` s).

        Raises :class:`ClientClosed` if the server refuses for good first (4400,
        4403, ...), TimeoutError if no hello came in time (the loop keeps trying).
        """
        if self._runner is None or self._runner.done():
            self._stopped = False
            self._joined = asyncio.get_running_loop().create_future()
            self._runner = asyncio.create_task(self._run(), name=f"presence-{self.room_id}")
        assert self._joined is not None
        return await asyncio.wait_for(asyncio.shield(self._joined), timeout)

    async def close(self) -> None:
        """Leave the room (close 1000); unanswered messages fail with ClientClosed."""
        self._stopped = True
        socket, self._socket = self._socket, None
        if socket is not None:
            with contextlib.suppress(Exception):
                await socket.close(1000)
        if self._runner is not None:
            self._runner.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._runner
        self._fail_pending(ClientClosed("client closed"))
        self._set_state("closed", code=1000, meaning="normal")

    def cut(self) -> None:
        """Drop the socket without a close handshake, as a network cut would."""
        if self._socket is not None:
            self._socket.abort()

    async def _token_now(self) -> str:
        if not self._token and callable(self._token_source):
            value = self._token_source()
            # a plain function or a coroutine function
            self._token = await value if asyncio.iscoroutine(value) else value  # type: ignore[assignment]
        return self._token

    def _ws_url(self, token: str, resume: bool) -> str:
        query: dict[str, str] = {}
        if self.user_id and not token:
            query["user_id"] = self.user_id
        if token and self.token_in == "query":
            query["auth_token"] = token
        if self.display_name:
            query["display_name"] = self.display_name
        if resume:
            query.update(session_id=self.session_id, last_seq=str(self.last_seq))
        return f"{self.url}/ws/{quote(self.room_id, safe='')}?{urlencode(query)}"

    async def _run(self) -> None:
        resume = False
        while not self._stopped:
            self._want_resume = resume and bool(self.session_id)
            self._set_state("resuming" if self._want_resume else "connecting")
            code, _reason = await self._one_connection(self._want_resume)
            self.close_code = code
            if self._stopped:
                return
            for pending in self.pending.values():
                pending.sent = False
            policy = close_action(code)
            if policy.action is Action.STOP or not self.reconnect:
                self._finish(code, policy.meaning)
                return
            delay = self.backoff.next()
            if policy.action is Action.WAIT and self._retry_after_ms > 0:
                delay = self._retry_after_ms / 1000
            if policy.action is Action.REFRESH:
                if not callable(self._token_source):
                    self._finish(code, policy.meaning)
                    return
                self._token = ""  # the next attempt asks the token source again
            resume = policy.resume and bool(self.session_id)
            if not policy.resume:
                self.session_id = ""
            self._set_state(
                "resuming" if resume else "connecting",
                code=code,
                meaning=policy.meaning,
                reconnect_in=delay,
            )
            await self._sleep(delay)

    def _finish(self, code: int, meaning: str) -> None:
        self._stopped = True
        error = ClientClosed(f"closed {code}: {meaning}")
        self._fail_pending(error)
        if self._joined is not None and not self._joined.done():
            self._joined.set_exception(error)
        self._set_state("closed", code=code, meaning=meaning)

    def _fail_pending(self, error: Exception) -> None:
        for pending in self.pending.values():
            if not pending.future.done():
                pending.future.set_exception(error)
                pending.future.exception()  # retrieved: no "never retrieved" warning
        self.pending.clear()

    async def _one_connection(self, resume: bool) -> tuple[int, str]:
        """Open, talk until the socket ends; the close code and reason."""
        self._retry_after_ms = 0
        self.attempts += 1
        try:
            token = await self._token_now()
            socket = await self._connect(self._ws_url(token, resume), [SUBPROTOCOLS[self.format]])
        except SocketClosed as closed:
            return closed.code, closed.reason
        except Exception as exc:  # refused, DNS, a token source that failed, ...
            self._emit_error("CLIENT", f"could not connect: {type(exc).__name__}: {exc}")
            return 1006, ""
        self._socket = socket
        pinger: asyncio.Task[None] | None = None
        try:
            hello = pb.ClientHello(display_name=self.display_name, capabilities=CAPABILITIES)
            if token and self.token_in != "query":
                hello.auth_token = token
            await self._send(pb.Message(client_hello=hello))
            pinger = asyncio.create_task(self._ping_loop())
            while True:
                self._receive(decode(await socket.recv()))
        except SocketClosed as closed:
            return closed.code, closed.reason
        except Exception as exc:
            logger.warning("presence client: connection ended by %s", type(exc).__name__)
            with contextlib.suppress(Exception):
                socket.abort()
            return 1006, ""
        finally:
            self._socket = None
            for task in (pinger, self._ack_task):
                if task is not None:
                    task.cancel()
            self._ack_task = None

    # --- inbound ----------------------------------------------------------------

    def _receive(self, msg: pb.Message) -> None:
        self.emit("message", ("in", msg))
        kind = msg.WhichOneof("payload")
        if kind == "batch":
            for inner in msg.batch.messages:
                self._receive(inner)
            return
        if msg.seq:
            if msg.seq <= self.last_seq:
                return  # a re-send or a replay already processed (section 5)
            self.last_seq = msg.seq
            self._schedule_ack()
        if kind == "server_hello":
            self._on_hello(msg.server_hello)
        elif kind == "ack":
            self._on_ack(msg.ack.message_id)
        elif kind == "error":
            self._on_error(msg.error)
        elif kind == "pong":
            self.rtt_ms = max(0.0, time.time() * 1000 - msg.pong.client_time_ms)
            self.emit("rtt", self.rtt_ms)
        elif kind == "ping":
            self._send_soon(pb.Message(pong=pb.Pong(client_time_ms=msg.ping.client_time_ms)))
        else:
            for name, detail in self.room.apply(msg):
                self.emit(name, detail)

    def _on_hello(self, hello: pb.ServerHello) -> None:
        resumed = hello.resumed and self._want_resume and hello.session_id == self.session_id
        if not resumed:
            self.last_seq = 0
            self.acked_seq = 0
        self.session_id = hello.session_id
        self.backoff.reset()
        self._heartbeat_ms = hello.heartbeat_interval_ms
        events = self.room.hello(hello, self.display_name, resumed=resumed)
        self._set_state("open", resumed=resumed)
        greeting = Hello(
            self.room.me, self.room.id, self.room.host, resumed, self._want_resume and not resumed
        )
        self.emit("hello", greeting)
        for name, detail in events:
            self.emit(name, detail)
        self._want_resume = False
        if self._joined is not None and not self._joined.done():
            self._joined.set_result(greeting)
        # Section 6: own unanswered messages again, with the same message_id.
        for pending in self.pending.values():
            if not pending.sent:
                pending.sent = True
                self._send_soon(pending.message)

    def _on_ack(self, message_id: str) -> None:
        pending = self.pending.pop(message_id, None) if message_id else None
        if pending is None:
            return
        for line in self.room.chat:
            if line.mine and line.message_id == message_id:
                line.acked = True
        if not pending.future.done():
            pending.future.set_result(message_id)
        self.emit("ack", message_id)

    def _on_error(self, error: pb.Error) -> None:
        code = pb.Error.ErrorCode.Name(error.code)
        if error.retry_after_ms:
            self._retry_after_ms = error.retry_after_ms
        pending = self.pending.pop(error.ref_message_id, None) if error.ref_message_id else None
        if pending is not None and not pending.future.done():
            pending.future.set_exception(ServerError(code, error.message, error.retry_after_ms))
            pending.future.exception()
        self._emit_error(code, error.message, error.retry_after_ms, error.ref_message_id)

    def _emit_error(self, code: str, text: str, retry_after_ms: int = 0, ref: str = "") -> None:
        detail = {"code": code, "message": text, "retry_after_ms": retry_after_ms}
        self.emit("error", {**detail, "ref_message_id": ref})

    def _schedule_ack(self) -> None:
        if self._ack_task is None or self._ack_task.done():
            self._ack_task = asyncio.create_task(self._ack_later())

    async def _ack_later(self) -> None:
        await self._sleep(self.ack_delay)
        if self.last_seq > self.acked_seq:
            upto = self.last_seq
            if await self._send(pb.Message(ack=pb.Ack(up_to_seq=upto))):
                self.acked_seq = upto

    async def _ping_loop(self) -> None:
        while True:
            now_ms = int(time.time() * 1000)
            await self._send(pb.Message(ping=pb.Ping(client_time_ms=now_ms)))
            await self._sleep((self._heartbeat_ms / 1000) or self.ping_interval)

    # --- outbound ---------------------------------------------------------------

    async def _send(self, message: pb.Message) -> bool:
        """Send now if connected; whether it went."""
        socket = self._socket
        if socket is None:
            return False
        frame = encode(message, self.format)
        size = len(frame) if isinstance(frame, bytes) else len(frame.encode())
        if size > MAX_FRAME_BYTES:
            raise ValueError(f"message of {size} bytes is over the {MAX_FRAME_BYTES}-byte limit")
        try:
            await socket.send(frame)
        except SocketClosed:
            return False
        self.emit("message", ("out", message))
        return True

    def _send_soon(self, message: pb.Message) -> None:
        task = asyncio.ensure_future(self._send(message))
        task.add_done_callback(lambda t: t.exception() if not t.cancelled() else None)

    async def _reliable(self, message: pb.Message) -> str:
        """Send a reliable message (now, or after the next hello); its id once accepted.

        Raises :class:`ServerError` when the server refuses it and
        :class:`ClientClosed` when the client stops first.
        """
        if not message.message_id:
            message.message_id = f"{self._prefix}-{next(self._ids)}"
        future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        pending = _Pending(message, future)
        self.pending[message.message_id] = pending
        if self.state == "open":
            pending.sent = await self._send(message)
        return await future

    async def chat(self, text: str, *, type: str = "NORMAL") -> str:
        """Say ``text`` to the room; the message id once the server accepted it."""
        message = pb.Message(chat_message=pb.ChatMessage(message=text, type=type))
        message.message_id = f"{self._prefix}-{next(self._ids)}"
        name = self.display_name or self.room.me
        line = ChatLine(self.room.me, name, text, type=type, mine=True)
        line.message_id = message.message_id
        self.room.push_chat(line)
        self.emit("chat", line)
        return await self._reliable(message)

    async def move(self, x: float, y: float, z: float) -> bool:
        """Move this client's avatar (metres; volatile, at most ``pose_hz`` a second).

        Returns False when skipped (too soon after the last one, or not connected).
        """
        me = self.room.members.get(self.room.me)
        if me is not None:
            me.position = Vec3(x, y, z)
        now = self._clock()
        if now - self._last_pose_at < self.pose_gap:
            return False
        self._last_pose_at = now
        pose = pb.PositionUpdate(position=pb.Vector3(x=x, y=y, z=z))
        return await self._send(pb.Message(position_update=pose))

    async def move_entity(self, entity_id: str, x: float, y: float, z: float) -> bool:
        """Move an own entity (volatile)."""
        entity = self.room.entities.get(entity_id)
        if entity is not None:
            entity.position = Vec3(x, y, z)
        pose = pb.PositionUpdate(entity_id=entity_id, position=pb.Vector3(x=x, y=y, z=z))
        return await self._send(pb.Message(position_update=pose))

    async def spawn(
        self, entity_id: str, template_id: str, components: dict[str, str] | None = None
    ) -> str:
        """Spawn an entity owned by this client."""
        parts = dict(components or {})
        self.room.entities[entity_id] = Entity(entity_id, template_id, self.room.me, parts)
        spawn = pb.EntitySpawn(entity_id=entity_id, template_id=template_id, components=parts)
        return await self._reliable(pb.Message(entity_spawn=spawn))

    async def update_entity(self, entity_id: str, components: dict[str, str]) -> str:
        """Change components of an own entity (text, sent as UTF-8 bytes)."""
        entity = self.room.entities.get(entity_id)
        if entity is not None:
            entity.components.update(components)
        encoded = {k: v.encode() for k, v in components.items()}
        update = pb.EntityUpdate(entity_id=entity_id, components=encoded)
        return await self._reliable(pb.Message(entity_update=update))

    async def despawn(self, entity_id: str) -> str:
        """Remove an own entity."""
        self.room.entities.pop(entity_id, None)
        despawn = pb.EntityDespawn(entity_id=entity_id)
        return await self._reliable(pb.Message(entity_despawn=despawn))
