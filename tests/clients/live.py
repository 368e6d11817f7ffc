"""A tiny GraphWiz client over the ``websockets`` package, as a new user would write it.

Binary frames carry a protobuf ``graphwiz.core.Message`` and text frames its
proto3 JSON form (PROTOCOL.md section 2). Every wait has a deadline: a missing
message fails the test in seconds instead of hanging it.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.cookiejar
import json
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from typing import Any, TypeVar
from urllib.parse import urlencode

from google.protobuf import json_format
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed
from websockets.typing import Subprotocol

from presence.protocol import pb

T = TypeVar("T")

RECEIVE_TIMEOUT = 5.0
HTTP_TIMEOUT = 5.0
# What a client reports when the TCP connection is dropped without a close frame.
ABNORMAL_CLOSURE = 1006

# Environment proxies must not reach 127.0.0.1 test servers.
_http = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def http_get(url: str) -> tuple[int, str, str]:
    """GET ``url``; return (status, content type, body text)."""
    try:
        with _http.open(url, timeout=HTTP_TIMEOUT) as response:
            body = response.read().decode("utf-8", "replace")
            return response.status, response.headers.get("Content-Type", ""), body
    except urllib.error.HTTPError as error:
        return error.code, error.headers.get("Content-Type", ""), ""


def http_post_json(url: str, body: object, *, token: str = "") -> tuple[int, str]:
    """POST ``body`` as JSON (with a bearer ``token`` if given); return (status, body text)."""
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(url, data=json.dumps(body).encode(), headers=headers)
    try:
        with _http.open(request, timeout=HTTP_TIMEOUT) as response:
            return response.status, response.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode("utf-8", "replace")


class Client:
    """One WebSocket connection to a room: send and receive ``pb.Message``."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self._hello: pb.ServerHello | None = None

    @classmethod
    async def open(cls, url: str, *, subprotocols: Sequence[str] = ()) -> Client:
        """Connect without reading anything (for refusals and raw frames)."""
        ws = await connect(
            url,
            subprotocols=[Subprotocol(s) for s in subprotocols] or None,
            compression=None,  # a plain client; also keeps frame sizes what the test says
            proxy=None,
            open_timeout=RECEIVE_TIMEOUT,
            close_timeout=RECEIVE_TIMEOUT,
            ping_interval=None,
        )
        return cls(ws)

    @classmethod
    async def join(
        cls,
        ws_url: str,
        room: str,
        user: str,
        *,
        subprotocols: Sequence[str] = (),
        **params: str,
    ) -> Client:
        """Connect to ``room`` as ``user`` and read the ``ServerHello``."""
        query = urlencode({"user_id": user, **params})
        client = await cls.open(f"{ws_url}/ws/{room}?{query}", subprotocols=subprotocols)
        first = await client.recv()
        assert first.WhichOneof("payload") == "server_hello", first
        client._hello = first.server_hello
        return client

    @property
    def hello(self) -> pb.ServerHello:
        """The ``ServerHello`` this client joined with."""
        assert self._hello is not None, "not joined"
        return self._hello

    @property
    def client_id(self) -> str:
        """The id the server assigned in its ``ServerHello``."""
        return self.hello.assigned_client_id

    async def send(self, message: pb.Message) -> None:
        """Send one message as a binary protobuf frame."""
        await self.ws.send(message.SerializeToString())

    async def send_raw(self, frame: bytes | str) -> None:
        """Send a frame as is (binary for bytes, text for str)."""
        await self.ws.send(frame)

    async def recv_frame(self) -> bytes | str:
        """The next frame as received; ``ConnectionClosed`` when the socket closed."""
        return await asyncio.wait_for(self.ws.recv(), RECEIVE_TIMEOUT)

    async def recv(self) -> pb.Message:
        """The next message, decoded from either frame kind."""
        frame = await self.recv_frame()
        message = pb.Message()
        if isinstance(frame, bytes):
            message.ParseFromString(frame)
        else:
            json_format.Parse(frame, message)
        return message

    async def recv_until(
        self, predicate: Callable[[pb.Message], bool], limit: int = 200
    ) -> pb.Message:
        """Skip messages until one matches ``predicate``."""
        for _ in range(limit):
            message = await self.recv()
            if predicate(message):
                return message
        raise AssertionError(f"no matching message in {limit}")

    async def recv_kind(self, kind: str) -> pb.Message:
        """The next message whose payload is ``kind``; others are skipped."""
        return await self.recv_until(lambda m: m.WhichOneof("payload") == kind)

    async def ping(self, marker: int) -> pb.Message:
        """Send a ``Ping`` and return the very next message (expected: its ``Pong``)."""
        await self.send(pb.Message(ping=pb.Ping(client_time_ms=marker)))
        return await self.recv()

    async def expect_close(self) -> tuple[int, list[pb.Message]]:
        """Read until the server closes; return its close code and what came before.

        A connection dropped without a close frame reports 1006, as browsers do.
        """
        before: list[pb.Message] = []
        try:
            for _ in range(200):
                before.append(await self.recv())
        except ConnectionClosed as closed:
            code = closed.rcvd.code if closed.rcvd is not None else ABNORMAL_CLOSURE
            return code, before
        raise AssertionError("the server did not close the connection")

    async def close(self) -> None:
        """Close normally (1000) and wait for the server's answer."""
        await self.ws.close()


