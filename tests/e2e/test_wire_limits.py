"""Attacks below the application, against every server command line the project ships.

A raw-socket attacker sends what no well-behaved client does: a header line
over 8 KiB, endless empty continuation frames, a ping (or pong) flood; a
control client in the same room pings meanwhile. The offender must be
answered or closed at once, with a close code PROTOCOL.md section 7 lists, and
the others keep being answered (how fast, under attack, is a machine's
matter: the suite checks that they are served, not a wall-clock bound). Also: the close codes the
WebSocket layer itself sends (1009 for a frame over 64 KiB, 4009 for a client
that stops answering keep-alive pings) and an upgrade to an unrouted path.

The servers run the exact command lines of ``make run``, ``make run-daphne``
and the Dockerfile's ``CMD`` (host and port swapped for a free local one), and
``manage.py runserver --noreload`` (``make runserver`` without the reloader).
"""

from __future__ import annotations

import asyncio
import json
import shlex
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from presence.protocol import pb
from presence.protocol.codes import CloseCode, ErrorCode
from tests.clients.live import Client, http_get
from tests.clients.raw import RawClient, frame, http_answer
from tests.e2e.conftest import (
    PROJECT,
    Server,
    runserver_command,
    server_env,
    start_server,
)

pytestmark = pytest.mark.e2e

HOST = "127.0.0.1"
FLOOD_SECONDS = 3.0  # the attack gives up after this; the server must close well before
CLOSE_WITHIN = 1.5  # seconds from the first flood frame to the server's close frame
RSS_GROWTH_BYTES = 16 << 20  # unbounded, empty fragments grew a process by 76 MB in 30 s
BATCH_FRAMES = 500


def make_command(target: str) -> Callable[[int], list[str]]:
    """The server command ``make -n <target>`` prints, on ``port``."""

    def command(port: int) -> list[str]:
        done = subprocess.run(
            ["make", "--no-print-directory", "-n", target, f"HOST={HOST}", f"PORT={port}"],
            cwd=PROJECT,
            capture_output=True,
            text=True,
            check=True,
        )
        [line] = [ln for ln in done.stdout.splitlines() if f"-p {port}" in ln or f" {port}" in ln]
        return shlex.split(line)

    return command


def dockerfile_command(port: int) -> list[str]:
    """The Dockerfile's ``CMD`` (exec form) with its host and port swapped for local ones."""
    text = (PROJECT / "Dockerfile").read_text(encoding="utf-8").replace("\\\n", " ")
    [line] = [ln for ln in text.splitlines() if ln.startswith("CMD ")]
    argv: list[str] = json.loads(line.removeprefix("CMD "))
    argv[0] = str(Path(PROJECT / ".venv" / "bin" / argv[0]))
    argv[argv.index("--host") + 1] = HOST
    argv[argv.index("--port") + 1] = str(port)
    return argv


SHIPPED: dict[str, Callable[[int], list[str]]] = {
    "make-run": make_command("run"),
    "dockerfile": dockerfile_command,
    "make-run-daphne": make_command("run-daphne"),
    "runserver": runserver_command,
}
UVICORN_SERVERS = ("make-run", "dockerfile")


