"""The JavaScript client (presence/static/presence/client.js) in Node 20+.

``tests/js/unit.test.js`` runs on a fake socket and clock; ``live.test.js``
against a uvicorn process started here (as ``make run`` serves), with a
Django user for the token scenarios. Each Node file is one pytest test; its
output is in the failure message.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from tests.e2e.conftest import Server, serving
from tests.e2e.jsnode import (
    assert_all_passed,
    create_user,
    ensure_node_modules,
    js_env,
    report,
    run_node_tests,
)

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def node_modules() -> None:
    """tests/js's pinned packages (protobufjs, ws), installed by ``npm ci`` if missing."""
    ensure_node_modules()


@pytest.fixture(scope="module")
def js_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """uvicorn in development mode (bare user ids) with the in-process layer."""
    with serving(tmp_path_factory, "uvicorn-js") as server:
        yield server


@pytest.fixture(scope="module")
def js_user(js_server: Server) -> dict[str, str]:
    """A plain user of the server and the variables tests/js/helpers.js reads."""
    username, password = "jsclient", f"pw-{uuid.uuid4().hex}"
    create_user(js_server, username, password)
    return js_env(js_server, username, password)


def test_js_client_unit_scenarios(node_modules: None) -> None:
    done = run_node_tests(["unit.test.js"], {})
    assert done.returncode == 0, report(done)
    assert_all_passed(done)


def test_js_client_live_scenarios(node_modules: None, js_user: dict[str, str]) -> None:
    done = run_node_tests(["live.test.js"], js_user)
    assert done.returncode == 0, report(done)
    assert_all_passed(done)
