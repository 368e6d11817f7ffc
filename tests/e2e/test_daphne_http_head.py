"""Under daphne, a request head must arrive whole within a deadline (daphne_http.py).

Real daphne processes, started with ``make run-daphne``'s command line and
with ``manage.py runserver --noreload`` (daphne's), the deadline cut to
``DEADLINE`` seconds by ``PRESENCE_HTTP_HEAD_TIMEOUT_SECONDS``. Before the
guard, daphne held a silent socket, one with half a request head, or one
fed a byte every few seconds for ever (40 s measured and counting): Twisted's
only timer is a 12-hour idle timeout that every byte restarts.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator

import pytest

from tests.clients.live import Client
from tests.e2e.conftest import Server, runserver_command, server_env, start_server
from tests.e2e.test_wire_limits import make_command, port_of

pytestmark = pytest.mark.e2e

HOST = "127.0.0.1"
DEADLINE = 1.0  # seconds; short, but well above a loaded machine's scheduling jitter
MARGIN = 1.5  # the 408 must come within DEADLINE + MARGIN
EARLY = 0.8  # ... and not before DEADLINE * EARLY
HALF_HEAD = b"GET /ws/lobby HTTP/1.1\r\nHost: x\r\n"
SERVERS = {"make-run-daphne": make_command("run-daphne"), "runserver": runserver_command}


@pytest.fixture(scope="module", params=list(SERVERS))
def daphne(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """A daphne server with a ``DEADLINE``-second request head deadline."""
    name = str(request.param)
    tmp = tmp_path_factory.mktemp(f"head-{name}")
    env = {**server_env(tmp), "PRESENCE_HTTP_HEAD_TIMEOUT_SECONDS": str(DEADLINE)}
    server = start_server(name, tmp, SERVERS[name], env)
    yield server
    server.stop()


async def until_closed(reader: asyncio.StreamReader) -> tuple[bytes, float]:
    """Everything the server sends until it closes, and when it closed (monotonic)."""
    answer = await asyncio.wait_for(reader.read(), DEADLINE + MARGIN)
    return answer, time.monotonic()


async def read_response(reader: asyncio.StreamReader) -> bytes:
    """One whole response with a ``Content-Length`` or a chunked body."""
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    lines = head.decode("latin-1").lower().split("\r\n")
    lengths = [int(ln.split(":", 1)[1]) for ln in lines if ln.startswith("content-length:")]
    if lengths:
        return head + await asyncio.wait_for(reader.readexactly(lengths[0]), 5)
    return head + await asyncio.wait_for(reader.readuntil(b"\r\n0\r\n\r\n"), 5)


def assert_timed_out(answer: bytes, elapsed: float) -> None:
    assert answer.startswith(b"HTTP/1.1 408 "), answer[:200]
    assert b"send the whole request head" in answer
    assert DEADLINE * EARLY <= elapsed < DEADLINE + MARGIN, elapsed


@pytest.mark.parametrize("sent", [b"", HALF_HEAD], ids=["nothing", "half a head"])
async def test_a_head_not_complete_in_time_is_answered_408_and_closed(
    daphne: Server, sent: bytes
) -> None:
    reader, writer = await asyncio.open_connection(HOST, port_of(daphne))
    start = time.monotonic()
    writer.write(sent)

    answer, closed = await until_closed(reader)

    assert_timed_out(answer, closed - start)
    writer.close()


async def test_a_head_dripped_a_byte_at_a_time_does_not_extend_the_deadline(
    daphne: Server,
) -> None:
    reader, writer = await asyncio.open_connection(HOST, port_of(daphne))
    start = time.monotonic()

    async def drip() -> None:
        for byte in HALF_HEAD:  # never the blank line: the head stays unfinished
            writer.write(bytes([byte]))
            await asyncio.sleep(DEADLINE / 10)

    dripping = asyncio.create_task(drip())
    try:
        answer, closed = await until_closed(reader)
    finally:
        dripping.cancel()
        with contextlib.suppress(asyncio.CancelledError, OSError):
            await dripping

    assert_timed_out(answer, closed - start)
    writer.close()


async def test_a_kept_alive_connection_gives_each_request_head_its_own_deadline(
    daphne: Server,
) -> None:
    reader, writer = await asyncio.open_connection(HOST, port_of(daphne))
    await asyncio.sleep(DEADLINE * 0.6)  # most of the first deadline gone ...
    writer.write(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")  # ... and the head is in time
    first = await read_response(reader)
    answered = time.monotonic()
    writer.write(b"GET /health HTTP/1.1\r\n")  # the second head never ends

    answer, closed = await until_closed(reader)

    assert first.startswith(b"HTTP/1.1 200 "), first[:200]
    assert_timed_out(answer, closed - answered)  # counted from the first response
    writer.close()


async def test_an_open_websocket_outlives_the_head_deadline(daphne: Server) -> None:
    client = await Client.join(daphne.ws_url, "head-deadline", "idler")
    try:
        await asyncio.sleep(DEADLINE * 2.5)  # idle well past the deadline: the behaviour under test

        pong = await client.ping(42)

        assert pong.pong.client_time_ms == 42
    finally:
        await client.close()
