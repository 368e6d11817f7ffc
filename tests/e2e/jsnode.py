"""Running the JavaScript client's Node tests from pytest.

``npm ci`` installs tests/js's pinned packages (package-lock.json) the first
time; the Makefile's ``js`` target does the same for ``make test``.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import jwt
from django.conf import settings

from tests.clients.live import obtain_token
from tests.e2e.conftest import PROJECT, Server, manage, server_env

JS_DIR = PROJECT / "tests" / "js"
NODE_TEST_SECONDS = 240.0
MIN_NODE_MAJOR = 20


def node_binary() -> str:
    """The ``node`` executable (20+), or an AssertionError naming what to install."""
    node = shutil.which("node")
    assert node, "node is not installed: apt-get install nodejs (Node 20+)"
    version = subprocess.run([node, "--version"], capture_output=True, text=True, check=True)
    major = int(version.stdout.strip().lstrip("v").split(".")[0])
    assert major >= MIN_NODE_MAJOR, f"Node {MIN_NODE_MAJOR}+ is needed, found {version.stdout}"
    return node


def ensure_node_modules() -> None:
    """``npm ci`` in tests/js when its pinned packages are not installed yet."""
    if (JS_DIR / "node_modules" / "ws" / "package.json").exists():
        return
    npm = shutil.which("npm")
    assert npm, "npm is not installed: apt-get install npm"
    done = subprocess.run(
        [npm, "ci", "--no-audit", "--no-fund"],
        cwd=JS_DIR,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, f"npm ci in tests/js failed:\n{done.stdout}\n{done.stderr}"


def run_node_tests(files: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """``node --test FILES`` in tests/js with ``env`` added; its output is returned."""
    return subprocess.run(
        [node_binary(), "--test", "--test-reporter=spec", *files],
        cwd=JS_DIR,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=NODE_TEST_SECONDS,
        check=False,
    )


def create_user(server: Server, username: str, password: str) -> None:
    """A plain (non-staff) Django user in ``server``'s database."""
    env = server_env(server.sqlite_path.parent)
    env["SQLITE_PATH"] = str(server.sqlite_path)
    code = (
        "from django.contrib.auth import get_user_model; "
        f"get_user_model().objects.create_user({username!r}, password={password!r})"
    )
    manage("shell", "-c", code, env=env)


def expired_token(server: Server, username: str, password: str) -> str:
    """A real access token of the user, re-signed with its expiry an hour ago."""
    token = obtain_token(server.http_url, username, password)
    key = settings.SIMPLE_JWT["SIGNING_KEY"]
    claims = jwt.decode(token, key, algorithms=["HS256"])
    claims["exp"] = int(time.time()) - 3600
    return jwt.encode(claims, key, algorithm="HS256")


def js_env(server: Server, username: str, password: str) -> dict[str, str]:
    """What tests/js/helpers.js reads: the server's URL and the user's credentials."""
    return {
        "PRESENCE_HTTP_URL": server.http_url,
        "PRESENCE_USERNAME": username,
        "PRESENCE_PASSWORD": password,
        "PRESENCE_EXPIRED_TOKEN": expired_token(server, username, password),
    }


def assert_all_passed(done: subprocess.CompletedProcess[str]) -> None:
    """Node exited 0, ran at least one test and none failed (its closing summary)."""
    assert done.returncode == 0, report(done)
    passed = re.search(r"\bpass (\d+)", done.stdout)
    assert passed and int(passed.group(1)) > 0, report(done)
    assert re.search(r"\bfail 0\b", done.stdout), report(done)


def report(done: subprocess.CompletedProcess[str]) -> str:
    """Node's output for an assertion message."""
    return f"node --test exited {done.returncode}\n{done.stdout[-12000:]}\n{done.stderr[-4000:]}"


__all__ = [
    "JS_DIR",
    "Path",
    "create_user",
    "ensure_node_modules",
    "js_env",
    "report",
    "run_node_tests",
]
