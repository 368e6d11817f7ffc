"""End to end: resume across instances (issue 11), two uvicorn processes on one Redis.

The receiver's instance is killed with SIGKILL in the middle of a chat stream;
the receiver resumes on the other instance and must see every chat exactly
once, in order, with contiguous ``seq``, while the others see it neither leave
nor join. Then Redis itself restarts (a persistent one of the test's own):
clients get 4012 and resume, or resync, never a partial replay.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis
from websockets.exceptions import ConnectionClosed

from presence.protocol import pb
from tests.clients.live import Client, ClientPool, chat, http_get
from tests.conftest import REDIS_START_SECONDS, _answers
from tests.e2e.conftest import (
    POLL_SECONDS,
    STOP_SECONDS,
    PrivateRedis,
    Server,
    cluster_env,
    start_server,
    uvicorn_command,
)

pytestmark = pytest.mark.e2e

GRACE_SECONDS = 5.0  # longer than the test needs to resume: no LEAVE may be seen
CHATS = 60
CHAT_INTERVAL = 0.02  # s: the stream lasts about 1.2 s
RESUME_SECONDS = 15.0
BACKEND_UNAVAILABLE = 4012


class PersistentRedis(PrivateRedis):
    """A private redis-server that keeps its data across a restart (appendonly, fsync always)."""

    def __init__(self) -> None:
        super().__init__()
        client = redis.Redis.from_url(self.url)
        client.config_set("appendfsync", "always")
        client.config_set("appendonly", "yes")
        deadline = time.monotonic() + REDIS_START_SECONDS
        while int(client.info("persistence")["aof_rewrite_in_progress"]) or not int(
            client.info("persistence")["aof_enabled"]
        ):
            if time.monotonic() > deadline:
                raise RuntimeError("redis-server did not turn appendonly on")
            time.sleep(POLL_SECONDS)
        client.close()
        args = [str(a) for a in self.process.args]  # type: ignore[union-attr]
        args[args.index("--appendonly") + 1] = "yes"
        self.restart_args = [*args, "--appendfsync", "always"]

    def restart(self) -> None:
        """Start again with appendonly, so the data written before the kill comes back."""
        self.process = subprocess.Popen(
            self.restart_args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + REDIS_START_SECONDS
        while not _answers(self.url):
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise RuntimeError(f"redis-server did not start again on port {self.port}")
            time.sleep(POLL_SECONDS)


@contextlib.contextmanager
def uvicorn_pair(tmp: Path, private_redis: PrivateRedis) -> Iterator[tuple[Server, Server]]:
    """Two uvicorn instances (``make run``'s command line) on ``private_redis``."""
    prefix = f"gwresume-{uuid.uuid4().hex[:8]}"
    env = {
        **cluster_env(tmp, private_redis.url, prefix),
        "PRESENCE_LEAVE_GRACE_SECONDS": str(GRACE_SECONDS),
        "MESSAGE_RATE_LIMIT": "100000",
    }
    servers: list[Server] = []
    try:
        for name in ("uvicorn-a", "uvicorn-b"):
            servers.append(start_server(name, tmp, uvicorn_command, env, migrate_first=not servers))
        yield servers[0], servers[1]
    finally:
        for server in servers:
            server.stop()


@pytest.fixture
async def pool() -> AsyncIterator[ClientPool]:
    clients = ClientPool()
    yield clients
    await clients.aclose()


def kind(message: pb.Message) -> str:
    payload = message.WhichOneof("payload") or ""
    if payload == "presence_event":
        return pb.PresenceEventType.Name(message.presence_event.event_type)
    return payload


class Receiver:
    """A client that keeps its session: processes reliable messages, resumes on demand."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.session_id = client.hello.session_id
        self.client_id = client.client_id
        self.last_seq = 0
        self.chats: list[tuple[int, str]] = []
        self.hellos: list[pb.ServerHello] = [client.hello]

    async def read_until_closed(self) -> int:
        """Process messages until the socket ends; its close code."""
        try:
            while True:
                message = await self.client.recv()
                self.process(message)
        except ConnectionClosed as closed:
            return closed.rcvd.code if closed.rcvd is not None else 1006
        except TimeoutError:
            return 0

    def process(self, message: pb.Message) -> None:
        if not message.seq:
            return
        assert message.seq == self.last_seq + 1, (message.seq, self.last_seq, kind(message))
        self.last_seq = message.seq
        if message.WhichOneof("payload") == "chat_message":
            self.chats.append((message.seq, message.chat_message.message))

    async def resume(self, pool: ClientPool, ws_url: str, room: str, user: str) -> pb.ServerHello:
        client = await pool.join(
            ws_url, room, user, session_id=self.session_id, last_seq=str(self.last_seq)
        )
        self.client = client
        self.hellos.append(client.hello)
        return client.hello

    async def read_chats(self, count: int, *, timeout: float) -> None:
        async with asyncio.timeout(timeout):
            while len(self.chats) < count:
                self.process(await self.client.recv())


async def stream_chats(sender: Client, count: int, sent: list[int]) -> None:
    for n in range(count):
        await sender.send(chat(f"chat {n:03d}", message_id=f"s-{n}"))
        sent.append(n)
        await asyncio.sleep(CHAT_INTERVAL)


async def until_sent(sent: list[int], count: int) -> None:
    """Wait for the stream to have sent ``count`` chats."""
    async with asyncio.timeout(RESUME_SECONDS):
        while len(sent) < count:
            await asyncio.sleep(CHAT_INTERVAL / 2)


async def test_a_receiver_resumes_on_the_other_instance_after_sigkill_without_losing_a_chat(
    tmp_path: Path, own_redis: PrivateRedis, pool: ClientPool
) -> None:
    with uvicorn_pair(tmp_path, own_redis) as (a, b):
        room = "resume-kill"
        receiver = Receiver(await pool.join(a.ws_url, room, "receiver"))
        sender = await pool.join(b.ws_url, room, "sender")
        watcher = await pool.join(b.ws_url, room, "watcher")
        # the receiver hears both joins before the stream starts
        for _ in range(2):
            receiver.process(await receiver.client.recv_until(lambda m: kind(m) == "JOIN"))

        sent: list[int] = []
        streaming = asyncio.create_task(stream_chats(sender, CHATS, sent))
        await receiver.read_chats(CHATS // 3, timeout=RESUME_SECONDS)
        a.process.send_signal(signal.SIGKILL)
        a.process.wait(timeout=STOP_SECONDS)
        assert await receiver.read_until_closed() in (0, 1006)
        await until_sent(sent, len(sent) + 10)  # chats the receiver is away for

        hello = await receiver.resume(pool, b.ws_url, room, "receiver")
        assert hello.resumed, "the session was not resumed on the other instance"
        assert hello.session_id == receiver.session_id
        assert hello.assigned_client_id == receiver.client_id
        await streaming
        await receiver.read_chats(CHATS, timeout=RESUME_SECONDS)
        metrics = http_get(f"{b.http_url}/metrics")[2]
        assert 'presence_resumes_total{outcome="resumed"} 1.0' in metrics
        replayed = next(
            float(line.split()[-1])
            for line in metrics.splitlines()
            if line.startswith("presence_replayed_messages_total")
        )
        assert replayed > 0  # chats sent while it was away came from the room log

        assert [text for _, text in receiver.chats] == [f"chat {n:03d}" for n in range(CHATS)]
        seqs = [seq for seq, _ in receiver.chats]
        assert seqs == list(range(seqs[0], seqs[0] + CHATS))  # no other reliable message between

        # The others saw neither a LEAVE nor a JOIN of the receiver.
        await sender.send(chat("done", message_id="s-done"))
        seen: list[pb.Message] = []
        async with asyncio.timeout(RESUME_SECONDS):
            while True:
                message = await watcher.recv()
                seen.append(message)
                if message.WhichOneof("payload") == "chat_message" and (
                    message.chat_message.message == "done"
                ):
                    break
        membership = [
            (kind(m), m.presence_event.client_id)
            for m in seen
            if kind(m) in ("JOIN", "LEAVE") and m.presence_event.client_id == receiver.client_id
        ]
        assert membership == []


async def test_a_resume_on_the_other_instance_closes_the_half_open_old_socket_4010(
    tmp_path: Path, own_redis: PrivateRedis, pool: ClientPool
) -> None:
    with uvicorn_pair(tmp_path, own_redis) as (a, b):
        room = "resume-takeover"
        old = Receiver(await pool.join(a.ws_url, room, "receiver"))
        sender = await pool.join(b.ws_url, room, "sender")
        old.process(await old.client.recv_until(lambda m: kind(m) == "JOIN"))
        new = Receiver(old.client)
        new.session_id, new.last_seq = old.session_id, old.last_seq
        hello = await new.resume(pool, b.ws_url, room, "receiver")
        assert hello.resumed
        assert await old.read_until_closed() == 4010
        await sender.send(chat("to the new socket"))
        await new.read_chats(1, timeout=RESUME_SECONDS)
        assert new.chats[0][1] == "to the new socket"


async def test_after_a_redis_restart_clients_resume_or_resync_never_partly(
    tmp_path: Path, pool: ClientPool
) -> None:
    persistent = PersistentRedis()
    try:
        with uvicorn_pair(tmp_path, persistent) as (a, b):
            room = "resume-redis"
            receiver = Receiver(await pool.join(a.ws_url, room, "receiver"))
            sender = await pool.join(b.ws_url, room, "sender")
            receiver.process(await receiver.client.recv_until(lambda m: kind(m) == "JOIN"))
            for n in range(5):
                await sender.send(chat(f"before {n}", message_id=f"b-{n}"))
                await sender.recv_kind("ack")
            await receiver.read_chats(5, timeout=RESUME_SECONDS)

            persistent.kill()
            codes = await asyncio.wait_for(
                asyncio.gather(receiver.read_until_closed(), closed_code(sender)),
                RESUME_SECONDS,
            )
            assert codes == [BACKEND_UNAVAILABLE, BACKEND_UNAVAILABLE]
            persistent.restart()

            hello = await resume_eventually(receiver, pool, b.ws_url, room)
            if hello.resumed:
                assert hello.session_id == receiver.session_id
                # resumed: what follows continues the same sequence (process() asserts it)
            else:
                error = await receiver.client.recv()
                assert error.error.code == pb.Error.RESYNC_REQUIRED
                assert error.seq == 0
                receiver.last_seq = 0  # a new session numbers from 1
            fresh = await pool.join(b.ws_url, room, "sender2")
            await fresh.send(chat("after", message_id="a-1"))
            async with asyncio.timeout(RESUME_SECONDS):
                while not receiver.chats or receiver.chats[-1][1] != "after":
                    receiver.process(await receiver.client.recv())
    finally:
        persistent.stop()


async def closed_code(client: Client) -> int:
    try:
        while True:
            await client.recv()
    except ConnectionClosed as closed:
        return closed.rcvd.code if closed.rcvd is not None else 1006


async def resume_eventually(
    receiver: Receiver, pool: ClientPool, ws_url: str, room: str
) -> pb.ServerHello:
    """Resume, retried while the instance still refuses (4012 until Redis answers)."""
    deadline = asyncio.get_running_loop().time() + RESUME_SECONDS
    while True:
        try:
            return await receiver.resume(pool, ws_url, room, "receiver")
        except (AssertionError, ConnectionClosed, OSError, TimeoutError):
            if asyncio.get_running_loop().time() > deadline:
                raise
        await asyncio.sleep(POLL_SECONDS)
