"""``manage.py presence_client`` and ``presence_bots`` against a live uvicorn."""

from __future__ import annotations

import asyncio
import os
import sys
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from presence.client import PresenceClient
from tests.e2e.conftest import PROJECT, Server, serving

pytestmark = pytest.mark.e2e
WAIT = 10.0


@pytest.fixture(scope="module")
def cmd_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with serving(tmp_path_factory, "uvicorn-cmd") as server:
        yield server


@pytest.fixture
async def watcher(cmd_server: Server) -> AsyncIterator[PresenceClient]:
    client = PresenceClient(cmd_server.ws_url, f"cmd-{uuid.uuid4().hex[:8]}", user_id="watcher")
    client.display_name = "Watcher"
    await client.connect(timeout=WAIT)
    yield client
    await client.close()


async def manage(*args: str) -> asyncio.subprocess.Process:
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "manage.py",
        *args,
        cwd=PROJECT,
        env=env,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )


async def read_until(process: asyncio.subprocess.Process, text: str) -> str:
    """Lines of the command's output up to the first containing ``text``."""
    assert process.stdout is not None
    seen = []
    while True:
        line = await asyncio.wait_for(process.stdout.readline(), WAIT)
        assert line, f"the command ended before printing {text!r}:\n{b''.join(seen).decode()}"
        seen.append(line)
        if text in line.decode():
            return b"".join(seen).decode()


async def test_presence_client_prints_events_and_sends_stdin_lines_as_chat(
    cmd_server: Server, watcher: PresenceClient
) -> None:
    room = watcher.room_id
    process = await manage(
        "presence_client", room, "--url", cmd_server.ws_url, "--user", "term", "--name", "Term"
    )
    assert process.stdin is not None
    try:
        await read_until(process, f"* joined {room}")
        heard = asyncio.ensure_future(watcher.wait_for("chat", lambda c: not c.mine, WAIT))
        process.stdin.write(b"hello from the terminal\n")
        await process.stdin.drain()
        line = await heard
        assert (line.message, line.name) == ("hello from the terminal", "Term")
        await watcher.chat("hello terminal")
        await read_until(process, "<Watcher> hello terminal")
        process.stdin.write(b"/quit\n")
        await process.stdin.drain()
        assert await asyncio.wait_for(process.wait(), WAIT) == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def test_presence_bots_walk_and_chat_then_leave(
    cmd_server: Server, watcher: PresenceClient
) -> None:
    count = 3
    joined: set[str] = set()
    moved: set[str] = set()
    watcher.on("join", lambda m: joined.add(m.client_id))
    watcher.on("pose", lambda p: moved.add(p["client_id"]))
    chats: list[str] = []
    watcher.on("chat", lambda c: chats.append(c.name))
    process = await manage(
        "presence_bots",
        watcher.room_id,
        "--url",
        cmd_server.ws_url,
        "--count",
        str(count),
        "--hz",
        "10",
        "--duration",
        "2",
        "--chat-every",
        "0.5",
    )
    output = await read_until(process, "poses and")
    assert await asyncio.wait_for(process.wait(), WAIT) == 0, output
    assert f"{count} bots joined" in output
    assert len(joined) == count
    assert moved == joined, "every bot walked"
    assert {name for name in chats} == {f"Bot {i}" for i in range(count)}
    assert len(watcher.room.members) == 1, "the bots left"


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--count", "0", "--count must be 1..1000"),
        ("--count", "1001", "--count must be 1..1000"),
        ("--hz", "0", "--hz must be"),
        ("--hz", "61", "--hz must be"),
    ],
)
def test_presence_bots_refuses_counts_and_rates_out_of_range(
    option: str, value: str, message: str
) -> None:
    with pytest.raises(CommandError, match=message):
        call_command("presence_bots", "r1", option, value, "--duration", "0")


def test_presence_client_says_who_must_join() -> None:
    with pytest.raises(CommandError, match="--user ID"):
        call_command("presence_client", "r1")
