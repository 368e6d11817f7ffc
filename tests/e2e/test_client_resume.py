"""Resume scenarios for the clients (PROTOCOL.md section 6) against a live server.

They need the server side of issue 11 (branch i11-resume: resume with
session_id + last_seq, replay, message_id dedup, grace). Until it is on main
they are expected to fail: ``strict=True`` turns their first pass into a
failure, the signal to drop the mark.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from tests.e2e.conftest import Server, server_env, start_server, uvicorn_command
from tests.e2e.jsnode import create_user, ensure_node_modules, js_env, report, run_node_tests

NEEDS_ISSUE_11 = pytest.mark.xfail(
    reason="needs the server side of issue 11 (resume, replay, message_id dedup)", strict=True
)
pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def resume_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """uvicorn in development mode with the in-process layer."""
    tmp = tmp_path_factory.mktemp("resume")
    server = start_server("uvicorn-resume", tmp, uvicorn_command, server_env(tmp))
    yield server
    server.stop()


@NEEDS_ISSUE_11
def test_js_client_resume_scenarios(resume_server: Server) -> None:
    ensure_node_modules()
    username, password = "resumer", f"pw-{uuid.uuid4().hex}"
    create_user(resume_server, username, password)
    done = run_node_tests(["resume.test.js"], js_env(resume_server, username, password))
    assert done.returncode == 0, report(done)
