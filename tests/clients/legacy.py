"""A GraphWiz-XR legacy-wire test client of our own (issue 14), written from the issue's text.

It frames as the hub-client does — ``[u8 id length][id][u64 BE ms][u8 type][JSON]``
binary frames after a text ``SERVER_HELLO`` — with its own code, not the
server's (``presence.protocol.legacy``), so the tests check the server
against an independent reading of the wire. Two transports: channels'
``WebsocketCommunicator`` (integration) and the ``websockets`` package (e2e).
"""

from __future__ import annotations

import asyncio
import json
import struct
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from channels.testing import WebsocketCommunicator
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from tests.clients.communicator import APPLICATION

RECEIVE_TIMEOUT = 5.0
CLIENT_HELLO, POSITION_UPDATE, VOICE_DATA = 1, 10, 11
ENTITY_SPAWN, ENTITY_UPDATE, ENTITY_DESPAWN = 20, 21, 22
CHAT_MESSAGE = 30
PRESENCE_JOIN, PRESENCE_LEAVE, PRESENCE_UPDATE = 40, 41, 42
ERROR = 61
PLAYER_KICKED, PLAYER_MUTED, ROOM_LOCKED = 73, 74, 75  # the server's moderation extensions
PING = 255
LEAVE = 1  # PresenceEvent.event_type of a leave


def frame(kind: int, payload: dict[str, Any] | None = None, *, frame_id: str = "") -> bytes:
    """One binary legacy frame, as the hub-client writes it."""
    raw_id = (frame_id or str(uuid.uuid4())).encode()
    body = json.dumps(payload or {}).encode()
    return (
        bytes([len(raw_id)])
        + raw_id
        + struct.pack(">Q", int(time.time() * 1000))
        + bytes([kind])
        + body
    )


@dataclass
class Frame:
    """One frame the server sent: binary (id, timestamp, type, payload) or text (``text``)."""

    frame_id: str = ""
    timestamp: int = 0
    type: int = 0
    payload: dict[str, Any] | None = None
    text: dict[str, Any] | None = None


def parse(data: bytes | str) -> Frame:
    """Read one server frame the way the hub-client does."""
    if isinstance(data, str):
        return Frame(text=json.loads(data))
    length = data[0]
    frame_id = data[1 : 1 + length].decode()
    timestamp, kind = struct.unpack_from(">QB", data, 1 + length)
    body = data[10 + length :]
    return Frame(frame_id, timestamp, kind, json.loads(body) if body else {})


class LegacyClient:
    """The steps of a hub-client session, over some transport (see subclasses)."""

    hello: dict[str, Any]

    async def send_bytes(self, data: bytes) -> None:
        raise NotImplementedError

    async def send_text(self, text: str) -> None:
        raise NotImplementedError

    async def recv_raw(self) -> bytes | str:
        raise NotImplementedError

    @property
    def client_id(self) -> str:
        """The server-assigned id of the text SERVER_HELLO."""
        return str(self.hello["client_id"])

    async def send(self, kind: int, payload: dict[str, Any] | None = None, **kw: Any) -> None:
        """Send one binary legacy frame."""
        await self.send_bytes(frame(kind, payload, **kw))

    async def say_hello(self, name: str, *, token: str = "", room: str = "") -> dict[str, Any]:
        """Send CLIENT_HELLO as the hub-client does on open; read the text SERVER_HELLO."""
        await self.send(
            CLIENT_HELLO,
            {
                "clientId": str(uuid.uuid4()),
                "displayName": name,
                "authToken": token,
                "requestedRoom": room,
            },
        )
        first = await self.recv()
        assert first.text is not None and first.text.get("type") == "SERVER_HELLO", first
        self.hello = first.text
        return self.hello

    async def recv(self) -> Frame:
        """The next frame, parsed."""
        return parse(await self.recv_raw())

    async def recv_until(self, predicate: Callable[[Frame], bool], limit: int = 200) -> Frame:
        """Skip frames until one matches ``predicate``."""
        for _ in range(limit):
            got = await self.recv()
            if predicate(got):
                return got
        raise AssertionError("no matching frame")

    async def recv_type(self, kind: int) -> Frame:
        """The next binary frame of ``kind``."""
        return await self.recv_until(lambda f: f.type == kind and f.text is None)

    async def move(self, x: float, *, entity_id: str = "") -> None:
        """A pose of the client's avatar (entityId = its own id, as the hub-client sends)."""
        await self.send(
            POSITION_UPDATE,
            {
                "entityId": entity_id or self.client_id,
                "position": {"x": x, "y": 0, "z": 0},
                "rotation": {"x": 0, "y": 0, "z": 0, "w": 1},
                "sequenceNumber": 1,
                "timestamp": int(time.time() * 1000),
            },
        )

    async def spawn_avatar(self, color: str = "#ff0000") -> None:
        """ENTITY_SPAWN of its avatar: entity id = its server id, object components."""
        await self.send(
            ENTITY_SPAWN,
            {
                "entityId": self.client_id,
                "templateId": "player",
                "ownerId": "whatever-the-client-says",
                "components": {
                    "position": {"x": 0, "y": 0, "z": 0},
                    "avatarConfig": {"primaryColor": color},
                },
            },
        )

    async def avatar_update(self, name: str, color: str) -> None:
        """PRESENCE_UPDATE (42) with the flat payload the hub-client sends."""
        await self.send(
            PRESENCE_UPDATE,
            {
                "clientId": self.client_id,
                "displayName": name,
                "avatarUrl": "",
                "position": {"x": 0, "y": 0, "z": 0},
                "rotation": {"x": 0, "y": 0, "z": 0, "w": 1},
                "avatarConfig": {
                    "bodyType": "robot",
                    "primaryColor": color,
                    "secondaryColor": "#000",
                    "height": 1.7,
                },
            },
        )

    async def chat(self, text: str) -> None:
        """CHAT_MESSAGE as the hub-client sends it."""
        await self.send(
            CHAT_MESSAGE, {"fromClientId": "spoofed", "message": text, "type": 0, "timestamp": 1}
        )