def pose(x: float, entity_id: str = "") -> pb.Message:
    """A ``PositionUpdate`` of the sender's avatar (or ``entity_id``) at (x, 0, 0)."""
    return pb.Message(
        position_update=pb.PositionUpdate(
            entity_id=entity_id,
            position=pb.Vector3(x=x, y=0.0, z=0.0),
            rotation=pb.Quaternion(w=1.0),
        )
    )


def chat(text: str, message_id: str = "") -> pb.Message:
    """A ``ChatMessage`` with ``text``."""
    return pb.Message(message_id=message_id, chat_message=pb.ChatMessage(message=text))


class ClientPool:
    """Every client a test opened, closed at the end even when the test failed."""

    def __init__(self) -> None:
        self.clients: list[Client] = []

    async def open(self, url: str, **kwargs: Any) -> Client:
        """``Client.open``, remembered for closing."""
        client = await Client.open(url, **kwargs)
        self.clients.append(client)
        return client

    async def join(self, ws_url: str, room: str, user: str, **kwargs: Any) -> Client:
        """``Client.join``, remembered for closing."""
        client = await Client.join(ws_url, room, user, **kwargs)
        self.clients.append(client)
        return client

    async def aclose(self) -> None:
        """Close every client still open."""
        for client in self.clients:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(client.close(), RECEIVE_TIMEOUT)


async def eventually(probe: Callable[[], T | None], *, timeout: float = RECEIVE_TIMEOUT) -> T:
    """Poll ``probe`` until it returns something other than ``None``, within ``timeout``.

    For state without a push signal (a database row); the sleeps between polls are short.
    """
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = probe()
        if value is not None:
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        await asyncio.sleep(0.05)


# --- Waiting helpers for the cluster tests ----------------------------------

POLL_SECONDS = 0.05


def decode(frame: bytes | str) -> pb.Message:
    """A message from either frame kind, as ``Client.recv`` decodes it."""
    message = pb.Message()
    if isinstance(frame, bytes):
        message.ParseFromString(frame)
    else:
        json_format.Parse(frame, message)
    return message


async def wait_until(predicate: Callable[[], bool], *, timeout: float) -> None:
    """Poll ``predicate`` until it holds, within ``timeout`` (for Redis keys, rows, processes)."""
    await eventually(lambda: True if predicate() else None, timeout=timeout)


def is_event(event_type: int, client_id: str) -> Callable[[pb.Message], bool]:
    """A predicate for ``recv_until``: a ``PresenceEvent`` of ``event_type`` about ``client_id``."""
    return lambda m: m.type == event_type and m.presence_event.client_id == client_id


def kinds(messages: Sequence[pb.Message]) -> list[str]:
    """The payload kinds of ``messages``, for assertion messages."""
    return [str(m.WhichOneof("payload")) for m in messages]


async def collect(
    client: Client, until: Callable[[list[pb.Message]], bool], *, timeout: float
) -> list[pb.Message]:
    """Read messages until ``until(everything read so far)`` holds, within ``timeout``."""
    got: list[pb.Message] = []
    try:
        async with asyncio.timeout(timeout):
            while not until(got):
                # No per-message deadline: the whole wait is bounded by ``timeout``.
                got.append(decode(await client.ws.recv()))
    except TimeoutError:
        raise AssertionError(f"condition not met within {timeout} s; got {kinds(got)}") from None
    return got


