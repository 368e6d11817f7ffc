"""Every server command line the project ships, read from the files that ship it.

The Makefile (``run``, ``run-daphne``, ``runserver``), the Dockerfile's CMD
(which docker-compose.yml runs) and ``bench.servers.service_command`` (the
benchmark and the end-to-end tests) must start the same servers the same
way, so that what the end-to-end tests prove of one holds for all.
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest
import yaml

from bench.servers import BIN, HOST, service_command

ROOT = Path(__file__).resolve().parents[2]
PORT = 8083


def makefile_variables(text: str) -> dict[str, str]:
    """``NAME := value`` and ``NAME ?= value`` definitions of the Makefile."""
    found = re.findall(r"(?m)^([A-Z_]+)\s*[:?]?=\s*(.*)$", text)
    return {name: value.strip() for name, value in found}


def expand(words: str, variables: dict[str, str]) -> str:
    """``$(NAME)`` references expanded, recursively."""
    for _ in range(10):
        expanded = re.sub(r"\$\((\w+)\)", lambda m: variables.get(m.group(1), ""), words)
        if expanded == words:
            return expanded
        words = expanded
    raise AssertionError(f"recursive Makefile variable in {words!r}")


def make_recipe(target: str) -> list[str]:
    """The words of ``make TARGET``'s one recipe line, with HOST and PORT as the test's."""
    text = (ROOT / "Makefile").read_text(encoding="utf-8")
    match = re.search(rf"(?m)^{re.escape(target)}:[^\n]*\n((?:\t[^\n]*\n)+)", text)
    assert match, f"no recipe for {target} in the Makefile"
    (line,) = [ln.strip() for ln in match.group(1).splitlines() if ln.strip()]
    variables = {**makefile_variables(text), "HOST": HOST, "PORT": str(PORT), "BIN": str(BIN)}
    return shlex.split(expand(line, variables))


def dockerfile_command() -> list[str]:
    text = (ROOT / "Dockerfile").read_text(encoding="utf-8").replace("\\\n", " ")
    match = re.search(r"(?m)^CMD\s+(.*)$", text)
    assert match
    argv: list[str] = json.loads(match.group(1))
    return argv


def without_program(argv: list[str]) -> list[str]:
    """The options after the program (``uvicorn``, or ``python -m module``)."""
    if Path(argv[0]).name.startswith("python") and argv[1] == "-m":
        return argv[3:]
    return argv[1:]


def uvicorn_lines() -> dict[str, list[str]]:
    return {
        "make run": make_recipe("run"),
        "Dockerfile CMD": dockerfile_command(),
        "bench (quiet)": service_command("uvicorn", PORT),
        "e2e (access log on)": service_command("uvicorn", PORT, quiet=False),
    }


def daphne_lines() -> dict[str, list[str]]:
    return {"make run-daphne": make_recipe("run-daphne"), "bench": service_command("daphne", PORT)}


# --- one command line everywhere -------------------------------------------------


def test_make_run_is_the_uvicorn_line_the_end_to_end_tests_start() -> None:
    assert make_recipe("run") == service_command("uvicorn", PORT, quiet=False)


def test_make_run_daphne_is_the_daphne_line_the_end_to_end_tests_start() -> None:
    make_line = make_recipe("run-daphne")
    bench_line = service_command("daphne", PORT)

    assert without_program(make_line) == without_program(bench_line)
    assert make_line[1:3] == bench_line[1:3] == ["-m", "graphwiz.daphne_cli"]


def test_the_image_runs_make_runs_uvicorn_options() -> None:
    image = without_program(dockerfile_command())
    make_run = without_program(make_recipe("run"))
    # The image listens on all interfaces and bounds its graceful shutdown.
    for option in ("--host", "--port", "--timeout-graceful-shutdown"):
        for argv in (image, make_run):
            if option in argv:
                del argv[argv.index(option) : argv.index(option) + 2]
    assert image == make_run


def test_compose_instances_run_the_images_command() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text(encoding="utf-8"))
    for name in ("presence-a", "presence-b"):
        assert "command" not in compose["services"][name]


def test_make_runserver_is_djangos_runserver() -> None:
    assert make_recipe("runserver")[1:3] == ["manage.py", "runserver"]


# --- credentials never in an access log (issue: tokens in the logs) ------------------


@pytest.mark.parametrize("where", sorted(daphne_lines()))
def test_daphne_is_started_through_the_redacting_entry_point(where: str) -> None:
    # Plain `daphne` writes request paths with their query to its access log.
    argv = daphne_lines()[where]
    assert Path(argv[0]).name != "daphne", f"{where}: {argv}"
    assert argv[1:3] == ["-m", "graphwiz.daphne_cli"], f"{where}: {argv}"


# --- X-Forwarded-For: only TRUSTED_PROXIES decides -----------------------------------


@pytest.mark.parametrize("where", sorted(uvicorn_lines()))
def test_uvicorn_never_rewrites_the_client_address_from_proxy_headers(where: str) -> None:
    # By default uvicorn believes X-Forwarded-For from 127.0.0.1 and rewrites
    # the peer address before the service sees it.
    argv = uvicorn_lines()[where]
    assert "--no-proxy-headers" in argv, f"{where}: {argv}"
    assert "--proxy-headers" not in argv and "--forwarded-allow-ips" not in argv


@pytest.mark.parametrize("where", sorted(daphne_lines()))
def test_daphne_is_not_asked_to_believe_proxy_headers(where: str) -> None:
    argv = daphne_lines()[where]
    assert not [word for word in argv if word.startswith("--proxy-headers")], f"{where}: {argv}"


def test_runserver_is_not_asked_to_believe_proxy_headers() -> None:
    # daphne's runserver passes no forwarded-address header to its server.
    assert not [word for word in make_recipe("runserver") if "proxy" in word]


# --- a request head that never ends does not hold a socket -----------------------------


@pytest.mark.parametrize("where", sorted(uvicorn_lines()))
def test_uvicorn_serves_http_with_the_request_head_deadline(where: str) -> None:
    # uvicorn's own h11 protocol held a silent or half-sent request for ever.
    argv = uvicorn_lines()[where]
    assert "--http" in argv, f"{where}: {argv}"
    assert argv[argv.index("--http") + 1] == (
        "presence.transport.uvicorn_http:GuardedH11Protocol"
    ), f"{where}: {argv}"
