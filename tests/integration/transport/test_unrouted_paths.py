"""A WebSocket upgrade to a path with no endpoint, through the whole ASGI application.

``graphwiz.asgi.application`` as the servers run it: the attempt is refused
with an ``Error`` naming ``/ws/{room_id}`` and close 4400 (never an HTTP 500
with a traceback), counted in ``presence_connections_total{outcome=
"refused_path"}``, and counted against the per-IP connection-attempt limit.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from channels.testing import WebsocketCommunicator
from django.conf import settings as django_settings
from django.test import AsyncClient
from google.protobuf import json_format
from prometheus_client.parser import text_string_to_metric_families

from graphwiz.asgi import application
from presence.protocol import pb
from presence.protocol.codes import CloseCode, ErrorCode

pytestmark = pytest.mark.django_db(transaction=True)

TIMEOUT = 5.0


@pytest.fixture
def presence_conf(settings: Any) -> Callable[..., None]:
    def override(**values: object) -> None:
        settings.PRESENCE = {**django_settings.PRESENCE, **values}

    override(REDIS_URL="")
    return override


@pytest.fixture
def errors_logged() -> Iterator[list[logging.LogRecord]]:
    """ERROR records of any logger (channels, daphne, django, presence) during the test."""
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    handler = Keep(level=logging.ERROR)
    loggers = [logging.getLogger(), logging.getLogger("presence")]
    for logger in loggers:
        logger.addHandler(handler)
    yield records
    for logger in loggers:
        logger.removeHandler(handler)


async def refused_paths_counted() -> float:
    response = await AsyncClient().get("/metrics")
    for family in text_string_to_metric_families(response.content.decode()):
        for sample in family.samples:
            if sample.name == "presence_connections_total" and sample.labels == {
                "outcome": "refused_path"
            }:
                return sample.value
    return 0.0


async def attempt(path: str, subprotocols: list[str] | None = None) -> tuple[Any, pb.Message, int]:
    """Open ``path`` through the ASGI application: (subprotocol, the Error, the close code)."""
    communicator = WebsocketCommunicator(application, path, subprotocols=subprotocols)
    accepted, subprotocol = await communicator.connect(timeout=TIMEOUT)
    assert accepted, "refused with an HTTP status a browser cannot read"
    frame = await communicator.receive_output(timeout=TIMEOUT)
    message = pb.Message()
    if frame.get("bytes") is not None:
        message.ParseFromString(frame["bytes"])
    else:
        json_format.Parse(frame["text"], message)
    close = await communicator.receive_output(timeout=TIMEOUT)
    assert close["type"] == "websocket.close"
    await communicator.disconnect()
    return subprotocol, message, int(close["code"])


@pytest.mark.parametrize("path", ["/ws", "/", "/socket.io/?EIO=4&transport=websocket", "/wss/x"])
async def test_an_unrouted_path_is_told_the_endpoint_and_closed_4400(
    presence_conf: Callable[..., None], errors_logged: list[logging.LogRecord], path: str
) -> None:
    before = await refused_paths_counted()

    _, message, close = await attempt(path)

    shown = path.split("?")[0]
    assert (message.error.code, message.error.message) == (
        ErrorCode.BAD_MESSAGE,
        f"no WebSocket endpoint at {shown!r}: connect to /ws/{{room_id}} "
        "(a room id is 1-64 characters of [A-Za-z0-9._-])",
    )
    assert close == CloseCode.BAD_REQUEST
    assert await refused_paths_counted() == before + 1
    assert errors_logged == []


async def test_an_unrouted_path_answers_in_the_offered_encoding(
    presence_conf: Callable[..., None],
) -> None:
    subprotocol, message, close = await attempt("/ws", subprotocols=["graphwiz.json.v1"])

    assert subprotocol == "graphwiz.json.v1"
    assert message.error.message.startswith("no WebSocket endpoint at '/ws'")
    assert close == CloseCode.BAD_REQUEST


async def test_a_long_unrouted_path_is_cut_in_the_error(
    presence_conf: Callable[..., None],
) -> None:
    _, message, _ = await attempt("/" + "x" * 500)

    assert f"'/{'x' * 63}...'" in message.error.message
    assert "x" * 64 not in message.error.message


async def test_unrouted_attempts_count_against_the_per_ip_attempt_limit(
    presence_conf: Callable[..., None],
) -> None:
    presence_conf(RATE_LIMIT_MAX_REQUESTS=2, RATE_LIMIT_WINDOW_SECONDS=60.0)

    codes = [(await attempt("/socket.io/"))[2] for _ in range(2)]
    _, over, close = await attempt("/socket.io/")

    assert codes == [CloseCode.BAD_REQUEST] * 2
    assert (over.error.code, close) == (ErrorCode.RATE_LIMITED, CloseCode.TOO_MANY_CONNECTIONS)
    assert over.error.retry_after_ms > 0


async def test_bad_room_ids_count_against_the_per_ip_attempt_limit_too(
    presence_conf: Callable[..., None],
) -> None:
    presence_conf(RATE_LIMIT_MAX_REQUESTS=1, RATE_LIMIT_WINDOW_SECONDS=60.0)

    _, first, _ = await attempt("/ws/bad!room?user_id=u")
    _, second, close = await attempt("/ws/bad!room?user_id=u")

    assert first.error.code == ErrorCode.BAD_MESSAGE
    assert (second.error.code, close) == (ErrorCode.RATE_LIMITED, CloseCode.TOO_MANY_CONNECTIONS)
