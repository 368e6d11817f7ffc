"""Moderation orders: kick, mute, lock -- who may give them and what the room hears.

Pure. An order comes from staff in the admin or from a client's ``KickPlayer``
/ ``MutePlayer`` / ``LockRoom``; every instance enforces it for its own members
and the room hears it as ``PlayerKicked`` / ``PlayerMuted`` / ``RoomLocked``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any

from presence.protocol import core_pb2 as pb


class Action(StrEnum):
    """What an order does (also the audit record's ``action``)."""

    KICK = "kick"
    MUTE = "mute"
    UNMUTE = "unmute"
    LOCK = "lock"
    UNLOCK = "unlock"


@dataclass(frozen=True, slots=True)
class ModerationOrder:
    """One moderation order for one room."""

    action: Action
    target_client_id: str = ""  # kick, mute, unmute
    reason: str = ""
    by_client_id: str = ""  # the moderating client; empty for staff in the admin
    ban_seconds: int = 0  # kick: also keep the target's user out this long

    def as_event(self) -> dict[str, Any]:
        """The order as channel-layer event data (msgpack-friendly)."""
        data = asdict(self)
        data["action"] = str(self.action)
        return data

    @classmethod
    def from_event(cls, data: dict[str, Any]) -> ModerationOrder:
        """The order an :meth:`as_event` dict describes."""
        return cls(
            action=Action(data["action"]),
            target_client_id=str(data.get("target_client_id", "")),
            reason=str(data.get("reason", "")),
            by_client_id=str(data.get("by_client_id", "")),
            ban_seconds=int(data.get("ban_seconds", 0)),
        )

    def message(self) -> pb.Message:
        """What the room hears about the order."""
        if self.action is Action.KICK:
            return pb.Message(
                player_kicked=pb.PlayerKicked(
                    kicked_client_id=self.target_client_id,
                    kicked_by_client_id=self.by_client_id,
                    reason=self.reason,
                )
            )
        if self.action in (Action.MUTE, Action.UNMUTE):
            return pb.Message(
                player_muted=pb.PlayerMuted(
                    muted_client_id=self.target_client_id,
                    muted=self.action is Action.MUTE,
                    reason=self.reason,
                )
            )
        return pb.Message(
            room_locked=pb.RoomLocked(
                locked=self.action is Action.LOCK,
                locked_by_client_id=self.by_client_id,
                reason=self.reason,
            )
        )


def order_from_client(kind: str, message: pb.Message, by_client_id: str) -> ModerationOrder | None:
    """The order a client's moderation message asks for (``None``: not one)."""
    if kind == "kick_player":
        kick = message.kick_player
        return ModerationOrder(Action.KICK, kick.target_client_id, kick.reason, by_client_id)
    if kind == "mute_player":
        mute = message.mute_player
        action = Action.MUTE if mute.muted else Action.UNMUTE
        return ModerationOrder(action, mute.target_client_id, mute.reason, by_client_id)
    if kind == "lock_room":
        lock = message.lock_room
        action = Action.LOCK if lock.locked else Action.UNLOCK
        return ModerationOrder(action, "", lock.reason, by_client_id)
    return None


def may_give(order: ModerationOrder, *, moderator: bool, host: bool) -> bool:
    """A moderator (``presence.moderate_room``) may give every order; the host may lock."""
    return moderator or (host and order.action in (Action.LOCK, Action.UNLOCK))
