"""The reconnect storm (issue 11): N clients of one instance lose it at once and resume on another.

Two service instances (uvicorn, as ``make run``) on one Redis. First N fresh
clients connect to instance B and read their hello: the time that takes is
the yardstick. Then N receivers join instance A, in rooms of ``room_size``,
each room with a sender on B that sends a chat every ``chat_interval`` s.
Instance A is killed (SIGKILL): every receiver reconnects to B at once with
its ``session_id`` and ``last_seq``. Reported: seconds from the kill until
every receiver holds a ``resumed: true`` hello, how many did not resume, and
how many chats were lost or duplicated (both must be 0).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import websockets

from bench.servers import (
    ServerGroup,
    ServerProcess,
    free_ports,
    migrate,
    service_command,
    service_env,
)
from presence.protocol import core_pb2 as pb

CONNECT_CONCURRENCY = (
    100  # connection attempts in flight (the bench's --connect-concurrency default)
)
CHAT_INTERVAL = 0.1  # s between two chats of one room's sender
CHATS_BEFORE_KILL = 3  # per room
CHATS_DURING_STORM = 10  # per room, sent while the receivers reconnect
SETTLE_SECONDS = 60.0  # the longest a phase may take
GRACE_SECONDS = 30.0  # longer than the storm: nobody is seen to leave


@dataclass
class Receiver:
    """One storm client: its session, what it processed, and how its resume went."""

    room: str
    user: str
    ws: Any = None
    session_id: str = ""
    last_seq: int = 0
    chats: list[str] = field(default_factory=list)
    duplicates: int = 0
    resumed: bool | None = None
    reader: asyncio.Task[None] | None = None

    def process(self, frame: bytes) -> None:
        message = pb.Message.FromString(frame)
        if message.HasField("server_hello"):
            self.session_id = self.session_id or message.server_hello.session_id
            return
        if not message.seq:
            return
        if message.seq <= self.last_seq:
            self.duplicates += 1
            return
        self.last_seq = message.seq
        if message.HasField("chat_message"):
            self.chats.append(message.chat_message.message)


async def _connect(url: str) -> Any:
    return await websockets.connect(
        url, compression=None, proxy=None, open_timeout=SETTLE_SECONDS, ping_interval=None
    )


async def _join(receiver: Receiver, base: str, **params: str) -> pb.ServerHello:
    query = urlencode({"user_id": receiver.user, **params})
    receiver.ws = await _connect(f"{base}/ws/{receiver.room}?{query}")
    first = pb.Message.FromString(await receiver.ws.recv())
    assert first.HasField("server_hello"), first
    return first.server_hello


async def _read(receiver: Receiver) -> None:
    with contextlib.suppress(websockets.ConnectionClosed):
        async for frame in receiver.ws:
            if isinstance(frame, bytes):
                receiver.process(frame)


async def _bounded(coros: list[Any]) -> list[Any]:
    gate = asyncio.Semaphore(CONNECT_CONCURRENCY)

    async def one(coro: Any) -> Any:
        async with gate:
            return await coro

    return await asyncio.gather(*(one(c) for c in coros))


async def _fresh_connects(base: str, n: int) -> float:
    """Seconds for ``n`` new clients to connect and read their hello."""
    sockets: list[Any] = []

    async def one(i: int) -> None:
        ws = await _connect(f"{base}/ws/fresh-{i % max(1, n // 10)}?user_id=fresh{i}")
        await ws.recv()
        sockets.append(ws)

    started = time.perf_counter()
    await _bounded([one(i) for i in range(n)])
    took = time.perf_counter() - started
    await asyncio.gather(*(ws.close() for ws in sockets), return_exceptions=True)
    return took


async def _send_chats(sender: Any, room: str, start: int, count: int) -> None:
    for k in range(start, start + count):
        message = pb.Message(message_id=f"{room}-{k}", chat_message=pb.ChatMessage(message=str(k)))
        await sender.send(message.SerializeToString())
        await asyncio.sleep(CHAT_INTERVAL)


async def run_storm(
    base_a: str, base_b: str, kill_a: Any, *, clients: int, room_size: int
) -> dict[str, Any]:
    """The storm against running instances A and B; ``kill_a()`` SIGKILLs A."""
    fresh_s = await _fresh_connects(base_b, clients)
    rooms = [f"storm-{r}" for r in range((clients + room_size - 1) // room_size)]
    receivers = [Receiver(rooms[i // room_size], f"rx{i}") for i in range(clients)]
    hellos = await _bounded([_join(r, base_a) for r in receivers])
    for receiver, hello in zip(receivers, hellos, strict=True):
        receiver.session_id = hello.session_id
        receiver.reader = asyncio.create_task(_read(receiver))
    senders = {room: await _connect(f"{base_b}/ws/{room}?user_id=tx-{room}") for room in rooms}
    for sender in senders.values():
        await sender.recv()
    await asyncio.gather(*(_send_chats(s, r, 0, CHATS_BEFORE_KILL) for r, s in senders.items()))

    streaming = asyncio.gather(
        *(_send_chats(s, r, CHATS_BEFORE_KILL, CHATS_DURING_STORM) for r, s in senders.items())
    )
    killed_at = time.perf_counter()
    kill_a()
    await asyncio.gather(*(r.reader for r in receivers if r.reader is not None))

    async def resume(receiver: Receiver) -> None:
        hello = await _join(
            receiver, base_b, session_id=receiver.session_id, last_seq=str(receiver.last_seq)
        )
        receiver.resumed = hello.resumed
        receiver.reader = asyncio.create_task(_read(receiver))

    await _bounded([resume(r) for r in receivers])
    storm_s = time.perf_counter() - killed_at
    await streaming
    expected = [str(k) for k in range(CHATS_BEFORE_KILL + CHATS_DURING_STORM)]
    deadline = time.monotonic() + SETTLE_SECONDS
    while time.monotonic() < deadline and any(len(r.chats) < len(expected) for r in receivers):
        await asyncio.sleep(0.05)
    lost = sum(len(set(expected) - set(r.chats)) for r in receivers)
    missing = sorted({k for r in receivers for k in set(expected) - set(r.chats)}, key=int)
    duplicated = sum(r.duplicates + len(r.chats) - len(set(r.chats)) for r in receivers)
    out_of_order = sum(1 for r in receivers if r.chats != sorted(r.chats, key=int))
    await asyncio.gather(
        *(ws.close() for ws in [*senders.values(), *(r.ws for r in receivers)]),
        return_exceptions=True,
    )
    return {
        "clients": clients,
        "room_size": room_size,
        "fresh_connect_s": round(fresh_s, 2),
        "storm_resume_s": round(storm_s, 2),
        "resumed": sum(1 for r in receivers if r.resumed),
        "not_resumed": sum(1 for r in receivers if not r.resumed),
        "chats_expected": len(expected) * clients,
        "chats_lost": lost,
        "chats_duplicated": duplicated,
        "out_of_order": out_of_order,
        "missing_chat_numbers": missing[:20],
    }


def storm_target(
    tmp: Path, out: Path, *, redis_url: str, redis_prefix: str, clients: int, room_size: int
) -> dict[str, Any]:
    """Start two uvicorn instances on ``redis_url``, run the storm, stop them."""
    env = service_env(
        tmp,
        redis_url=redis_url,
        redis_prefix=redis_prefix,
        extra={
            "PRESENCE_LEAVE_GRACE_SECONDS": str(GRACE_SECONDS),
            "PRESENCE_RESUME_WINDOW_SECONDS": str(2 * GRACE_SECONDS),
            "MESSAGE_RATE_LIMIT": "100000",
        },
    )
    migrate(env)
    logs = out / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    servers = [
        ServerProcess(name, port, service_command("uvicorn", port), env, logs / f"{name}.log", True)
        for name, port in zip(("storm-a", "storm-b"), free_ports(2), strict=True)
    ]
    group = ServerGroup("storm", servers)
    group.start()
    try:

        def kill_a() -> None:
            process = servers[0].process
            assert process is not None
            process.send_signal(signal.SIGKILL)

        return asyncio.run(
            run_storm(
                f"ws://127.0.0.1:{servers[0].port}",
                f"ws://127.0.0.1:{servers[1].port}",
                kill_a,
                clients=clients,
                room_size=room_size,
            )
        )
    finally:
        group.stop()


def storm_lines(storm: dict[str, Any]) -> list[str]:
    """The report's reconnect-storm row."""
    if "error" in storm:
        return [f"reconnect storm: {storm['error']}"]
    return [
        f"reconnect storm ({storm['clients']} clients of a killed instance resume on another, "
        f"rooms of {storm['room_size']}): all resumed in {storm['storm_resume_s']:.2f} s "
        f"(fresh connects of as many: {storm['fresh_connect_s']:.2f} s); "
        f"resumed {storm['resumed']}, not resumed {storm['not_resumed']}; "
        f"chats lost {storm['chats_lost']} of {storm['chats_expected']}, "
        f"duplicated {storm['chats_duplicated']}, out of order {storm['out_of_order']}"
    ]
