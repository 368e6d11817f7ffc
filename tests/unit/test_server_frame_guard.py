"""Every server command line the project ships serves with the WebSocket frame guard.

(How the same command lines agree with each other: ``test_server_commands.py``.)

uvicorn is told its protocol class on the command line; daphne (and Django's
``runserver``, which is daphne's) gets it from ``graphwiz.asgi``. The end-to-end
tests in ``tests/e2e/test_wire_limits.py`` attack the servers these commands
start; this checks, without starting anything, that no command line was missed.
"""

from __future__ import annotations

import json
import shlex
import subprocess
from pathlib import Path

import pytest
import yaml
from daphne.ws_protocol import WebSocketFactory
from django.conf import settings
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

from bench.servers import service_command
from presence.transport import daphne_ws
from presence.transport.uvicorn_ws import GuardedWebSocketProtocol

ROOT = Path(__file__).resolve().parents[2]
GUARD = "presence.transport.uvicorn_ws:GuardedWebSocketProtocol"
APPLICATION = "graphwiz.asgi:application"


def make_line(target: str) -> list[str]:
    """The server command of ``make -n <target>`` (its last line)."""
    done = subprocess.run(
        ["make", "--no-print-directory", "-n", target],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    return shlex.split(done.stdout.strip().splitlines()[-1])


def dockerfile_cmd() -> list[str]:
    text = (ROOT / "Dockerfile").read_text(encoding="utf-8").replace("\\\n", " ")
    [line] = [ln for ln in text.splitlines() if ln.startswith("CMD ")]
    command: list[str] = json.loads(line.removeprefix("CMD "))
    return command


def option(argv: list[str], name: str) -> str:
    return argv[argv.index(name) + 1]


UVICORN_LINES = {
    "make run": lambda: make_line("run"),
    "Dockerfile CMD": dockerfile_cmd,
    "bench/servers.py": lambda: service_command("uvicorn", 8083),
}
DAPHNE_LINES = {
    "make run-daphne": lambda: make_line("run-daphne"),
    "bench/servers.py": lambda: service_command("daphne", 8083),
}


@pytest.mark.parametrize("name", UVICORN_LINES)
def test_uvicorn_command_lines_serve_with_the_guarded_protocol(name: str) -> None:
    argv = UVICORN_LINES[name]()

    assert Path(argv[0]).name == "uvicorn"
    assert option(argv, "--ws") == GUARD
    assert APPLICATION in argv


@pytest.mark.parametrize("name", DAPHNE_LINES)
def test_daphne_command_lines_load_the_application_that_installs_the_guard(name: str) -> None:
    argv = DAPHNE_LINES[name]()

    # daphne itself, or graphwiz.daphne_cli (daphne with a redacted access log)
    assert Path(argv[0]).name == "daphne" or "graphwiz.daphne_cli" in argv
    assert argv[-1] == APPLICATION


def test_runserver_loads_the_application_that_installs_the_guard() -> None:
    assert make_line("runserver")[1:3] == ["manage.py", "runserver"]
    assert APPLICATION.replace(":", ".") == settings.ASGI_APPLICATION


def test_the_compose_instances_run_the_image_command() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text(encoding="utf-8"))
    instances = [s for n, s in compose["services"].items() if n.startswith("presence-")]

    assert instances and all("command" not in s for s in instances)


def test_the_uvicorn_guard_is_uvicorns_websockets_sansio_protocol() -> None:
    assert issubclass(GuardedWebSocketProtocol, WebSocketsSansIOProtocol)


def test_loading_the_application_installs_the_daphne_guard() -> None:
    import graphwiz.asgi  # noqa: F401  (the servers load it before building their factory)

    assert WebSocketFactory.protocol is daphne_ws.GuardedWebSocketProtocol
