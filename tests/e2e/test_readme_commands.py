"""The README's command for a plain (non-staff) user, run as a reader would run it."""

from __future__ import annotations

import contextlib
import re
import shlex
import sqlite3
import subprocess
from pathlib import Path

import pytest
from django.contrib.auth.hashers import check_password

from tests.e2e.conftest import PROJECT, PYTHON, migrate, server_env

pytestmark = pytest.mark.e2e

README = (PROJECT / "README.md").read_text(encoding="utf-8")


def documented_command(marker: str) -> list[str]:
    """The one command line of a ``sh`` block in the README that contains ``marker``."""
    lines = [
        line
        for block in re.findall(r"```sh\n(.*?)```", README, re.S)
        for line in block.splitlines()
        if marker in line
    ]
    assert len(lines) == 1, f"README has {len(lines)} command lines with {marker!r}"
    return shlex.split(lines[0])


def test_the_documented_plain_user_command_creates_a_user_who_is_not_staff(
    tmp_path: Path,
) -> None:
    argv = documented_command("create_user(")
    assert argv[:2] == [".venv/bin/python", "manage.py"]
    env = server_env(tmp_path)
    migrate(env)
    password = "correct-horse-battery-7"

    done = subprocess.run(
        [str(PYTHON), *argv[1:]],
        cwd=PROJECT,
        env=env,
        input=password + "\n",  # what the reader types at the prompt
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert done.returncode == 0, done.stderr
    with contextlib.closing(sqlite3.connect(tmp_path / "db.sqlite3")) as db:
        rows = db.execute(
            "SELECT username, password, is_staff, is_superuser, is_active FROM auth_user"
        ).fetchall()
    [(username, encoded, is_staff, is_superuser, is_active)] = rows
    assert (username, is_staff, is_superuser, is_active) == ("alice", 0, 0, 1)
    assert check_password(password, encoded)
    assert password not in done.stdout + done.stderr
