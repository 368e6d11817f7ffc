"""The request head deadline: one default for both servers' guards, read from the environment.

The guards themselves are tested against real servers:
tests/integration/transport/test_uvicorn_http_head.py (uvicorn) and
tests/e2e/test_daphne_http_head.py (daphne, ``make run-daphne`` and runserver).
"""

from __future__ import annotations

import pytest

from graphwiz.envparse import EnvError
from presence.conf import build
from presence.transport.http_head import HEAD_TIMEOUT_SECONDS, REQUEST_TIMEOUT
from tests.unit.test_settings_secrets import load_settings

VARIABLE = "PRESENCE_HTTP_HEAD_TIMEOUT_SECONDS"


def test_the_deadline_defaults_to_the_shared_ten_seconds(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(VARIABLE, raising=False)

    from_env = load_settings(monkeypatch)["PRESENCE"]["HTTP_HEAD_TIMEOUT_SECONDS"]

    assert HEAD_TIMEOUT_SECONDS == 10.0
    assert from_env == build({}).HTTP_HEAD_TIMEOUT_SECONDS == HEAD_TIMEOUT_SECONDS


def test_the_deadline_is_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    loaded = load_settings(monkeypatch, **{VARIABLE: "0.5"})

    assert build(loaded["PRESENCE"]).HTTP_HEAD_TIMEOUT_SECONDS == 0.5


@pytest.mark.parametrize("raw", ["0", "-1", "ten", "inf"])
def test_a_deadline_that_is_not_a_positive_number_is_refused_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, raw: str
) -> None:
    with pytest.raises(EnvError) as refused:
        load_settings(monkeypatch, **{VARIABLE: raw})

    assert VARIABLE in str(refused.value)


def test_the_408_says_what_was_wrong_and_closes() -> None:
    head, _, body = REQUEST_TIMEOUT.partition(b"\r\n\r\n")

    assert head.startswith(b"HTTP/1.1 408 Request Timeout\r\n")
    assert b"connection: close" in head
    assert f"content-length: {len(body)}".encode() in head
    assert b"send the whole request head" in body