@pytest.fixture(scope="module", params=list(SHIPPED))
def shipped(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """A server started with one of the shipped command lines."""
    name = str(request.param)
    tmp = tmp_path_factory.mktemp(name)
    server = start_server(name, tmp, SHIPPED[name], server_env(tmp))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def quick_keepalive(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """``make run``'s command line with uvicorn's keep-alive ping every 0.3 s, 0.3 s to answer."""
    tmp = tmp_path_factory.mktemp("keepalive")

    def command(port: int) -> list[str]:
        return [*SHIPPED["make-run"](port), "--ws-ping-interval", "0.3", "--ws-ping-timeout", "0.3"]

    server = start_server("keepalive", tmp, command, server_env(tmp))
    yield server
    server.stop()


def port_of(server: Server) -> int:
    return int(server.http_url.rsplit(":", 1)[1])


def rss_bytes(server: Server) -> int:
    """The server process's resident memory."""
    status = Path(f"/proc/{server.process.pid}/status").read_text()
    [line] = [ln for ln in status.splitlines() if ln.startswith("VmRSS:")]
    return int(line.split()[1]) * 1024


def counted_disconnections(server: Server, code: int) -> float:
    status, _, body = http_get(f"{server.http_url}/metrics")
    assert status == 200
    for family in text_string_to_metric_families(body):
        for sample in family.samples:
            if sample.name == "presence_disconnections_total" and sample.labels == {
                "code": str(code)
            }:
                return sample.value
    return 0.0


@dataclass
class Served:
    """What a control member in the attacked room got while the attack lasted."""

    answered: int = 0  # Pongs
    worst: float = 0.0  # its longest Ping -> Pong, seconds


async def round_trips(control: Client, stop: asyncio.Event, served: Served) -> None:
    """Ping the control member over and over until ``stop`` is set; record into ``served``."""
    marker = 0
    while not stop.is_set():
        marker += 1
        sent = time.monotonic()
        await control.send(pb.Message(ping=pb.Ping(client_time_ms=marker)))
        await control.recv_until(lambda m, n=marker: m.pong.client_time_ms == n)
        served.answered += 1
        served.worst = max(served.worst, time.monotonic() - sent)
        await asyncio.sleep(0.01)


async def attack(
    server: Server, room: str, opening: bytes, batch: bytes
) -> tuple[RawClient, Served]:
    """Flood ``room`` with ``batch`` after ``opening``; the attacker, and what a control got."""
    control = await Client.join(server.ws_url, room, "control")
    attacker = await RawClient.connect(HOST, port_of(server), f"/ws/{room}?user_id=attacker")
    stop = asyncio.Event()
    served = Served()
    measuring = asyncio.create_task(round_trips(control, stop, served))
    try:
        attacker.writer.write(opening)
        await attacker.flood(batch, seconds=FLOOD_SECONDS)
        await attacker.wait_closed(CLOSE_WITHIN)
        await asyncio.sleep(0.2)  # the control keeps measuring just after the close
    finally:
        stop.set()
        await measuring
        await attacker.aclose()
    assert (await control.ping(424242)).pong.client_time_ms == 424242  # still served
    await control.close()
    return attacker, served


@pytest.mark.parametrize("size", [9 * 1024, 100 * 1024], ids=["9KiB", "100KiB"])
async def test_a_header_line_over_8_kib_is_answered_at_once(shipped: Server, size: int) -> None:
    request = (
        f"GET /ws/lobby?user_id=x HTTP/1.1\r\nHost: {HOST}\r\nUpgrade: websocket\r\n"
        "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        f"Sec-WebSocket-Version: 13\r\nX-Padding: {'a' * size}\r\n\r\n"
    ).encode()

    answer = await http_answer(HOST, port_of(shipped), request, timeout=2.0)

    assert answer is not None, "the server held the socket open without an answer"
    if shipped.name in UVICORN_SERVERS:
        assert answer.startswith(b"HTTP/1.1 431 "), answer[:80]


async def test_endless_empty_continuation_frames_are_closed_with_1009(shipped: Server) -> None:
    before = rss_bytes(shipped)

    attacker, served = await attack(
        shipped,
        "flood-cont",
        frame(0x2, b"", fin=False),
        frame(0x0, b"", fin=False) * BATCH_FRAMES,
    )

    assert attacker.close_code == CloseCode.MESSAGE_TOO_BIG, attacker.close_reason
    assert attacker.closed_after is not None and attacker.closed_after < CLOSE_WITHIN
    assert served.answered, "the control member got no Pong during the attack"
    assert served.worst < CLOSE_WITHIN  # never held until the attacker is gone
    assert rss_bytes(shipped) - before < RSS_GROWTH_BYTES


@pytest.mark.parametrize("opcode", [0x9, 0xA], ids=["ping", "pong"])
async def test_a_control_frame_flood_is_closed_with_4008(shipped: Server, opcode: int) -> None:
    attacker, served = await attack(
        shipped, f"flood-{opcode}", b"", frame(opcode, b"flood") * BATCH_FRAMES
    )

    assert attacker.close_code == CloseCode.RATE_LIMITED, attacker.close_reason
    assert attacker.closed_after is not None and attacker.closed_after < CLOSE_WITHIN
    assert served.answered, "the control member got no Pong during the attack"
    assert served.worst < CLOSE_WITHIN  # never held until the attacker is gone


async def test_a_frame_over_64_kib_is_closed_with_1009(shipped: Server) -> None:
    client = await Client.join(shipped.ws_url, "big-frame", "big")

    await client.send_raw(b"\x00" * (64 * 1024 + 1))
    code, _ = await client.expect_close()

    assert code == CloseCode.MESSAGE_TOO_BIG


async def test_a_client_that_stops_answering_pings_is_closed_with_4009(
    quick_keepalive: Server,
) -> None:
    before = counted_disconnections(quick_keepalive, CloseCode.SLOW_CONSUMER)
    attacker = await RawClient.connect(HOST, port_of(quick_keepalive), "/ws/stalled?user_id=s")

    code = await attacker.wait_closed(timeout=5.0)
    await attacker.aclose()

    assert attacker.pings_seen >= 1
    assert code == CloseCode.SLOW_CONSUMER, attacker.close_reason
    deadline = time.monotonic() + 5.0
    while counted_disconnections(quick_keepalive, CloseCode.SLOW_CONSUMER) < before + 1:
        assert time.monotonic() < deadline, "the consumer never saw its 4009"
        await asyncio.sleep(0.05)


async def test_an_upgrade_to_an_unrouted_path_is_refused_4400_without_a_traceback(
    shipped: Server,
) -> None:
    logged = shipped.log_path.stat().st_size
    client = await Client.open(f"{shipped.ws_url}/socket.io/?EIO=4&transport=websocket")

    error = (await client.recv()).error
    code, _ = await client.expect_close()

    assert (error.code, code) == (ErrorCode.BAD_MESSAGE, CloseCode.BAD_REQUEST)
    assert error.message.startswith("no WebSocket endpoint at '/socket.io/'")
    with shipped.log_path.open("rb") as log:
        log.seek(logged)
        tail = log.read().decode("utf-8", "replace")
    assert "Traceback" not in tail and " 500" not in tail, tail
