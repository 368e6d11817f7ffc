"""No credential reaches a server's log: every server command line the project ships.

Each server is started exactly as shipped (``bench.servers.service_command``,
which tests/unit/test_server_commands.py ties to the Makefile and the
Dockerfile, and ``manage.py runserver``), with its access log on. A client
connects with recognisable secrets in the query string, over a WebSocket
and over plain HTTP; the server's whole log is then read back.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlencode

import pytest

from bench.servers import service_command
from presence.redact import REDACTED
from tests.clients.live import ClientPool, eventually, expect_close, http_get
from tests.e2e.conftest import Server, runserver_command, server_env, start_server

pytestmark = pytest.mark.e2e

UNAUTHORIZED = 4401


def uvicorn_as_make_run(port: int) -> list[str]:
    """``make run``'s uvicorn, access log and INFO lines on (the benchmark turns them off)."""
    return service_command("uvicorn", port, quiet=False)


def daphne_as_make_run_daphne(port: int) -> list[str]:
    return service_command("daphne", port)


COMMANDS: dict[str, Callable[[int], list[str]]] = {
    "uvicorn": uvicorn_as_make_run,
    "daphne": daphne_as_make_run_daphne,
    "runserver": runserver_command,
}


@pytest.fixture(scope="module", params=sorted(COMMANDS))
def logging_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Server:
    name = str(request.param)
    tmp = tmp_path_factory.mktemp(f"redaction-{name}")
    server = start_server(f"{name}-logs", tmp, COMMANDS[name], server_env(tmp))
    request.addfinalizer(server.stop)
    return server


def log_with(path: Path, needle: str) -> str | None:
    """The log's whole text once it contains ``needle``."""
    text = path.read_text(errors="replace")
    return text if needle in text else None


async def test_secrets_in_the_query_never_reach_the_server_log(
    logging_server: Server, clients: ClientPool
) -> None:
    token = f"e2e-secret-token-{uuid.uuid4().hex}"
    session = f"e2e-secret-session-{uuid.uuid4().hex}"
    password = f"e2e-secret-password-{uuid.uuid4().hex}"
    query = urlencode({"auth_token": token, "session_id": session, "format": "proto"})

    socket = await clients.open(f"{logging_server.ws_url}/ws/redaction?{query}")
    await expect_close(socket, UNAUTHORIZED, timeout=5)  # not a real token
    status, _, _ = http_get(
        f"{logging_server.http_url}/health?{query}&password={password}&token={token}"
    )
    assert status == 200

    # The HTTP request line is the last one a server writes for these requests.
    text = await eventually(lambda: log_with(logging_server.log_path, "/health?"))
    assert token not in text
    assert session not in text
    assert password not in text
    assert f"auth_token={REDACTED}" in text
    assert f"password={REDACTED}" in text
