"""The pure protocol core: no Django, Channels, asyncio or Redis imports.

Everything that decides (is this frame valid, what must be sent next, who is
host) lives here as plain functions and classes, tested without I/O.
"""

from presence.protocol import core_pb2 as pb

SERVER_VERSION = "graphwiz-presence/0.1.0"

__all__ = ["SERVER_VERSION", "pb"]
