"""A forged X-Forwarded-For from 127.0.0.1 changes nothing without TRUSTED_PROXIES.

Each server runs its shipped command line (tests/unit/test_server_commands.py
ties them to the Makefile and the Dockerfile) with no ``TRUSTED_PROXIES``,
a connection limit of 5 per window and ``/metrics`` kept to 10.0.0.0/8.
Every request comes from 127.0.0.1 and claims another address: the server
itself must not believe it (uvicorn does by default, from loopback).
"""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Callable
from urllib.parse import urlencode

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from bench.servers import service_command
from presence.protocol import pb
from tests.clients.live import RECEIVE_TIMEOUT, decode
from tests.e2e.conftest import Server, runserver_command, server_env, start_server

pytestmark = pytest.mark.e2e

LIMIT = 5
ATTEMPTS = 8
TOO_MANY_CONNECTIONS = 4429

COMMANDS: dict[str, Callable[[int], list[str]]] = {
    "uvicorn": lambda port: service_command("uvicorn", port, quiet=False),
    "daphne": lambda port: service_command("daphne", port),
    "runserver": runserver_command,
}


@pytest.fixture(scope="module", params=sorted(COMMANDS))
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Server:
    name = str(request.param)
    tmp = tmp_path_factory.mktemp(f"xff-{name}")
    env = server_env(tmp)
    env.update(
        RATE_LIMIT_MAX_REQUESTS=str(LIMIT),
        RATE_LIMIT_WINDOW_SECONDS="600",
        PRESENCE_METRICS_ALLOWED_NETWORKS="10.0.0.0/8",
        TRUSTED_PROXIES="",
    )
    started = start_server(f"{name}-xff", tmp, COMMANDS[name], env)
    request.addfinalizer(started.stop)
    return started


async def attempt(server: Server, user: str, forwarded_for: str) -> str:
    """One connection attempt claiming ``forwarded_for``: "accepted" or the close code."""
    query = urlencode({"user_id": user})
    async with connect(
        f"{server.ws_url}/ws/xff?{query}",
        additional_headers={"X-Forwarded-For": forwarded_for},
        proxy=None,
        open_timeout=RECEIVE_TIMEOUT,
        compression=None,
    ) as ws:
        try:
            first = decode(await ws.recv())
        except ConnectionClosed as closed:
            return str(closed.rcvd.code if closed.rcvd else 1006)
        if first.WhichOneof("payload") == "server_hello":
            return "accepted"
        assert first.error.code == pb.Error.RATE_LIMITED, first
        try:
            await ws.recv()
        except ConnectionClosed as closed:
            return str(closed.rcvd.code if closed.rcvd else 1006)
        raise AssertionError("refused without a close")


async def test_forged_addresses_do_not_escape_the_per_ip_connection_limit(server: Server) -> None:
    outcomes = [await attempt(server, f"u{i}", f"203.0.113.{i + 1}") for i in range(ATTEMPTS)]

    assert outcomes == ["accepted"] * LIMIT + [str(TOO_MANY_CONNECTIONS)] * (ATTEMPTS - LIMIT)


def status_of(url: str, forwarded_for: str) -> int:
    request = urllib.request.Request(url, headers={"X-Forwarded-For": forwarded_for})
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(request, timeout=RECEIVE_TIMEOUT) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return error.code


@pytest.mark.parametrize("path", ["/metrics", "/metrics/report"])
def test_a_forged_internal_address_does_not_open_the_metrics(server: Server, path: str) -> None:
    assert status_of(f"{server.http_url}{path}", "10.1.2.3") == 403
