"""A room's shared state and the decisions that change it.

Pure: the caller passes the time and an id generator; the room answers with
an :class:`Outcome` (replies to the sender, broadcasts to the room, a chat line
to persist). Nothing here sends, stores or awaits.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from dataclasses import dataclass, field

from presence.protocol import core_pb2 as pb
from presence.protocol.codec import EncodedMessage
from presence.protocol.codes import ErrorCode
from presence.protocol.envelope import error_message, stamp
from presence.protocol.errors import ProtocolError
from presence.protocol.moderation import Action, ModerationOrder, may_give, order_from_client


@dataclass(slots=True)
class Player:
    """A member of the room as the others see it."""

    client_id: str
    user_id: str
    display_name: str
    avatar_url: str = ""
    avatar_config: pb.AvatarConfig | None = None
    position: pb.Vector3 | None = None
    rotation: pb.Quaternion | None = None
    moderator: bool = False  # may moderate the room (presence.moderate_room)

    def presence_data(self, host_client_id: str) -> pb.PresenceData:
        """The player's data as carried by ``PresenceEvent``."""
        data = pb.PresenceData(
            display_name=self.display_name,
            avatar_url=self.avatar_url,
            host_client_id=host_client_id,
        )
        if self.avatar_config is not None:
            data.avatar_config.CopyFrom(self.avatar_config)
        if self.position is not None:
            data.position.CopyFrom(self.position)
        if self.rotation is not None:
            data.rotation.CopyFrom(self.rotation)
        return data

    @classmethod
    def from_snapshot(cls, snap: pb.PlayerSnapshot, *, user_id: str = "") -> Player:
        """A player known only from its snapshot (a member of another instance)."""
        return cls(
            client_id=snap.client_id,
            user_id=user_id,
            display_name=snap.display_name,
            avatar_url=snap.avatar_url,
            avatar_config=snap.avatar_config if snap.HasField("avatar_config") else None,
            position=snap.position if snap.HasField("position") else None,
            rotation=snap.rotation if snap.HasField("rotation") else None,
        )

    def snapshot(self) -> pb.PlayerSnapshot:
        """The player as listed in a joiner's ``initial_state``."""
        snap = pb.PlayerSnapshot(
            client_id=self.client_id, display_name=self.display_name, avatar_url=self.avatar_url
        )
        if self.avatar_config is not None:
            snap.avatar_config.CopyFrom(self.avatar_config)
        if self.position is not None:
            snap.position.CopyFrom(self.position)
        if self.rotation is not None:
            snap.rotation.CopyFrom(self.rotation)
        return snap


@dataclass(slots=True)
class Entity:
    """A spawned, owned object in the room."""

    entity_id: str
    template_id: str
    owner_id: str
    components: dict[str, str] = field(default_factory=dict)
    position: pb.Vector3 | None = None
    rotation: pb.Quaternion | None = None

    def snapshot(self) -> pb.EntitySnapshot:
        """The entity as listed in a joiner's ``initial_state``."""
        snap = pb.EntitySnapshot(
            id=self.entity_id,
            template_id=self.template_id,
            owner_id=self.owner_id,
            components=self.components,
        )
        if self.position is not None:
            snap.position.CopyFrom(self.position)
        if self.rotation is not None:
            snap.rotation.CopyFrom(self.rotation)
        return snap


@dataclass(slots=True)
class Broadcast:
    """A message for the room's members, except ``exclude`` (the sender)."""

    message: pb.Message
    reliable: bool
    exclude: str = ""
    # Volatile messages with the same non-empty key replace each other (latest wins).
    volatile_key: str = ""
    _encoded: EncodedMessage | None = field(default=None, repr=False, compare=False)

    def encoded(self) -> EncodedMessage:
        """The message encoded once, however many recipients and processes."""
        if self._encoded is None:
            self._encoded = EncodedMessage.of(self.message)
        return self._encoded


