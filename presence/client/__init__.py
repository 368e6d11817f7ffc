"""The Python client of the presence service: asyncio, ``websockets``, no Django.

    from presence.client import PresenceClient

See :mod:`presence.client.client` for the connection, :mod:`.model` for the
room model and :mod:`.policy` for the close-code table and backoff.
"""

from presence.client.client import (
    ClientClosed,
    Hello,
    PresenceClient,
    ServerError,
    Socket,
    SocketClosed,
    StateChange,
    decode,
    encode,
)
from presence.client.model import ChatLine, Entity, Member, RoomModel, Vec3
from presence.client.policy import CLOSE_POLICY, Action, Backoff, CloseAction, close_action

__all__ = [
    "CLOSE_POLICY",
    "Action",
    "Backoff",
    "ChatLine",
    "ClientClosed",
    "CloseAction",
    "Entity",
    "Hello",
    "Member",
    "PresenceClient",
    "RoomModel",
    "ServerError",
    "Socket",
    "SocketClosed",
    "StateChange",
    "Vec3",
    "close_action",
    "decode",
    "encode",
]