class CommunicatorLegacyClient(LegacyClient):
    """Over channels' ``WebsocketCommunicator`` (no network)."""

    def __init__(self, path: str) -> None:
        self.communicator = WebsocketCommunicator(APPLICATION, path)
        self.close_code: int | None = None

    async def open(self) -> None:
        accepted, _ = await self.communicator.connect(timeout=RECEIVE_TIMEOUT)
        assert accepted

    async def send_bytes(self, data: bytes) -> None:
        await self.communicator.send_to(bytes_data=data)

    async def send_text(self, text: str) -> None:
        await self.communicator.send_to(text_data=text)

    async def recv_raw(self) -> bytes | str:
        event = await self.communicator.receive_output(timeout=RECEIVE_TIMEOUT)
        if event["type"] == "websocket.close":
            self.close_code = event.get("code")
            raise AssertionError(f"connection closed with {self.close_code}")
        data = event.get("bytes")
        return data if data is not None else event["text"]

    async def expect_close(self) -> tuple[int, list[Frame]]:
        """Read until the close; return its code and the frames before it."""
        seen: list[Frame] = []
        for _ in range(200):
            event = await self.communicator.receive_output(timeout=RECEIVE_TIMEOUT)
            if event["type"] == "websocket.close":
                self.close_code = int(event.get("code", 1000))
                return self.close_code, seen
            data = event.get("bytes")
            seen.append(parse(data if data is not None else event["text"]))
        raise AssertionError("connection did not close")

    async def nothing_pending(self) -> bool:
        return await self.communicator.receive_nothing(timeout=0.2)

    async def close(self) -> None:
        await self.communicator.disconnect()


class LiveLegacyClient(LegacyClient):
    """Over a real socket with the ``websockets`` package (no subprotocol, like a browser)."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws

    @classmethod
    async def open(cls, ws_url: str, room: str, **params: str) -> LiveLegacyClient:
        url = f"{ws_url}/ws/{room}?{urlencode({'room_id': room, **params})}"
        ws = await connect(
            url, compression=None, proxy=None, open_timeout=RECEIVE_TIMEOUT, ping_interval=None
        )
        return cls(ws)

    async def send_bytes(self, data: bytes) -> None:
        await self.ws.send(data)

    async def send_text(self, text: str) -> None:
        await self.ws.send(text)

    async def recv_raw(self) -> bytes | str:
        return await asyncio.wait_for(self.ws.recv(), RECEIVE_TIMEOUT)

    async def expect_close(self) -> int:
        """Read until the server closes; return its close code."""
        try:
            while True:
                await asyncio.wait_for(self.ws.recv(), RECEIVE_TIMEOUT)
        except ConnectionClosed as closed:
            return closed.rcvd.code if closed.rcvd is not None else 1006

    async def close(self) -> None:
        await self.ws.close()
