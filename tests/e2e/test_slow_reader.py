"""A member that stops reading: bounded, gets fewer and newer messages, slows nobody.

Runs against uvicorn, the server ``make run`` uses: its send waits while the
socket is not writable, so the service's per-connection outbox (not the
server's write buffer) holds what a stalled reader has not taken yet.
"""

from __future__ import annotations

import asyncio
import base64
import os
import socket
import struct
import time

import pytest

from presence.protocol import pb
from tests.clients.live import Client
from tests.e2e.conftest import Server

pytestmark = pytest.mark.e2e

VOICE_FRAMES = 640
VOICE_BYTES = 16 * 1024  # 640 x 16 KiB = 10 MiB, well beyond the 4 MiB socket buffers
SEND_INTERVAL = 0.008
DEADLINE = 20.0


class StalledReader:
    """A raw WebSocket client with a tiny receive buffer that reads only when told."""

    def __init__(self, server: Server, room: str) -> None:
        host, port = server.http_url.removeprefix("http://").split(":")
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self.sock.connect((host, int(port)))
        key = base64.b64encode(os.urandom(16)).decode()
        request = (
            f"GET /ws/{room}?user_id=stalled HTTP/1.1\r\nHost: {host}\r\n"
            "Upgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        self.sock.sendall(request.encode())
        self.buffer = b""
        while b"\r\n\r\n" not in self.buffer:
            self.buffer += self._recv()
        head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
        assert head.startswith(b"HTTP/1.1 101"), head

    def _recv(self) -> bytes:
        data = self.sock.recv(65536)
        if not data:
            raise ConnectionError("server closed the socket")
        return data

    def frame(self) -> tuple[int, bytes]:
        """Read one server frame (opcode, payload), blocking."""
        while True:
            parsed = self._parse()
            if parsed is not None:
                return parsed
            self.buffer += self._recv()

    def _parse(self) -> tuple[int, bytes] | None:
        if len(self.buffer) < 2:
            return None
        opcode, length = self.buffer[0] & 0x0F, self.buffer[1] & 0x7F
        offset = 2
        if length == 126:
            if len(self.buffer) < 4:
                return None
            (length,) = struct.unpack("!H", self.buffer[2:4])
            offset = 4
        elif length == 127:
            if len(self.buffer) < 10:
                return None
            (length,) = struct.unpack("!Q", self.buffer[2:10])
            offset = 10
        if len(self.buffer) < offset + length:
            return None
        payload = self.buffer[offset : offset + length]
        self.buffer = self.buffer[offset + length :]
        return opcode, payload

    def close(self) -> None:
        self.sock.close()


def voice_sequence(payload: bytes) -> int | None:
    message = pb.Message.FromString(payload)
    return message.voice_data.sequence_number if message.HasField("voice_data") else None


async def test_a_stalled_reader_gets_fewer_newer_messages_and_others_are_not_slowed(
    uvicorn_server: Server,
) -> None:
    stalled = StalledReader(uvicorn_server, "slow")
    opcode, hello = stalled.frame()
    assert opcode == 2 and pb.Message.FromString(hello).HasField("server_hello")
    speaker = await Client.join(uvicorn_server.ws_url, "slow", "speaker")
    listener = await Client.join(uvicorn_server.ws_url, "slow", "listener")

    async def speak() -> None:
        audio = bytes(VOICE_BYTES)
        for sequence in range(VOICE_FRAMES):
            voice = pb.VoiceData(audio_data=audio, sequence_number=sequence)
            await speaker.send(pb.Message(voice_data=voice))
            await asyncio.sleep(SEND_INTERVAL)

    async def listen() -> list[int]:
        heard: list[int] = []
        while len(heard) < VOICE_FRAMES:
            message = await listener.recv()
            if message.HasField("voice_data"):
                heard.append(message.voice_data.sequence_number)
        return heard

    started = time.monotonic()
    _, heard = await asyncio.gather(speak(), asyncio.wait_for(listen(), DEADLINE))
    # The listener got every frame, in order, while the stalled reader read nothing.
    assert heard == list(range(VOICE_FRAMES))
    assert time.monotonic() - started < DEADLINE

    received: list[int] = []
    deadline = time.monotonic() + DEADLINE
    stalled.sock.settimeout(DEADLINE)
    while (not received or received[-1] != VOICE_FRAMES - 1) and time.monotonic() < deadline:
        opcode, payload = stalled.frame()
        if opcode == 2 and (sequence := voice_sequence(payload)) is not None:
            received.append(sequence)
    stalled.close()
    await speaker.close()
    await listener.close()

    assert received[-1] == VOICE_FRAMES - 1  # the newest made it
    assert received == sorted(received)  # in order
    assert len(received) < VOICE_FRAMES * 3 // 4  # older ones were dropped, not queued
