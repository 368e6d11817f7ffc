"""A TCP proxy that can cut its connections, as a network failure would.

Put in front of a server (``CutProxy(port)``, ``await proxy.start()``), it
forwards bytes both ways. ``cut()`` aborts every connection through it (TCP
reset, no WebSocket close frame); ``down()`` refuses new connections until
``up()``; ``deafen()`` drops what the server sends (its answers are lost)
until ``up()``. Used by the client tests: the browser page loaded through it,
the Python client connected through it.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with a TCP reset (SO_LINGER 0), not an orderly FIN."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


class CutProxy:
    """Forwards 127.0.0.1:``port`` (after ``start``) to 127.0.0.1:``target_port``."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = 0
        self.refusing = False
        self.deaf = False
        self.refused = 0  # connection attempts reset while refusing
        self._pairs: set[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = set()
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> CutProxy:
        """Listen on a free port."""
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    @property
    def connections(self) -> int:
        return len(self._pairs)

    def cut(self) -> None:
        """Reset every connection through the proxy."""
        for inbound, outbound in list(self._pairs):
            _reset(inbound)
            _reset(outbound)
        self._pairs.clear()

    def down(self) -> None:
        """Refuse (reset) new connections."""
        self.refusing = True

    def deafen(self) -> None:
        """Drop every byte the server sends from now on."""
        self.deaf = True

    def up(self) -> None:
        """Accept and forward normally again."""
        self.refusing = False
        self.deaf = False

    async def close(self) -> None:
        """Stop listening and reset what is still open."""
        self.cut()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for task in list(self._tasks):
            task.cancel()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.refusing:
            self.refused += 1
            _reset(writer)
            return
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            _reset(writer)
            return
        pair = (writer, up_writer)
        self._pairs.add(pair)
        for task in (
            asyncio.create_task(self._pump(reader, up_writer, pair, downstream=False)),
            asyncio.create_task(self._pump(up_reader, writer, pair, downstream=True)),
        ):
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _pump(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        pair: tuple[asyncio.StreamWriter, asyncio.StreamWriter],
        *,
        downstream: bool,
    ) -> None:
        try:
            while data := await reader.read(65536):
                if downstream and self.deaf:
                    continue
                writer.write(data)
                await writer.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            if pair in self._pairs:
                self._pairs.discard(pair)
                for side in pair:
                    side.close()
