"""Connection churn with Redis: departures are prompt and the log stays small.

Hundreds of sockets connect, get their hello and go away, fifty at a time —
half with a close frame, half by dropping the TCP connection — against the
server ``make run`` serves, sharing rooms through Redis. Right after the
burst nobody may still be listed in a room, every history row must be
closed, and the log holds at most one line per connection end (at INFO).
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import uuid
from collections.abc import Iterator

import pytest
import websockets

from presence.auth import DEV_MODE_WARNING
from tests.clients.live import http_get, wait_until
from tests.e2e.conftest import Server, serving

pytestmark = pytest.mark.e2e

CYCLES = 600
AT_ONCE = 50
ROOMS = 6
SETTLE_SECONDS = 5.0  # after the burst, departures must be done within this


@pytest.fixture(scope="module")
def churn_server(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[Server]:
    prefix = f"churn-{uuid.uuid4().hex[:8]}"
    with serving(
        tmp_path_factory,
        "uvicorn-churn",
        redis_url=redis_url,
        redis_prefix=prefix,
        LOG_LEVEL="INFO",
    ) as server:
        yield server


async def _cycle(server: Server, n: int) -> None:
    url = f"{server.ws_url}/ws/churn-{n % ROOMS}?user_id=u{n}"
    ws = await websockets.connect(url, open_timeout=30)
    await ws.recv()  # the ServerHello: joined
    if n % 2:
        ws.transport.abort()  # gone without a close frame
    else:
        await ws.close()


def _present(server: Server) -> int:
    status, _, body = http_get(f"{server.http_url}/ws/stats")
    assert status == 200
    return int(json.loads(body)["total_connections"])


def _open_rows(server: Server) -> int:
    with sqlite3.connect(server.sqlite_path) as db:
        (count,) = db.execute(
            "SELECT count(*) FROM presence_connectionsession WHERE disconnected_at IS NULL"
        ).fetchone()
    return int(count)


async def test_a_burst_of_connect_and_close_leaves_nobody_behind(churn_server: Server) -> None:
    for start in range(0, CYCLES, AT_ONCE):
        await asyncio.gather(
            *(_cycle(churn_server, n) for n in range(start, min(start + AT_ONCE, CYCLES)))
        )
    await wait_until(lambda: _present(churn_server) == 0, timeout=SETTLE_SECONDS)
    await wait_until(lambda: _open_rows(churn_server) == 0, timeout=SETTLE_SECONDS)
    log = churn_server.log_path.read_text(errors="replace").splitlines()
    ends = [line for line in log if " left room " in line]
    assert len(ends) == CYCLES
    presence_lines = [line for line in log if " presence." in line]
    assert len(presence_lines) <= CYCLES + 10, "\n".join(presence_lines[-20:])
    warnings = [line for line in presence_lines if " WARNING " in line or " ERROR " in line]
    # The development-mode warning, once per process, is the only one expected.
    assert [line for line in warnings if DEV_MODE_WARNING not in line] == []
    assert len(warnings) <= 1
