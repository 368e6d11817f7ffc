"""Fuzzed frames over live sockets: no internal error, no ERROR line, others unharmed.

A seeded stream of hostile frames (tests/fuzz.py) goes to the server
``make run`` serves, with Redis, from many connections at once: some read
their answers, some never read, some drop their TCP connection in the middle
of a flood. Meanwhile a control pair in one of the rooms exchanges poses.
No connection may be closed with 4011, the server's log may hold no ERROR
line or traceback, and the control pair's poses arrive in order.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import uuid
from collections.abc import Iterator

import pytest
import websockets

from presence.protocol.codes import CloseCode
from tests.clients.live import Client, pose
from tests.e2e.conftest import Server, serving
from tests.fuzz import FrameFuzzer

pytestmark = pytest.mark.e2e

SEED = 20261201
CONNECTIONS = 160
AT_ONCE = 16
MAX_FRAMES = 60
ROOMS = 4


@pytest.fixture(scope="module")
def fuzz_server(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[Server]:
    prefix = f"fuzz-{uuid.uuid4().hex[:8]}"
    with serving(
        tmp_path_factory, "uvicorn-fuzz", redis_url=redis_url, redis_prefix=prefix, LOG_LEVEL="INFO"
    ) as server:
        yield server


async def _fuzz_one(server: Server, n: int, fuzzer: FrameFuzzer, rng: random.Random) -> int | None:
    """One hostile connection; its close code (None if it was still open when it left)."""
    url = f"{server.ws_url}/ws/fz-{n % ROOMS}?user_id=fuzz{n}&client_id=f{n}"
    style = rng.choice(["reader", "silent", "dropper"])
    async with websockets.connect(url, max_size=None, open_timeout=10) as ws:
        for _ in range(rng.randint(1, MAX_FRAMES)):
            await ws.send(fuzzer.frame())
        if style == "dropper":  # TCP gone mid-flood: no close frame
            ws.transport.abort()
            return None
        if style == "reader":
            with contextlib.suppress(TimeoutError, websockets.ConnectionClosed):
                async with asyncio.timeout(0.3):
                    async for _ in ws:
                        pass
        return ws.close_code


async def test_fuzzed_frames_cause_no_internal_error_and_no_error_log(
    fuzz_server: Server,
) -> None:
    rng = random.Random(SEED)
    fuzzer = FrameFuzzer(SEED)
    poser = await Client.join(fuzz_server.ws_url, "fz-0", "poser")
    control = await Client.join(fuzz_server.ws_url, "fz-0", "control")
    codes: list[int | None] = []
    sent = 0
    try:
        for start in range(0, CONNECTIONS, AT_ONCE):
            batch = [
                _fuzz_one(fuzz_server, n, fuzzer, rng)
                for n in range(start, min(start + AT_ONCE, CONNECTIONS))
            ]
            codes += await asyncio.gather(*batch)
            sent += 1
            await poser.send(pose(float(sent)))
            got = await control.recv_kind("position_update")
            while got.position_update.position.x < sent:  # older poses may still arrive
                got = await control.recv_kind("position_update")
            assert got.position_update.position.x == float(sent)
    finally:
        await poser.close()
        await control.close()
    assert CloseCode.INTERNAL_ERROR not in codes
    assert {code for code in codes if code is not None} <= {
        1000,
        CloseCode.INVALID_MESSAGES,
        CloseCode.RATE_LIMITED,
    }, codes
    log = fuzz_server.log_path.read_text(errors="replace").splitlines()
    problems = [line for line in log if " ERROR " in line or "Traceback" in line]
    assert problems == [], "\n".join(problems[:20])
    # The log stays proportional to events: no line per frame written to a dead socket.
    assert not [line for line in log if "socket.send() raised exception" in line]
    presence_lines = [line for line in log if " presence." in line]
    assert len(presence_lines) <= CONNECTIONS + 2 + 10, "\n".join(presence_lines[-20:])
