"""A bad environment value stops start-up with one clear line, no traceback, exit status 1.

``manage.py check`` and the shipped uvicorn command line run as subprocesses
with one bad value each; standard error must name the variable and the rule.
"""

from __future__ import annotations

import secrets
import subprocess
import sys
from pathlib import Path

import pytest

from bench.servers import service_command
from tests.conftest import free_port
from tests.e2e.conftest import PROJECT, server_env

pytestmark = pytest.mark.e2e

STRONG_KEY = secrets.token_urlsafe(50)

# (environment, words the one line must contain)
BAD_VALUES = {
    "number": ({"PRESENCE_TICK_HZ": "fast"}, ["PRESENCE_TICK_HZ", "must be a number"]),
    "boolean": ({"PRESENCE_DEV_AUTH": "maybe"}, ["PRESENCE_DEV_AUTH", "must be a boolean"]),
    "network": ({"TRUSTED_PROXIES": "nginx"}, ["TRUSTED_PROXIES", "IP addresses or networks"]),
    "choice": ({"LOG_LEVEL": "loud"}, ["LOG_LEVEL", "one of DEBUG, INFO"]),
    "lease": (
        {"PRESENCE_REGISTRY_HEARTBEAT_SECONDS": "20"},
        ["PRESENCE_REGISTRY_HEARTBEAT_SECONDS", "shorter than PRESENCE_REGISTRY_LEASE_SECONDS"],
    ),
    "missing secret": (
        {"DEBUG": "false", "SECRET_KEY": ""},
        ["SECRET_KEY is empty", "at least 50 characters"],
    ),
    "placeholder secret": (
        {"DEBUG": "false", "SECRET_KEY": "change-me-in-production"},
        ["SECRET_KEY contains the placeholder word 'change-me'", "at least 50 characters"],
    ),
    "redis url": (
        {"REDIS_URL": "http://user:hunter2-secret@redis:6379/0"},
        ["REDIS_URL must start with redis://"],
    ),
}


def run(command: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command, cwd=PROJECT, env=env, capture_output=True, text=True, timeout=60, check=False
    )


def environment(tmp_path: Path, values: dict[str, str]) -> dict[str, str]:
    return {**server_env(tmp_path), **values}


def assert_one_clear_line(done: subprocess.CompletedProcess[str], words: list[str]) -> None:
    output = done.stdout + done.stderr
    assert done.returncode != 0
    assert "Traceback" not in output, output
    lines = [line for line in done.stderr.splitlines() if line.startswith("configuration error:")]
    assert len(lines) == 1, output
    for word in words:
        assert word in lines[0], lines[0]


@pytest.mark.parametrize("case", sorted(BAD_VALUES))
def test_manage_py_check_refuses_a_bad_value_in_one_line(tmp_path: Path, case: str) -> None:
    values, words = BAD_VALUES[case]

    done = run([sys.executable, "manage.py", "check"], environment(tmp_path, values))

    assert_one_clear_line(done, words)
    assert done.stderr.count("\n") == 1, done.stderr  # nothing else on standard error
    for secret in ("change-me-in-production", "hunter2-secret"):
        assert secret not in done.stderr


def test_a_strong_secret_key_passes_the_check_with_debug_off(tmp_path: Path) -> None:
    env = environment(tmp_path, {"DEBUG": "false", "SECRET_KEY": STRONG_KEY})

    done = run([sys.executable, "manage.py", "check"], env)

    assert done.returncode == 0, done.stderr
    assert STRONG_KEY not in done.stdout + done.stderr


@pytest.mark.parametrize("server", ["uvicorn", "daphne"])
def test_the_shipped_servers_refuse_a_bad_value_in_one_line(tmp_path: Path, server: str) -> None:
    values, words = BAD_VALUES["number"]

    done = run(service_command(server, free_port(), quiet=False), environment(tmp_path, values))

    assert_one_clear_line(done, words)