async def expect_close(client: Client, code: int, *, timeout: float) -> list[pb.Message]:
    """Read until the server closes ``client``, within ``timeout``; assert the close ``code``.

    Returns the messages that came before the close. A connection dropped
    without a close frame reports 1006, as browsers do.
    """
    before: list[pb.Message] = []
    try:
        async with asyncio.timeout(timeout):
            while True:
                before.append(decode(await client.ws.recv()))
    except ConnectionClosed as closed:
        got = closed.rcvd.code if closed.rcvd is not None else ABNORMAL_CLOSURE
        assert got == code, f"closed with {got}, expected {code}; before: {kinds(before)}"
        return before
    except TimeoutError:
        raise AssertionError(
            f"not closed within {timeout} s (expected {code}); got {kinds(before)}"
        ) from None


async def join_eventually(
    pool: ClientPool, ws_url: str, room: str, user: str, *, timeout: float, **kwargs: Any
) -> Client:
    """``pool.join``, retried within ``timeout`` while the server refuses the connection.

    For a server that is recovering (close 4012 until its Redis is back). A
    refused attempt fails ``Client.join``'s hello check or the handshake.
    """
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        try:
            return await pool.join(ws_url, room, user, **kwargs)
        except (AssertionError, ConnectionClosed, OSError, TimeoutError) as refused:
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"{user} could not join within {timeout} s") from refused
        await asyncio.sleep(POLL_SECONDS)


# --- Staff over HTTP: the admin and the token endpoint (issue 6) -------------


class AdminSession:
    """A browser's session with the Django admin: cookies kept, the CSRF token sent back.

    Redirects are followed (a POST answered 302 is read as the page it leads to),
    as a browser does after the admin's post/redirect/get.
    """

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.cookies = http.cookiejar.CookieJar()
        self._http = urllib.request.build_opener(
            urllib.request.ProxyHandler({}), urllib.request.HTTPCookieProcessor(self.cookies)
        )

    def cookie(self, name: str) -> str:
        """The value of cookie ``name`` ("" when the server has not set it)."""
        return next((c.value or "" for c in self.cookies if c.name == name), "")

    def get(self, path: str) -> tuple[int, str]:
        """GET ``path``; return (status, body text)."""
        return self._open(urllib.request.Request(self.base_url + path))

    def post(self, path: str, fields: dict[str, str]) -> tuple[int, str]:
        """POST ``fields`` as a form to ``path``, with the CSRF token; return (status, body)."""
        form = {"csrfmiddlewaretoken": self.cookie("csrftoken"), **fields}
        request = urllib.request.Request(
            self.base_url + path,
            data=urlencode(form).encode(),
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        return self._open(request)

    def login(self, username: str, password: str) -> None:
        """Sign in through ``/admin/login/`` as a person would; fail unless signed in."""
        status, _ = self.get("/admin/login/")  # sets the csrftoken cookie
        assert status == 200 and self.cookie("csrftoken"), f"login page: {status}"
        status, body = self.post(
            "/admin/login/?next=/admin/",
            {"username": username, "password": password, "next": "/admin/"},
        )
        assert status == 200 and self.cookie("sessionid"), f"login refused ({status}): {body[:500]}"

    def _open(self, request: urllib.request.Request) -> tuple[int, str]:
        try:
            with self._http.open(request, timeout=HTTP_TIMEOUT) as response:
                return response.status, response.read().decode("utf-8", "replace")
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode("utf-8", "replace")


def obtain_token(base_url: str, username: str, password: str) -> str:
    """A simplejwt access token from ``POST /api/token/`` (PROTOCOL.md section 1)."""
    request = urllib.request.Request(
        f"{base_url}/api/token/",
        data=json.dumps({"username": username, "password": password}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with _http.open(request, timeout=HTTP_TIMEOUT) as response:
        access: str = json.loads(response.read())["access"]
    return access


async def join_refused(
    pool: ClientPool,
    ws_url: str,
    room: str,
    user: str,
    code: int,
    *,
    timeout: float = RECEIVE_TIMEOUT,
    **params: str,
) -> list[pb.Message]:
    """Try to join ``room`` as ``user``; assert the server closes with ``code``.

    Returns what the server sent before closing (for a refusal: one ``Error``).
    """
    query = urlencode({"user_id": user, **params})
    client = await pool.open(f"{ws_url}/ws/{room}?{query}")
    return await expect_close(client, code, timeout=timeout)
