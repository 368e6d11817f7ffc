"""The uvicorn protocol's receive queue: order, waiting readers, cancellation, read pauses."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
import uvicorn
from uvicorn.server import ServerState
from websockets.client import ClientProtocol
from websockets.frames import Frame, Opcode
from websockets.uri import parse_uri

from presence.transport import uvicorn_ws
from presence.transport.uvicorn_ws import (
    RECEIVE_PAUSE_EVENTS,
    SEND_NOW_EXTENSION,
    GuardedWebSocketProtocol,
    ReceiveQueue,
)


async def test_events_come_out_in_the_order_they_went_in() -> None:
    queue = ReceiveQueue()
    for n in range(3):
        queue.put_nowait({"n": n})

    assert queue.qsize() == 3
    assert [(await queue.get())["n"] for _ in range(3)] == [0, 1, 2]
    assert queue.empty()


async def test_a_waiting_reader_gets_the_next_event() -> None:
    queue = ReceiveQueue()
    reader = asyncio.create_task(queue.get())
    await asyncio.sleep(0)  # the reader is waiting
    assert not reader.done()

    queue.put_nowait("connect")

    assert await asyncio.wait_for(reader, timeout=5) == "connect"


async def test_a_cancelled_reader_loses_nothing() -> None:
    queue = ReceiveQueue()
    reader = asyncio.create_task(queue.get())
    await asyncio.sleep(0)
    reader.cancel()
    with pytest.raises(asyncio.CancelledError):
        await reader

    queue.put_nowait("kept")

    assert await asyncio.wait_for(queue.get(), timeout=5) == "kept"


async def test_two_readers_each_get_one_event() -> None:
    queue = ReceiveQueue()
    readers = [asyncio.create_task(queue.get()) for _ in range(2)]
    await asyncio.sleep(0)

    queue.put_nowait("a")
    queue.put_nowait("b")

    assert sorted(await asyncio.wait_for(asyncio.gather(*readers), timeout=5)) == ["a", "b"]


# --- reading pauses only behind a backlog ---------------------------------------


class RecordingTransport(asyncio.Transport):
    """What the protocol asked of its socket: writes, pauses and resumes."""

    def __init__(self) -> None:
        super().__init__()
        self.written = bytearray()
        self.paused = False
        self.pauses = 0
        self.closed = False
        self.aborted = asyncio.Event()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 8083) if name in ("sockname", "peername") else default

    def write(self, data: Any) -> None:
        self.written += data

    def pause_reading(self) -> None:
        self.paused = True
        self.pauses += 1

    def resume_reading(self) -> None:
        self.paused = False

    def is_closing(self) -> bool:
        return False

    def can_write_eof(self) -> bool:
        return False

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.aborted.set()


class SilentApp:
    """Accepts, then reads only when told to."""

    def __init__(self) -> None:
        self.accepted = asyncio.Event()
        self.read = asyncio.Event()
        self.received: list[bytes] = []
        self.scope: dict[str, Any] = {}

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        self.scope = scope
        await receive()  # websocket.connect
        await send({"type": "websocket.accept"})
        self.accepted.set()
        await self.read.wait()
        while True:
            event = await receive()
            if event["type"] != "websocket.receive":
                return
            self.received.append(event["bytes"])


def _frame(n: int) -> bytes:
    return Frame(Opcode.BINARY, b"pose-%d" % n).serialize(mask=True, extensions=[])


@dataclass
class Connection:
    """The protocol under test, its socket, the application and the client's half."""

    protocol: GuardedWebSocketProtocol
    transport: RecordingTransport
    app: SilentApp
    client: ClientProtocol

    def frames_written(self) -> list[bytes]:
        """The data frames the server wrote since the last call, as the client reads them."""
        self.client.receive_data(bytes(self.transport.written))
        self.transport.written.clear()
        return [bytes(f.data) for f in self.client.events_received() if isinstance(f, Frame)]


@pytest.fixture
async def connection() -> AsyncIterator[Connection]:
    app = SilentApp()
    config = uvicorn.Config(app, ws=GuardedWebSocketProtocol, log_level="warning")
    config.load()
    protocol = GuardedWebSocketProtocol(config, ServerState(), {})
    transport = RecordingTransport()
    protocol.connection_made(transport)
    client = ClientProtocol(parse_uri("ws://127.0.0.1:8083/ws/lobby"))
    client.send_request(client.connect())
    protocol.data_received(b"".join(client.data_to_send()))
    await asyncio.wait_for(app.accepted.wait(), 5)
    yield Connection(protocol, transport, app, client)
    app.read.set()
    if not protocol.disconnected:
        protocol.connection_lost(None)


async def test_reading_goes_on_while_a_few_events_wait(
    connection: Connection,
) -> None:
    protocol, transport = connection.protocol, connection.transport

    for n in range(RECEIVE_PAUSE_EVENTS):
        protocol.data_received(_frame(n))

    assert protocol.queue.qsize() == RECEIVE_PAUSE_EVENTS
    assert transport.pauses == 0


async def test_reading_pauses_behind_a_backlog_and_resumes_once_it_is_read(
    connection: Connection,
) -> None:
    protocol, transport, app = connection.protocol, connection.transport, connection.app

    for n in range(RECEIVE_PAUSE_EVENTS + 1):
        protocol.data_received(_frame(n))

    assert transport.paused and transport.pauses == 1
    app.read.set()
    while len(app.received) < RECEIVE_PAUSE_EVENTS + 1:
        await asyncio.sleep(0)
    assert not transport.paused
    assert app.received == [b"pose-%d" % n for n in range(RECEIVE_PAUSE_EVENTS + 1)]


# --- a synchronous write for the room tick ----------------------------------------


async def test_the_scope_offers_a_write_that_sends_a_binary_frame_at_once(
    connection: Connection,
) -> None:
    send_now = connection.app.scope["extensions"][SEND_NOW_EXTENSION]

    assert send_now(b"batch-1") is True
    assert connection.frames_written() == [b"batch-1"]


async def test_the_write_refuses_while_the_socket_buffer_is_full(connection: Connection) -> None:
    send_now = connection.app.scope["extensions"][SEND_NOW_EXTENSION]
    connection.frames_written()

    connection.protocol.pause_writing()
    assert send_now(b"later") is False
    connection.protocol.resume_writing()
    assert send_now(b"now") is True
    assert connection.frames_written() == [b"now"]


async def test_the_write_refuses_once_the_close_is_sent(connection: Connection) -> None:
    send_now = connection.app.scope["extensions"][SEND_NOW_EXTENSION]
    connection.protocol.fail(4009, "slow consumer")
    connection.transport.written.clear()

    assert send_now(b"too late") is False
    assert connection.transport.written == bytearray()


async def test_a_lost_connection_takes_the_write_out_of_the_scope(connection: Connection) -> None:
    connection.protocol.connection_lost(None)

    assert SEND_NOW_EXTENSION not in connection.app.scope["extensions"]


async def test_after_a_close_the_socket_lingers_even_once_the_application_has_returned(
    connection: Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    # An offender still sending makes the kernel answer a close() with a reset,
    # which can destroy the close frame before the client reads it: the socket
    # is dropped only after the linger, whenever the application returns.
    monkeypatch.setattr(uvicorn_ws, "LINGER_SECONDS", 0.05)
    connection.protocol.fail(4008, "too many control frames")
    connection.app.read.set()  # the application reads the disconnect and returns
    await asyncio.wait_for(asyncio.gather(*connection.protocol.tasks), 5)

    assert not connection.transport.closed
    await asyncio.wait_for(connection.transport.aborted.wait(), 5)
