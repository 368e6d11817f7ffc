"""The room as a client knows it: members with their last pose, entities, host, chat. Pure.

:meth:`RoomModel.apply` takes one server message and returns the events it
causes as ``(name, detail)`` pairs (the names of the JavaScript client).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from presence.protocol import core_pb2 as pb

Event = tuple[str, Any]
_PRESENCE_KINDS = {
    pb.PRESENCE_JOIN: "JOIN",
    pb.PRESENCE_LEAVE: "LEAVE",
    pb.PRESENCE_UPDATE: "UPDATE",
}


@dataclass(slots=True)
class Vec3:
    """A position in metres."""

    x: float = 0.0
    y: float = 0.0
    z: float = 0.0

    @classmethod
    def of(cls, v: pb.Vector3) -> Vec3:
        return cls(v.x, v.y, v.z)


@dataclass(slots=True)
class Member:
    """One member of the room; ``position`` is the last pose seen (metres)."""

    client_id: str
    display_name: str = ""
    avatar_url: str = ""
    position: Vec3 = field(default_factory=Vec3)
    rotation: tuple[float, float, float, float] | None = None
    muted: bool = False


@dataclass(slots=True)
class Entity:
    """A spawned entity; ``components`` as text (EntityUpdate bytes decoded as UTF-8)."""

    id: str
    template_id: str = ""
    owner_id: str = ""
    components: dict[str, str] = field(default_factory=dict)
    position: Vec3 = field(default_factory=Vec3)


@dataclass(slots=True)
class ChatLine:
    """One chat line; ``timestamp`` in ms since the epoch (0: an own line not yet stamped)."""

    from_client_id: str
    name: str
    message: str
    timestamp: int = 0
    type: str = "NORMAL"
    mine: bool = False
    history: bool = False  # from the room's recent chat in a ServerHello
    message_id: str = ""  # own lines: the id the server acknowledges
    acked: bool = False


def _quat(q: pb.Quaternion) -> tuple[float, float, float, float]:
    return (q.x, q.y, q.z, q.w)


class RoomModel:
    """Members, entities, host, lock and chat history of one room."""

    def __init__(self, *, chat_history: int = 500) -> None:
        self.chat_history = chat_history
        self.id = ""
        self.me = ""
        self.host = ""
        self.locked = False
        self.members: OrderedDict[str, Member] = OrderedDict()
        self.entities: dict[str, Entity] = {}
        self.chat: list[ChatLine] = []
        self.my_past_ids: set[str] = set()

    def name_of(self, client_id: str) -> str:
        """A member's display name, else the id itself."""
        member = self.members.get(client_id)
        return member.display_name if member and member.display_name else client_id

    def hello(self, hello: pb.ServerHello, display_name: str, *, resumed: bool) -> list[Event]:
        """A ServerHello: a fresh session rebuilds the model from ``initial_state``."""
        if resumed:
            return []
        if self.me:
            self.my_past_ids.add(self.me)
        self.id = hello.room_id or self.id
        self.me = hello.assigned_client_id
        self.host = hello.host_client_id
        self.locked = False
        self.members.clear()
        self.entities.clear()
        state = hello.initial_state
        for p in state.players:
            self.members[p.client_id] = Member(
                p.client_id,
                p.display_name or p.client_id,
                p.avatar_url,
                Vec3.of(p.position),
                _quat(p.rotation) if p.HasField("rotation") else None,
            )
        if self.me not in self.members:
            self.members[self.me] = Member(self.me, display_name or self.me)
        for e in state.entities:
            self.entities[e.id] = Entity(
                e.id, e.template_id, e.owner_id, dict(e.components), Vec3.of(e.position)
            )
        events: list[Event] = []
        seen = {(c.from_client_id, c.timestamp, c.message) for c in self.chat}
        mine_sent = {c.message for c in self.chat if c.mine}
        for c in state.recent_chat:
            line = self._line(c, history=True)
            if line.from_client_id in self.my_past_ids and line.message in mine_sent:
                continue  # an own line of an earlier session, already shown as mine
            if (line.from_client_id, line.timestamp, line.message) in seen:
                continue
            self.push_chat(line)
            events.append(("chat", line))
        return events

    def _line(self, chat: pb.ChatMessage, *, history: bool, sender: str = "") -> ChatLine:
        origin = chat.from_client_id or sender
        return ChatLine(
            from_client_id=origin,
            name=self.name_of(origin),
            message=chat.message,
            timestamp=chat.timestamp,
            type=pb.ChatMessageType.Name(chat.type),
            mine=origin == self.me,
            history=history,
        )

    def push_chat(self, line: ChatLine) -> None:
        """Keep ``line``, dropping the oldest beyond ``chat_history``."""
        self.chat.append(line)
        del self.chat[: max(0, len(self.chat) - self.chat_history)]

    def apply(self, msg: pb.Message) -> list[Event]:
        """One server message (not a batch, hello, ack, error or ping) applied."""
        kind = msg.WhichOneof("payload")
        sender = msg.sender_id
        if kind == "presence_event":
            return self._presence(msg.type, msg.presence_event, sender)
        if kind == "position_update":
            return self._pose(sender, msg.position_update)
        if kind == "chat_message":
            line = self._line(msg.chat_message, history=False, sender=sender)
            self.push_chat(line)
            return [("chat", line)]
        if kind == "entity_spawn":
            s = msg.entity_spawn
            entity = Entity(s.entity_id, s.template_id, s.owner_id or sender, dict(s.components))
            self.entities[entity.id] = entity
            return [("spawn", entity)]
        if kind == "entity_update":
            u = msg.entity_update
            changed = {k: v.decode("utf-8", "replace") for k, v in u.components.items()}
            known = self.entities.get(u.entity_id)
            if known is not None:
                known.components.update(changed)
            return [("entityUpdate", {"entity_id": u.entity_id, "components": changed})]
        if kind == "entity_despawn":
            gone = self.entities.pop(msg.entity_despawn.entity_id, None)
            return [("despawn", {"entity_id": msg.entity_despawn.entity_id, "entity": gone})]
        if kind == "player_kicked":
            k = msg.player_kicked
            detail = {"client_id": k.kicked_client_id, "by": k.kicked_by_client_id}
            return [("kicked", {**detail, "reason": k.reason, "me": k.kicked_client_id == self.me})]
        if kind == "player_muted":
            m = msg.player_muted
            member = self.members.get(m.muted_client_id)
            if member is not None:
                member.muted = m.muted
            me = m.muted_client_id == self.me
            muted = {"client_id": m.muted_client_id, "muted": m.muted, "reason": m.reason, "me": me}
            return [("muted", muted)]
        if kind == "room_locked":
            self.locked = msg.room_locked.locked
            locked = msg.room_locked
            by, reason = locked.locked_by_client_id, locked.reason
            return [("locked", {"locked": self.locked, "by": by, "reason": reason})]
        return []

    def _presence(self, type_: pb.MessageType, event: pb.PresenceEvent, sender: str) -> list[Event]:
        kind = _PRESENCE_KINDS.get(type_) or pb.PresenceEventType.Name(event.event_type)
        client_id = event.client_id or sender
        data = event.data
        events: list[Event] = []
        if kind == "LEAVE":
            events.append(
                ("leave", {"client_id": client_id, "member": self.members.pop(client_id, None)})
            )
        elif client_id:
            known = self.members.get(client_id)
            member = known or Member(client_id, client_id)
            if data.display_name:
                member.display_name = data.display_name
            if data.avatar_url:
                member.avatar_url = data.avatar_url
            if data.HasField("position") and client_id != self.me:
                member.position = Vec3.of(data.position)
            self.members[client_id] = member
            if kind == "JOIN" or known is None:
                events.append(("join", member))
            elif data.display_name or data.avatar_url:
                events.append(("update", member))
        if data.host_client_id and data.host_client_id != self.host:
            previous, self.host = self.host, data.host_client_id
            events.append(("host", {"client_id": self.host, "previous": previous}))
        return events

    def _pose(self, sender: str, update: pb.PositionUpdate) -> list[Event]:
        position = Vec3.of(update.position)
        if update.entity_id:
            entity = self.entities.get(update.entity_id)
            if entity is not None:
                entity.position = position
        else:
            member = self.members.get(sender)
            if member is None or sender == self.me:
                return []
            member.position = position
            if update.HasField("rotation"):
                member.rotation = _quat(update.rotation)
        detail = {"client_id": sender, "entity_id": update.entity_id, "position": position}
        return [("pose", detail)]
