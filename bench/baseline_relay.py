"""Baseline a: the bare ``websockets`` relay the service is measured against.

``/ws/{room}``: a dict of rooms; every frame received is forwarded as it is
to every other member of the room, with ``websockets.broadcast`` (no parsing,
no backpressure, one write per recipient). Nothing else: no hello, no presence,
no validation. Run it as its own process::

    python -m bench.baseline_relay --port 8765
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal

from websockets.asyncio.server import ServerConnection, broadcast, serve

rooms: dict[str, set[ServerConnection]] = {}


async def relay(ws: ServerConnection) -> None:
    """One connection: join its room, forward each frame to the others, leave."""
    path = ws.request.path.partition("?")[0] if ws.request is not None else ""
    if not path.startswith("/ws/") or len(path) == len("/ws/"):
        await ws.close(4400, "path must be /ws/{room}")
        return
    room = rooms.setdefault(path, set())
    room.add(ws)
    try:
        async for message in ws:
            broadcast([member for member in room if member is not ws], message)
    finally:
        room.discard(ws)
        if not room:
            rooms.pop(path, None)


async def main(host: str, port: int) -> None:
    """Serve until SIGTERM or SIGINT."""
    stop = asyncio.get_running_loop().create_future()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.cancel)
    # compression=None: the generator does not offer permessage-deflate anyway;
    # everything else is the library's defaults.
    async with serve(relay, host, port, compression=None):
        print(f"baseline relay on ws://{host}:{port}/ws/{{room}}", flush=True)
        with contextlib.suppress(asyncio.CancelledError):
            await stop


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    asyncio.run(main(args.host, args.port))
