"""A test client over channels' ``WebsocketCommunicator`` speaking PROTOCOL.md."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from google.protobuf import json_format

from presence.protocol import pb
from presence.transport.routing import websocket_urlpatterns

RECEIVE_TIMEOUT = 5.0
APPLICATION = URLRouter(websocket_urlpatterns)


class ProtocolClient:
    """One connection: send ``pb.Message``, receive decoded ``pb.Message``."""

    def __init__(
        self,
        path: str,
        *,
        subprotocols: list[str] | None = None,
        json: bool = False,
        headers: list[tuple[bytes, bytes]] | None = None,
    ) -> None:
        self.communicator = WebsocketCommunicator(
            APPLICATION, path, headers=headers, subprotocols=subprotocols
        )
        self.json = json
        self.hello: pb.ServerHello | None = None
        self.close_code: int | None = None

    @property
    def client_id(self) -> str:
        assert self.hello is not None
        return self.hello.assigned_client_id

    async def open(self) -> tuple[bool, Any]:
        """Perform the handshake; returns (accepted, subprotocol)."""
        return await self.communicator.connect(timeout=RECEIVE_TIMEOUT)

    async def join(self) -> pb.ServerHello:
        """Open and read the ServerHello."""
        accepted, _ = await self.open()
        assert accepted
        first = await self.recv()
        assert first.WhichOneof("payload") == "server_hello", first
        self.hello = first.server_hello
        return self.hello

    async def send(self, message: pb.Message) -> None:
        if self.json:
            await self.communicator.send_to(text_data=json_format.MessageToJson(message))
        else:
            await self.communicator.send_to(bytes_data=message.SerializeToString())

    async def send_raw(self, *, text: str | None = None, data: bytes | None = None) -> None:
        """Send a frame as is (an empty one too, which send_to refuses)."""
        event = {"type": "websocket.receive", "text": text, "bytes": data}
        await self.communicator.input_queue.put(event)

    async def recv_frame(self) -> dict[str, Any]:
        """The next raw ASGI event the server sent (send or close)."""
        return await self.communicator.receive_output(timeout=RECEIVE_TIMEOUT)

    async def recv(self) -> pb.Message:
        """The next message; fails on a close frame."""
        event = await self.recv_frame()
        if event["type"] == "websocket.close":
            self.close_code = event.get("code")
            raise AssertionError(f"connection closed with {self.close_code}")
        message = pb.Message()
        if event.get("bytes") is not None:
            message.ParseFromString(event["bytes"])
        else:
            json_format.Parse(event["text"], message)
        return message

    async def recv_until(
        self, predicate: Callable[[pb.Message], bool], limit: int = 200
    ) -> pb.Message:
        """Skip messages until one matches ``predicate``."""
        for _ in range(limit):
            message = await self.recv()
            if predicate(message):
                return message
        raise AssertionError("no matching message")

    async def recv_kind(self, kind: str) -> pb.Message:
        """The next message whose payload is ``kind`` (others are skipped)."""
        return await self.recv_until(lambda m: m.WhichOneof("payload") == kind)

    async def expect_close(self) -> int:
        """Read until the close frame; return its code."""
        for _ in range(200):
            event = await self.recv_frame()
            if event["type"] == "websocket.close":
                self.close_code = int(event.get("code", 1000))
                return self.close_code
        raise AssertionError("connection did not close")

    async def ping(self, marker: int) -> pb.Message:
        """Send a Ping and return the next message (expected: its Pong)."""
        await self.send(pb.Message(ping=pb.Ping(client_time_ms=marker)))
        return await self.recv()

    async def close(self) -> None:
        await self.communicator.disconnect()


def pose(x: float, entity_id: str = "") -> pb.Message:
    """A PositionUpdate at (x, 0, 0)."""
    return pb.Message(
        position_update=pb.PositionUpdate(
            entity_id=entity_id,
            position=pb.Vector3(x=x, y=0.0, z=0.0),
            rotation=pb.Quaternion(w=1.0),
        )
    )