@dataclass(slots=True)
class Outcome:
    """What handling one event produced."""

    replies: list[pb.Message] = field(default_factory=list)
    broadcasts: list[Broadcast] = field(default_factory=list)
    chat_text: str | None = None
    moderation: ModerationOrder | None = None  # to enforce on every instance


@dataclass(slots=True)
class RoomChanges:
    """What changed in a room since it was last written to the shared registry."""

    players: list[Player] = field(default_factory=list)
    entities: list[Entity] = field(default_factory=list)
    removed_entities: list[tuple[str, str]] = field(default_factory=list)  # (owner, entity id)
    messages: int = 0  # client messages handled since the last write

    def __bool__(self) -> bool:
        return bool(self.players or self.entities or self.removed_entities or self.messages)

    def extend(self, later: RoomChanges) -> None:
        """Add ``later``'s changes to these, the later change of an entity winning."""
        self.players = list({p.client_id: p for p in [*self.players, *later.players]}.values())
        respawned = {e.entity_id for e in later.entities}
        removed = {entity_id for _, entity_id in later.removed_entities}
        entities = {e.entity_id: e for e in self.entities if e.entity_id not in removed}
        entities.update((e.entity_id, e) for e in later.entities)
        self.entities = list(entities.values())
        self.removed_entities = [
            *(r for r in self.removed_entities if r[1] not in respawned),
            *later.removed_entities,
        ]
        self.messages += later.messages


@dataclass(frozen=True, slots=True)
class RoomLimits:
    """Bounds on what clients can make a room hold."""

    entities: int = 1024
    entities_per_client: int = 128
    components_per_entity: int = 64


def _component_text(value: bytes) -> str:
    # EntityUpdate carries bytes, snapshots carry strings: keep UTF-8 as is and
    # base64 anything else, marked so a client can tell.
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        return "base64:" + base64.b64encode(value).decode("ascii")


