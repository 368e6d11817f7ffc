"""``make bench`` measures what ``make run`` serves, and ``--quick`` stays short."""

from __future__ import annotations

import re
from pathlib import Path

from bench.run import make_plan, parse_args
from bench.servers import service_command

ROOT = Path(__file__).resolve().parents[3]
MAKEFILE = (ROOT / "Makefile").read_text()


def make_variable(name: str) -> str:
    match = re.search(rf"(?m)^{name}\s*:?=\s*(.*)$", MAKEFILE)
    assert match, f"the Makefile sets no {name}"
    return match.group(1).strip()


def make_run_server() -> str:
    """The program ``make run``'s recipe starts (``uvicorn``, ``daphne``, ...)."""
    recipe = re.search(r"(?m)^run:.*\n\t(.*)$", MAKEFILE)
    assert recipe, "no run target"
    program = recipe.group(1).split()[0]
    return program.rsplit("/", 1)[-1]


def test_the_default_server_is_the_one_make_run_serves() -> None:
    assert make_run_server() == "uvicorn"
    assert parse_args([]).server == make_run_server()


def test_the_benchmarked_uvicorn_has_make_runs_websocket_options() -> None:
    command = " ".join(service_command("uvicorn", 9999))
    options = make_variable("UVICORN_WS")
    assert options and options in command


def test_quick_runs_one_small_scenario_per_target() -> None:
    full, quick = make_plan(parse_args([])), make_plan(parse_args(["--quick"]))
    assert quick.quick and not full.quick
    assert quick.duration < full.duration and quick.warmup < full.warmup
    assert quick.idle < full.idle and quick.connects < full.connects
