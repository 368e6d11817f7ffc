"""What a refused or waiting handshake is told: exact texts, one row per mistake.

Each text says what was wrong and how to fix it (the rule, the setting, the
message to send); the close code is PROTOCOL.md section 7's.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.conf import settings as django_settings
from google.protobuf import json_format

from presence.protocol import pb
from presence.protocol.codes import CloseCode, ErrorCode
from tests.clients.communicator import ProtocolClient

pytestmark = pytest.mark.django_db(transaction=True)

ROOM = "texts"
ORIGIN_HELP = (
    "not allowed: the server accepts origins whose host is in ALLOWED_HOSTS "
    "or that are listed in PRESENCE_ALLOWED_ORIGINS"
)
REFUSALS: list[tuple[str, dict[str, Any], dict[str, object], int, str, int]] = [
    (
        "/ws/a*b?user_id=u",
        {},
        {},
        ErrorCode.BAD_MESSAGE,
        "invalid room id: use 1-64 characters of [A-Za-z0-9._-]",
        CloseCode.BAD_REQUEST,
    ),
    (
        f"/ws/{'r' * 65}?user_id=u",
        {},
        {},
        ErrorCode.BAD_MESSAGE,
        "invalid room id: use 1-64 characters of [A-Za-z0-9._-]",
        CloseCode.BAD_REQUEST,
    ),
    (
        f"/ws/{ROOM}?user_id=u",
        {"headers": [(b"origin", b"https://evil.example")]},
        {},
        ErrorCode.FORBIDDEN,
        f"origin 'https://evil.example' {ORIGIN_HELP}",
        CloseCode.FORBIDDEN,
    ),
    (
        f"/ws/{ROOM}?user_id=u",
        {"headers": [(b"origin", b"https://" + b"e" * 200)]},
        {},
        ErrorCode.FORBIDDEN,
        f"origin '{'https://' + 'e' * 56}...' {ORIGIN_HELP}",
        CloseCode.FORBIDDEN,
    ),
    (
        f"/ws/{ROOM}?user_id=u",
        {},
        {"ALLOW_MISSING_ORIGIN": False},
        ErrorCode.FORBIDDEN,
        "an Origin header is required: PRESENCE_ALLOW_MISSING_ORIGIN is off on this server",
        CloseCode.FORBIDDEN,
    ),
    (
        f"/ws/{ROOM}?user_id=u&format=xml",
        {},
        {},
        ErrorCode.BAD_MESSAGE,
        'format must be proto or json, got "xml"',
        CloseCode.BAD_REQUEST,
    ),
    (
        f"/ws/{ROOM}?user_id={'u' * 129}",
        {},
        {},
        ErrorCode.BAD_MESSAGE,
        "user_id must be 1-128 printable characters",
        CloseCode.BAD_REQUEST,
    ),
    (
        f"/ws/{ROOM}?user_id=u",
        {},
        {"DEV_AUTH": False},
        ErrorCode.UNAUTHORIZED,
        "development mode is off: user_id alone is not accepted; send an access token "
        "as auth_token (in the URL or the first ClientHello)",
        CloseCode.UNAUTHORIZED,
    ),
    (
        f"/ws/{ROOM}?" + "&".join(f"p{i}=1" for i in range(17)),
        {},
        {},
        ErrorCode.BAD_MESSAGE,
        "too many query parameters: at most 16",
        CloseCode.BAD_REQUEST,
    ),
]


@pytest.fixture
def presence_conf(settings: Any) -> Callable[..., None]:
    """Override PRESENCE settings for one test (a short credentials deadline)."""

    def override(**values: object) -> None:
        settings.PRESENCE = {**django_settings.PRESENCE, **values}

    override(AUTH_TIMEOUT_SECONDS=0.3, DEV_AUTH=True, REDIS_URL="")
    return override


@pytest.mark.parametrize(
    ("path", "client_args", "conf", "code", "text", "close"),
    REFUSALS,
    ids=[text[:40] for _, _, _, _, text, _ in REFUSALS],
)
async def test_refused_handshake_is_told_how_to_fix_it(
    presence_conf: Callable[..., None],
    path: str,
    client_args: dict[str, Any],
    conf: dict[str, object],
    code: int,
    text: str,
    close: int,
) -> None:
    presence_conf(**conf)
    client = ProtocolClient(path, **client_args)
    accepted, _ = await client.open()
    assert accepted  # refusals are an Error and a close code a browser can read

    error = (await client.recv()).error

    assert (error.code, error.message) == (code, text)
    assert await client.expect_close() == close


@pytest.mark.parametrize(
    ("offered", "json"), [("graphwiz.json.v2", True), ("graphwiz.proto.v2", False)]
)
async def test_only_unknown_graphwiz_subprotocols_hear_the_supported_ones(
    presence_conf: Callable[..., None], offered: str, json: bool
) -> None:
    client = ProtocolClient(f"/ws/{ROOM}?user_id=u", subprotocols=[offered], json=json)
    accepted, subprotocol = await client.open()
    # Selecting the client's own offer lets a browser finish the handshake and read why.
    assert (accepted, subprotocol) == (True, offered)

    event = await client.recv_frame()

    assert ("text" if json else "bytes") in event and event.get("text" if json else "bytes")
    error = pb.Message()
    if json:
        json_format.Parse(event["text"], error)
    else:
        error.ParseFromString(event["bytes"])
    assert error.error.message == (
        f'unsupported subprotocol "{offered}": this server speaks graphwiz.proto.v1 '
        "(binary protobuf) and graphwiz.json.v1 (proto3 JSON)"
    )
    assert await client.expect_close() == CloseCode.BAD_REQUEST


async def test_format_in_capitals_joins_in_json(presence_conf: Callable[..., None]) -> None:
    client = ProtocolClient(f"/ws/{ROOM}?user_id=u&format=JSON", json=True)
    accepted, _ = await client.open()
    assert accepted

    event = await client.recv_frame()

    assert '"serverHello"' in event["text"]
    await client.close()


async def test_no_credentials_in_development_mode_hears_what_to_send_at_once(
    presence_conf: Callable[..., None],
) -> None:
    client = ProtocolClient(f"/ws/{ROOM}")
    accepted, _ = await client.open()
    assert accepted

    notice = (await client.recv()).error
    assert (notice.code, notice.message) == (
        ErrorCode.UNAUTHORIZED,
        "no credentials yet: send a ClientHello with auth_token within 0.3 s, "
        "or reconnect with user_id in the URL (development mode)",
    )
    late = (await client.recv()).error  # then the deadline, as before
    assert late.message == (
        "no credentials within 0.3 s: send a ClientHello with auth_token "
        "or user_id in the URL (development mode)"
    )
    assert await client.expect_close() == CloseCode.AUTH_TIMEOUT


async def test_no_credentials_outside_development_mode_waits_for_the_token_quietly(
    presence_conf: Callable[..., None],
) -> None:
    presence_conf(DEV_AUTH=False)
    client = ProtocolClient(f"/ws/{ROOM}")
    await client.open()

    late = (await client.recv()).error  # nothing before the deadline

    assert late.message == "no credentials within 0.3 s: send a ClientHello with auth_token"
    assert await client.expect_close() == CloseCode.AUTH_TIMEOUT


async def test_client_hello_without_token_on_a_socket_without_credentials(
    presence_conf: Callable[..., None],
) -> None:
    presence_conf(DEV_AUTH=False)
    client = ProtocolClient(f"/ws/{ROOM}")
    await client.open()
    await client.send(pb.Message(client_hello=pb.ClientHello(display_name="Al")))

    error = (await client.recv()).error

    assert (error.code, error.message) == (
        ErrorCode.UNAUTHORIZED,
        "this socket came without credentials: its first ClientHello must carry auth_token",
    )
    assert await client.expect_close() == CloseCode.UNAUTHORIZED
