"""A fake socket and fake time for :mod:`presence.client` unit tests (no server, no waiting)."""

from __future__ import annotations

import asyncio
from urllib.parse import parse_qs, urlsplit

from presence.client import SocketClosed, decode, encode
from presence.protocol import pb


class FakeTime:
    """``sleep`` that waits for ``advance``; records every delay asked for."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []
        self._waiting: list[tuple[float, asyncio.Future[None]]] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.append((self.now + seconds, future))
        await future

    async def advance(self, seconds: float) -> None:
        """Move time on; wake the sleepers that are due, in order."""
        end = self.now + seconds
        while True:
            due = sorted((t, f) for t, f in self._waiting if t <= end and not f.done())
            if not due:
                break
            at, future = due[0]
            self._waiting = [(t, f) for t, f in self._waiting if f is not future]
            self.now = at
            future.set_result(None)
            await settle()
        self.now = end
        await settle()


async def settle(rounds: int = 20) -> None:
    """Let every ready task run."""
    for _ in range(rounds):
        await asyncio.sleep(0)


class FakeSocket:
    """One connection: the test plays the server with ``deliver`` and ``drop``."""

    def __init__(self, url: str, subprotocols: list[str]) -> None:
        self.url = url
        self.subprotocol = subprotocols[0]
        self.sent: list[pb.Message] = []
        self._inbox: asyncio.Queue[pb.Message | SocketClosed] = asyncio.Queue()
        self.closed_with: int | None = None

    @property
    def query(self) -> dict[str, str]:
        return {k: v[0] for k, v in parse_qs(urlsplit(self.url).query).items()}

    async def send(self, frame: bytes | str) -> None:
        if self.closed_with is not None:
            raise SocketClosed(self.closed_with)
        self.sent.append(decode(frame))

    async def recv(self) -> bytes | str:
        item = await self._inbox.get()
        if isinstance(item, SocketClosed):
            self.closed_with = item.code
            raise item
        return encode(item, "proto")

    async def close(self, code: int = 1000) -> None:
        self.closed_with = code
        self._inbox.put_nowait(SocketClosed(code))

    def abort(self) -> None:
        self.drop(1006)

    def deliver(self, message: pb.Message) -> None:
        self._inbox.put_nowait(message)

    def drop(self, code: int) -> None:
        self._inbox.put_nowait(SocketClosed(code))

    def sent_of(self, kind: str) -> list[pb.Message]:
        return [m for m in self.sent if m.WhichOneof("payload") == kind]


class FakeNetwork:
    """The ``connect`` function of a client: every socket it opened, newest last."""

    def __init__(self) -> None:
        self.sockets: list[FakeSocket] = []

    async def connect(self, url: str, subprotocols: list[str]) -> FakeSocket:
        socket = FakeSocket(url, subprotocols)
        self.sockets.append(socket)
        return socket


def hello(
    client_id: str = "c1",
    session_id: str = "s1",
    *,
    resumed: bool = False,
    host: str = "",
    players: tuple[pb.PlayerSnapshot, ...] = (),
) -> pb.Message:
    server_hello = pb.ServerHello(
        assigned_client_id=client_id,
        room_id="r1",
        session_id=session_id,
        resumed=resumed,
        host_client_id=host or client_id,
    )
    if not resumed:
        server_hello.initial_state.players.add(client_id=client_id, display_name="Me")
        server_hello.initial_state.players.extend(players)
    return pb.Message(type=pb.SERVER_HELLO, server_hello=server_hello)


def chat_from(sender: str, text: str, seq: int) -> pb.Message:
    return pb.Message(
        seq=seq,
        sender_id=sender,
        chat_message=pb.ChatMessage(from_client_id=sender, message=text),
    )