class RoomState:
    """Members in join order, entities, and the host of one room.

    With ``elects_host`` (one process) the room picks its host itself. Without
    it (members spread over instances) the shared registry decides: ``join``
    takes the host it elected and :meth:`hand_over` applies a hand-over.
    """

    def __init__(
        self,
        room_id: str,
        *,
        next_id: Callable[[], str],
        limits: RoomLimits | None = None,
        elects_host: bool = True,
    ) -> None:
        self.room_id = room_id
        self.players: dict[str, Player] = {}  # insertion order = join order
        self.entities: dict[str, Entity] = {}
        self.host_client_id = ""
        self.elects_host = elects_host
        self._next_id = next_id
        self._limits = limits or RoomLimits()
        self._changed_players: set[str] = set()
        self._changed_entities: set[str] = set()
        self._removed_entities: list[tuple[str, str]] = []
        self._messages = 0
        self.muted: set[str] = set()  # members whose chat and voice are dropped

    def __len__(self) -> int:
        return len(self.players)

    # --- membership -------------------------------------------------------

    def join(self, player: Player, *, now_ms: int, host_client_id: str | None = None) -> Outcome:
        """Add ``player``; the others hear JOIN.

        The host is ``host_client_id`` when given (the registry's choice), else
        the first member.
        """
        self.players[player.client_id] = player
        if host_client_id is not None:
            self.host_client_id = host_client_id
        elif not self.host_client_id:
            self.host_client_id = player.client_id
        event = pb.PresenceEvent(
            client_id=player.client_id,
            event_type=pb.JOIN,
            data=player.presence_data(self.host_client_id),
        )
        joined = self._reliable(
            pb.Message(presence_event=event), now_ms, sender_id=player.client_id
        )
        return Outcome(broadcasts=[joined])

    def world_state(self, *, for_client: str, now_ms: int) -> pb.WorldState:
        """Every other present player and every live entity, for a joiner."""
        return pb.WorldState(
            players=[p.snapshot() for cid, p in self.players.items() if cid != for_client],
            entities=[e.snapshot() for e in self.entities.values()],
            last_update=now_ms,
        )

    def leave(self, client_id: str, *, now_ms: int) -> Outcome:
        """Remove a member: LEAVE, despawn its entities, hand the host role on.

        Without ``elects_host`` the host stays until :meth:`hand_over`.
        """
        player = self.players.pop(client_id, None)
        if player is None:
            return Outcome()
        self._changed_players.discard(client_id)
        self.muted.discard(client_id)
        owned = [e.entity_id for e in self.entities.values() if e.owner_id == client_id]
        for entity_id in owned:
            del self.entities[entity_id]
            self._changed_entities.discard(entity_id)
        broadcasts = self.departure(client_id, owned, now_ms=now_ms)
        if self.elects_host and self.host_client_id == client_id:
            successor = next(iter(self.players.values()), None)
            broadcasts.extend(self.hand_over(successor, now_ms=now_ms))
        return Outcome(broadcasts=broadcasts)

    def departure(self, client_id: str, entity_ids: list[str], *, now_ms: int) -> list[Broadcast]:
        """The LEAVE of ``client_id`` and the despawns of its entities, in that order."""
        leave = pb.Message(
            presence_event=pb.PresenceEvent(client_id=client_id, event_type=pb.LEAVE)
        )
        broadcasts = [self._reliable(leave, now_ms, sender_id=client_id)]
        for entity_id in entity_ids:
            despawn = pb.Message(entity_despawn=pb.EntityDespawn(entity_id=entity_id))
            broadcasts.append(self._reliable(despawn, now_ms, sender_id=client_id))
        return broadcasts

    def hand_over(self, host: Player | None, *, now_ms: int) -> list[Broadcast]:
        """Make ``host`` (of any instance) the host; everyone hears it as an UPDATE."""
        self.host_client_id = host.client_id if host is not None else ""
        if host is None:
            return []
        event = pb.PresenceEvent(
            client_id=host.client_id,
            event_type=pb.UPDATE,
            data=host.presence_data(self.host_client_id),
        )
        return [self._reliable(pb.Message(presence_event=event), now_ms)]

    def take_changes(self) -> RoomChanges:
        """Players and entities changed since the last call (for the shared registry)."""
        changes = RoomChanges(
            players=[self.players[c] for c in self._changed_players if c in self.players],
            entities=[self.entities[e] for e in self._changed_entities if e in self.entities],
            removed_entities=self._removed_entities,
            messages=self._messages,
        )
        self._messages = 0
        self._changed_players = set()
        self._changed_entities = set()
        self._removed_entities = []
        return changes

    # --- client messages --------------------------------------------------

    def handle(self, client_id: str, kind: str, message: pb.Message, *, now_ms: int) -> Outcome:
        """Apply a validated client message from member ``client_id``."""
        client_message_id = message.message_id  # handlers re-stamp the envelope
        self._messages += 1
        try:
            handler = getattr(self, f"_on_{kind}")
            outcome: Outcome = handler(client_id, message, now_ms)
        except ProtocolError as refused:
            reply = error_message(
                refused.code, refused.message, now_ms=now_ms, ref_message_id=client_message_id
            )
            return Outcome(replies=[reply])
        if client_message_id and any(b.reliable for b in outcome.broadcasts):
            ack = pb.Message(ack=pb.Ack(message_id=client_message_id))
            outcome.replies.append(stamp(ack, now_ms=now_ms))
        return outcome

    def _on_position_update(self, client_id: str, message: pb.Message, now_ms: int) -> Outcome:
        update = message.position_update
        target: Player | Entity
        if update.entity_id:
            target = self._owned_entity(client_id, update.entity_id)
            self._changed_entities.add(update.entity_id)
        else:
            target = self.players[client_id]
            self._changed_players.add(client_id)
        if update.HasField("position"):
            target.position = update.position
        if update.HasField("rotation"):
            target.rotation = update.rotation
        stamp(message, now_ms=now_ms, sender_id=client_id)
        key = f"{client_id}/{update.entity_id}"
        return Outcome(broadcasts=[Broadcast(message, False, client_id, key)])

    def _on_voice_data(self, client_id: str, message: pb.Message, now_ms: int) -> Outcome:
        if client_id in self.muted:
            return Outcome()  # dropped: a muted member is not heard
        message.voice_data.from_client_id = client_id  # like chat: never the client's word
        stamp(message, now_ms=now_ms, sender_id=client_id)
        return Outcome(broadcasts=[Broadcast(message, False, client_id)])

    def _on_entity_spawn(self, client_id: str, message: pb.Message, now_ms: int) -> Outcome:
        spawn = message.entity_spawn
        existing = self.entities.get(spawn.entity_id)
        if existing is not None:
            if existing.owner_id != client_id:
                raise ProtocolError(ErrorCode.NOT_OWNER, "entity belongs to another client")
            raise ProtocolError(ErrorCode.BAD_MESSAGE, "entity already exists")
        owned = sum(1 for e in self.entities.values() if e.owner_id == client_id)
        if len(self.entities) >= self._limits.entities:
            raise ProtocolError(ErrorCode.TOO_LARGE, "the room holds its maximum of entities")
        if owned >= self._limits.entities_per_client:
            raise ProtocolError(ErrorCode.TOO_LARGE, "you own the maximum number of entities")
        if len(spawn.components) > self._limits.components_per_entity:
            raise ProtocolError(ErrorCode.TOO_LARGE, "entity has too many components")
        spawn.owner_id = client_id
        self.entities[spawn.entity_id] = Entity(
            entity_id=spawn.entity_id,
            template_id=spawn.template_id,
            owner_id=client_id,
            components=dict(spawn.components),
        )
        self._changed_entities.add(spawn.entity_id)
        return self._relay(client_id, message, now_ms)

    def _on_entity_update(self, client_id: str, message: pb.Message, now_ms: int) -> Outcome:
        update = message.entity_update
        entity = self._owned_entity(client_id, update.entity_id)
        merged = dict(entity.components)
        merged.update((k, _component_text(v)) for k, v in update.components.items())
        if len(merged) > self._limits.components_per_entity:
            raise ProtocolError(ErrorCode.TOO_LARGE, "entity has too many components")
        entity.components = merged
        self._changed_entities.add(entity.entity_id)
        return self._relay(client_id, message, now_ms)

    def _on_entity_despawn(self, client_id: str, message: pb.Message, now_ms: int) -> Outcome:
        entity = self._owned_entity(client_id, message.entity_despawn.entity_id)
        del self.entities[entity.entity_id]
        self._changed_entities.discard(entity.entity_id)
        self._removed_entities.append((client_id, entity.entity_id))
        return self._relay(client_id, message, now_ms)

    def _on_chat_message(self, client_id: str, message: pb.Message, now_ms: int) -> Outcome:
        if client_id in self.muted:
            raise ProtocolError(
                ErrorCode.MUTED, "you are muted in this room: your chat is not sent until unmuted"
            )
        chat = message.chat_message
        chat.from_client_id = client_id
        chat.timestamp = now_ms
        outcome = self._relay(client_id, message, now_ms)
        outcome.chat_text = chat.message
        return outcome

    def _on_client_hello(self, client_id: str, message: pb.Message, now_ms: int) -> Outcome:
        hello = message.client_hello
        data = pb.PresenceData(display_name=hello.display_name, avatar_url=hello.avatar_url)
        if hello.HasField("avatar_config"):
            data.avatar_config.CopyFrom(hello.avatar_config)
        player = self.players[client_id]
        # PROTOCOL.md section 5: a ClientHello that changes no name or avatar is
        # not broadcast (clients send one after every resume, which stays unseen).
        if (
            data.display_name in ("", player.display_name)
            and data.avatar_url in ("", player.avatar_url)
            and (not data.HasField("avatar_config") or data.avatar_config == player.avatar_config)
        ):
            return Outcome()
        return self._update_player(client_id, data, now_ms)

    def _on_presence_event(self, client_id: str, message: pb.Message, now_ms: int) -> Outcome:
        return self._update_player(client_id, message.presence_event.data, now_ms)

    def _on_ping(self, client_id: str, message: pb.Message, now_ms: int) -> Outcome:
        pong = pb.Message(
            message_id=message.message_id,
            pong=pb.Pong(client_time_ms=message.ping.client_time_ms, server_time_ms=now_ms),
        )
        stamp(pong, now_ms=now_ms, message_id=message.message_id)
        return Outcome(replies=[pong])

    def _on_ack(self, client_id: str, message: pb.Message, now_ms: int) -> Outcome:
        return Outcome()  # acknowledgements are the session's business

    def _on_moderation(self, client_id: str, message: pb.Message, now_ms: int) -> Outcome:
        order = order_from_client(message.WhichOneof("payload") or "", message, client_id)
        assert order is not None
        player = self.players[client_id]
        if not may_give(order, moderator=player.moderator, host=self.host_client_id == client_id):
            raise ProtocolError(ErrorCode.FORBIDDEN, "you may not moderate this room")
        targeted = order.action in (Action.KICK, Action.MUTE, Action.UNMUTE)
        if targeted and order.target_client_id in ("", client_id):
            raise ProtocolError(ErrorCode.BAD_MESSAGE, "name another member as the target")
        return self.moderate(order, now_ms=now_ms)

    def moderate(self, order: ModerationOrder, *, now_ms: int) -> Outcome:
        """Apply ``order`` to this room's state and announce it to the room."""
        self.obey(order)
        broadcast = self._reliable(order.message(), now_ms, sender_id=order.by_client_id)
        return Outcome(broadcasts=[broadcast], moderation=order)

    def obey(self, order: ModerationOrder) -> None:
        """Apply the part of ``order`` the room's state holds (who is muted); idempotent."""
        if order.action is Action.MUTE:
            self.muted.add(order.target_client_id)
        elif order.action is Action.UNMUTE:
            self.muted.discard(order.target_client_id)

    _on_kick_player = _on_mute_player = _on_lock_room = _on_moderation

    # --- helpers ----------------------------------------------------------

    def _owned_entity(self, client_id: str, entity_id: str) -> Entity:
        entity = self.entities.get(entity_id)
        if entity is None or entity.owner_id != client_id:
            raise ProtocolError(ErrorCode.NOT_OWNER, "you do not own that entity")
        return entity

    def _update_player(self, client_id: str, data: pb.PresenceData, now_ms: int) -> Outcome:
        player = self.players[client_id]
        if data.display_name:
            player.display_name = data.display_name
        if data.avatar_url:
            player.avatar_url = data.avatar_url
        if data.HasField("avatar_config"):
            player.avatar_config = data.avatar_config
        if data.HasField("position"):
            player.position = data.position
        if data.HasField("rotation"):
            player.rotation = data.rotation
        self._changed_players.add(client_id)
        event = pb.PresenceEvent(
            client_id=client_id,
            event_type=pb.UPDATE,
            data=player.presence_data(self.host_client_id),
        )
        return self._relay(client_id, pb.Message(presence_event=event), now_ms)

    def _relay(self, client_id: str, message: pb.Message, now_ms: int) -> Outcome:
        return Outcome(broadcasts=[self._reliable(message, now_ms, sender_id=client_id)])

    def _reliable(self, message: pb.Message, now_ms: int, *, sender_id: str = "") -> Broadcast:
        stamp(message, now_ms=now_ms, sender_id=sender_id, message_id=self._next_id())
        return Broadcast(message, True, exclude=sender_id)
