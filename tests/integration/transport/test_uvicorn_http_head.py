"""A request head must arrive complete within a deadline (presence/transport/uvicorn_http.py).

A real uvicorn server in the test's event loop, with the project's HTTP and
WebSocket protocol classes, the deadline cut to a fraction of a second
(``PRESENCE["HTTP_HEAD_TIMEOUT_SECONDS"]``).
Before the guard, uvicorn held a silent socket, or one that sent half a
request head, for ever (40 s measured and counting).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
import uvicorn

from bench.servers import free_port
from presence.transport.uvicorn_http import GuardedH11Protocol
from presence.transport.uvicorn_ws import GuardedWebSocketProtocol

DEADLINE = 0.3


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
    elif scope["type"] == "http":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})
    elif scope["type"] == "websocket":
        await receive()
        await send({"type": "websocket.accept"})
        await receive()  # until the client goes


@pytest.fixture
async def port(settings: Any) -> AsyncIterator[int]:
    settings.PRESENCE = {**settings.PRESENCE, "HTTP_HEAD_TIMEOUT_SECONDS": DEADLINE}
    chosen = free_port()
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=chosen,
        http=GuardedH11Protocol,
        ws=GuardedWebSocketProtocol,
        log_level="warning",
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.01)
    yield chosen
    server.should_exit = True
    with contextlib.suppress(Exception):
        await asyncio.wait_for(task, 5)


async def read_until_closed(reader: asyncio.StreamReader, limit: float) -> bytes:
    return await asyncio.wait_for(reader.read(), limit)


@pytest.mark.parametrize(
    "sent", [b"", b"GET /ws/lobby HTTP/1.1\r\nHost: x\r\n"], ids=["nothing", "half a head"]
)
async def test_a_head_not_complete_in_time_is_answered_408_and_closed(
    port: int, sent: bytes
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(sent)
    start = time.monotonic()

    answer = await read_until_closed(reader, DEADLINE + 5)

    assert answer.startswith(b"HTTP/1.1 408 ")
    assert DEADLINE * 0.8 <= time.monotonic() - start < DEADLINE + 2
    writer.close()


async def test_a_second_slow_head_on_a_kept_alive_connection_is_ended_too(port: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    first = await asyncio.wait_for(reader.readuntil(b"0\r\n\r\n"), 5)  # chunked
    writer.write(b"GET / HTTP/1.1\r\n")  # cancels uvicorn's keep-alive timer; never ends

    answer = await read_until_closed(reader, DEADLINE + 5)

    assert first.startswith(b"HTTP/1.1 200 ")
    assert answer.startswith(b"HTTP/1.1 408 ")
    writer.close()


async def test_a_websocket_outlives_the_head_deadline(port: int) -> None:
    from websockets.asyncio.client import connect

    async with connect(f"ws://127.0.0.1:{port}/ws/lobby") as ws:
        await asyncio.sleep(DEADLINE * 3)
        pong = await ws.ping()
        await asyncio.wait_for(pong, 2)
