"""What ``manage.py presence_client`` and ``presence_bots`` run: plain asyncio, no Django.

The commands only parse their options (presence/management/commands/) and
call :func:`run_terminal` or :func:`run_bots`.
"""

from __future__ import annotations

import asyncio
import json
import math
import random
import sys
import urllib.request
from collections.abc import Callable
from typing import Any, TextIO

from presence.client.client import Hello, PresenceClient, StateChange
from presence.client.model import ChatLine, Entity, Member


def fetch_token(http_url: str, username: str, password: str) -> str:
    """An access token from ``POST {http_url}/api/token/``."""
    request = urllib.request.Request(
        f"{http_url.rstrip('/')}/api/token/",
        data=json.dumps({"username": username, "password": password}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        access: str = json.loads(response.read())["access"]
    return access


def http_of(ws_url: str) -> str:
    """``ws://host:port`` -> ``http://host:port`` (and wss -> https)."""
    return "http" + ws_url.removeprefix("ws") if ws_url.startswith("ws") else ws_url


def describe(name: str, detail: Any, client: PresenceClient) -> str | None:
    """One readable line for an event, or None for events not worth a line."""
    room = client.room
    if name == "hello":
        assert isinstance(detail, Hello)
        how = "resumed" if detail.resumed else "joined"
        return f"* {how} {detail.room_id} as {detail.client_id}; host {room.name_of(detail.host)}"
    if name == "join":
        assert isinstance(detail, Member)
        return None if detail.client_id == room.me else f"* {detail.display_name} joined"
    if name == "leave":
        member = detail["member"]
        return f"* {member.display_name if member else detail['client_id']} left"
    if name == "host":
        return f"* {room.name_of(detail['client_id'])} is now the host"
    if name == "chat":
        assert isinstance(detail, ChatLine)
        return None if detail.mine else f"<{detail.name}> {detail.message}"
    if name == "spawn":
        assert isinstance(detail, Entity)
        return f"* {room.name_of(detail.owner_id)} spawned {detail.template_id} {detail.id}"
    if name == "despawn":
        return f"* {detail['entity_id']} despawned"
    if name == "muted":
        return f"* {room.name_of(detail['client_id'])} {'muted' if detail['muted'] else 'unmuted'}"
    if name == "kicked":
        return f"* {room.name_of(detail['client_id'])} was kicked"
    if name == "locked":
        return f"* room {'locked' if detail['locked'] else 'unlocked'}"
    if name == "error":
        return f"! {detail['code']}: {detail['message']}"
    if name == "state":
        assert isinstance(detail, StateChange)
        if detail.state == "open":
            return None
        if detail.reconnect_in is not None:
            return (
                f"! closed {detail.code} ({detail.meaning}); {detail.state} "
                f"in {detail.reconnect_in:.1f} s"
            )
        if detail.state == "closed":
            return f"! closed {detail.code} ({detail.meaning})"
    return None


EVENTS: tuple[str, ...] = ("hello", "join", "leave", "host", "chat", "spawn", "despawn")
EVENTS += ("muted", "kicked", "locked", "error", "state")


async def run_terminal(
    client: PresenceClient, *, stdin: TextIO = sys.stdin, out: Callable[[str], None] = print
) -> None:
    """Print the room's events; send each stdin line as chat (``/quit`` or EOF leaves)."""
    for name in EVENTS:
        client.on(name, _printer(name, client, out))
    await client.connect(timeout=None)
    loop = asyncio.get_running_loop()
    try:
        while True:
            line = await loop.run_in_executor(None, stdin.readline)
            if not line or line.strip() == "/quit":
                break
            if line.strip():
                await client.chat(line.rstrip("\n"))
    finally:
        await client.close()


def _printer(
    name: str, client: PresenceClient, out: Callable[[str], None]
) -> Callable[[Any], None]:
    def listener(detail: Any) -> None:
        text = describe(name, detail, client)
        if text is not None:
            out(text)

    return listener


async def run_bots(
    make: Callable[[int], PresenceClient],
    *,
    count: int,
    hz: float,
    duration: float | None,
    chat_every: float = 10.0,
    out: Callable[[str], None] = print,
) -> dict[str, int]:
    """``count`` clients walking in circles at ``hz`` poses a second, chatting now and then.

    Runs ``duration`` seconds (None: until cancelled); returns counts of what was sent.
    """
    bots = [make(i) for i in range(count)]
    await asyncio.gather(*(bot.connect(timeout=30) for bot in bots))
    out(f"{count} bots joined {bots[0].room_id}")
    sent = {"poses": 0, "chats": 0}

    async def walk(index: int, bot: PresenceClient) -> None:
        rng = random.Random(index)
        radius, speed = 2 + rng.random() * 6, 0.3 + rng.random()
        phase, started = rng.random() * math.tau, asyncio.get_running_loop().time()
        next_chat = started + rng.random() * chat_every
        while True:
            now = asyncio.get_running_loop().time()
            angle = phase + speed * (now - started)
            if await bot.move(radius * math.cos(angle), 0.0, radius * math.sin(angle)):
                sent["poses"] += 1
            if chat_every > 0 and now >= next_chat and bot.state == "open":
                next_chat = now + chat_every
                await bot.chat(f"bot {index} says hi at {angle:.2f} rad")
                sent["chats"] += 1
            await asyncio.sleep(1 / hz)

    walkers = [asyncio.create_task(walk(i, bot)) for i, bot in enumerate(bots)]
    try:
        if duration is None:
            await asyncio.gather(*walkers)
        else:
            await asyncio.sleep(duration)
    finally:
        for task in walkers:
            task.cancel()
        await asyncio.gather(*walkers, return_exceptions=True)
        await asyncio.gather(*(bot.close() for bot in bots))
    out(f"sent {sent['poses']} poses and {sent['chats']} chat lines")
    return sent
