"""Your Django code talks to rooms: read them, chat into them, own entities, moderate.

Every function has an ``a``-prefixed async twin (``send_chat`` / ``asend_chat``):
call the plain one from sync code (views, tasks, shells, management commands),
the async one from async code. They work

* in the server's own process, without Redis: the call runs on the event loop
  of this process's rooms (a sync view under ASGI gets there by itself);
* from any process that shares the instances' ``REDIS_URL`` (web workers,
  Celery tasks, ``manage.py shell``), whichever instance the room's members are
  on: the call goes through the channel layer to an instance that hosts the
  room, which applies it like a message from a member that is the server and
  publishes it as it publishes its members' messages.

Input is checked with the same rules and limits as clients' messages
(PROTOCOL.md sections 2 and 8; a chat line is at most 2,000 characters).
Errors are :class:`RoomError` subclasses: :class:`InvalidRequest` (bad
input), :class:`NotPresent` (nobody in the room, no such member or entity),
:class:`Refused` (the room said no: an entity that exists already or is not
the server's, a limit) and :class:`Unavailable` (Redis down, or the instance
hosting the room did not answer within ``PRESENCE_API_COMMAND_TIMEOUT_SECONDS``).

With nobody in the room, :func:`send_chat` still stores the line (the chat
history and the next joiner's ``recent_chat``) and :func:`lock` still locks
the room for joiners; the entity calls, :func:`kick` and :func:`mute` raise
:class:`NotPresent`. Entities spawned here are owned by ``"server"``; they stay
while the room has members on any instance and go when it empties.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import re
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from channels_redis.pubsub import RedisPubSubChannelLayer

from presence import signals
from presence.cluster.bridge import COMMAND_EVENT, room_group
from presence.cluster.commands import run_command
from presence.cluster.hub import Hub
from presence.cluster.instance import get_hub
from presence.cluster.recent_chat import chat_recorded, get_recent_chat
from presence.cluster.redis_registry import RedisRegistry
from presence.cluster.registry import SERVER_OWNER, Registry, RegistryUnavailable, RoomView
from presence.conf import presence_settings
from presence.protocol import core_pb2 as pb
from presence.protocol.codes import ErrorCode
from presence.protocol.errors import BadFrame
from presence.protocol.moderation import Action, ModerationOrder
from presence.protocol.validation import name_problem, validate_client_message
from presence.storage import selectors, services

SYSTEM_SENDER = "system"  # from_client_id of a line sent without a sender
MAX_SENDER_CHARS = 64  # like a display name
MAX_BAN_SECONDS = 365 * 24 * 3600
ROOM_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
_CLIENT_ID = re.compile(r"c[0-9a-f]{15}")  # what the server assigns to connections

__all__ = [
    "SERVER_OWNER",
    "SYSTEM_SENDER",
    "ChatLine",
    "EntityInfo",
    "InvalidRequest",
    "MemberInfo",
    "NotPresent",
    "Refused",
    "RoomError",
    "RoomInfo",
    "RoomSummary",
    "Unavailable",
    "adespawn_entity",
    "akick",
    "alock",
    "amute",
    "aroom_list",
    "aroom_state",
    "asend_chat",
    "aspawn_entity",
    "aupdate_entity",
    "despawn_entity",
    "kick",
    "lock",
    "mute",
    "room_list",
    "room_state",
    "send_chat",
    "spawn_entity",
    "update_entity",
]


# --- errors ------------------------------------------------------------------


class RoomError(Exception):
    """A call could not be carried out; ``str(error)`` says why and what to change."""


class InvalidRequest(RoomError, ValueError):
    """An argument breaks the rules clients' messages follow (the text says which)."""


class NotPresent(RoomError):
    """Nobody is in the room, or the member or entity named is not there."""


class Refused(RoomError):
    """The room refused the call (``code`` is the ``ErrorCode`` a client would get)."""

    def __init__(self, code: int, text: str) -> None:
        super().__init__(text)
        self.code = code


class Unavailable(RoomError):
    """Redis did not answer, or the instance hosting the room did not answer in time."""


# --- results -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RoomSummary:
    """A room with members: how many, on every instance, and its host's client id."""

    room_id: str
    member_count: int
    host_client_id: str


@dataclass(frozen=True, slots=True)
class MemberInfo:
    """One member (connection) of a room."""

    client_id: str
    user_id: str
    display_name: str
    instance_id: str
    muted: bool
    is_host: bool
    connected_at_ms: int  # milliseconds since the epoch


@dataclass(frozen=True, slots=True)
class EntityInfo:
    """One live entity; position ``(x, y, z)`` and rotation ``(x, y, z, w)`` when known."""

    entity_id: str
    template_id: str
    owner_id: str  # a member's client id, or "server"
    components: dict[str, str]
    position: tuple[float, float, float] | None = None
    rotation: tuple[float, float, float, float] | None = None


@dataclass(frozen=True, slots=True)
class RoomInfo:
    """A room now: members in join order, entities, counters, and whether it is locked."""

    room_id: str
    host_client_id: str
    members: list[MemberInfo] = field(default_factory=list)
    entities: list[EntityInfo] = field(default_factory=list)
    message_count: int = 0  # client messages handled while it had members
    locked: bool = False


@dataclass(frozen=True, slots=True)
class ChatLine:
    """A stored chat line: ``id`` is its history row, ``timestamp`` in ms since the epoch."""

    id: int
    room_id: str
    from_client_id: str
    sender_name: str
    text: str
    timestamp: int


# --- checks ------------------------------------------------------------------


def _room(room_id: str) -> str:
    if not isinstance(room_id, str) or not ROOM_ID.fullmatch(room_id):
        raise InvalidRequest("invalid room id: use 1-64 characters of [A-Za-z0-9._-]")
    return room_id


def _valid(message: pb.Message) -> None:
    """The client rules for ``message`` (PROTOCOL.md section 2), as :class:`InvalidRequest`."""
    try:
        validate_client_message(message, presence_settings().field_limits)
    except BadFrame as bad:
        raise InvalidRequest(bad.message) from None


def _sender(sender: str) -> str:
    if not isinstance(sender, str) or not sender.strip():
        raise InvalidRequest("sender must be a non-empty name")
    if len(sender) > MAX_SENDER_CHARS:
        raise InvalidRequest(f"sender longer than {MAX_SENDER_CHARS} characters")
    problem = name_problem(sender)
    if problem is not None:
        raise InvalidRequest(f"sender {problem}; use printable characters only")
    if _CLIENT_ID.fullmatch(sender) or sender == SERVER_OWNER:
        raise InvalidRequest("sender must not look like a client id or be 'server'")
    return sender


def _floats(name: str, values: Sequence[float] | None, size: int) -> list[float] | None:
    if values is None:
        return None
    try:
        numbers = [float(v) for v in values]
    except (TypeError, ValueError):
        raise InvalidRequest(f"{name} must be {size} numbers") from None
    if len(numbers) != size or not all(math.isfinite(v) for v in numbers):
        raise InvalidRequest(f"{name} must be {size} finite numbers")
    return numbers


def _components(components: Mapping[str, str] | None) -> dict[str, str]:
    if components is None:
        return {}
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in components.items()):
        raise InvalidRequest("components must map strings to strings")
    return dict(components)


# --- reaching the room -------------------------------------------------------


@contextlib.asynccontextmanager
async def _cluster() -> AsyncIterator[tuple[Hub | None, Registry | None]]:
    """This loop's hub (if it runs one) and a registry to read (``None``: none to read)."""
    hub = get_hub.existing()
    if hub is not None:
        yield hub, hub.registry
        return
    conf = presence_settings()
    if not conf.REDIS_URL:
        yield None, None  # no server here and nothing shared: no room has members
        return
    registry = RedisRegistry(
        conf.REDIS_URL, prefix=conf.REDIS_CHANNEL_PREFIX, lease_seconds=conf.REGISTRY_LEASE_SECONDS
    )
    try:
        yield None, registry
    finally:
        await registry.aclose()


async def _view(registry: Registry | None, room_id: str) -> RoomView:
    if registry is None:
        return RoomView(room_id)
    try:
        return await registry.view(room_id)
    except RegistryUnavailable:
        raise Unavailable("the presence registry (Redis) does not answer") from None


def _hosting_instance(view: RoomView) -> str | None:
    """The instance of the room's host (else of its first member) that runs calls."""
    instances = {c.client_id: c.instance_id for c in view.connections}
    if view.host_client_id in instances:
        return instances[view.host_client_id]
    return view.connections[0].instance_id if view.connections else None


async def _run(room_id: str, command: dict[str, Any]) -> dict[str, Any]:
    """Carry ``command`` out on an instance hosting the room; its answer (``ok``)."""
    async with _cluster() as (hub, registry):
        if hub is not None and room_id in hub.rooms:
            answer = await run_command(hub, room_id, command)
            if not answer.get("absent"):
                return _checked(answer)
        if registry is None or not registry.shared:
            raise NotPresent(f"nobody is in room {room_id!r}")
        for _ in range(2):  # once more if the instance just lost its last member
            instance = _hosting_instance(await _view(registry, room_id))
            if instance is None:
                raise NotPresent(f"nobody is in room {room_id!r}")
            if hub is not None and instance == hub.instance_id:
                answer = await run_command(hub, room_id, command)
            else:
                answer = await _remote(room_id, instance, command)
            if not answer.get("absent"):
                return _checked(answer)
        raise NotPresent(f"nobody is in room {room_id!r}")


def _checked(answer: dict[str, Any]) -> dict[str, Any]:
    if answer.get("ok"):
        return answer
    code, text = int(answer.get("code", ErrorCode.INTERNAL)), str(answer.get("text", ""))
    if code == ErrorCode.UNAVAILABLE:
        raise Unavailable(text)
    if code == ErrorCode.NOT_OWNER:
        raise NotPresent(f"{text} (the server owns only the entities it spawned)")
    raise Refused(code, text)


async def _remote(room_id: str, instance: str, command: dict[str, Any]) -> dict[str, Any]:
    """Send ``command`` to ``instance`` through the channel layer and wait for its answer."""
    layer = get_channel_layer()
    timeout = presence_settings().API_COMMAND_TIMEOUT_SECONDS
    try:
        assert layer is not None  # settings.CHANNEL_LAYERS always names one
        # BaseChannelLayer's abstract new_channel takes no prefix; the layers that
        # run (channels_redis, in-memory) do.
        reply_to = await layer.new_channel(prefix="presence-api.")  # type: ignore[call-arg]
        event = {
            "type": COMMAND_EVENT,
            "instance": instance,
            "room": room_id,
            "command": command,
            "reply_to": reply_to,
        }
        await layer.group_send(room_group(room_id), event)
    except Exception as exc:  # the layer raises whatever its Redis client raises
        raise Unavailable(f"the channel layer (Redis) failed: {type(exc).__name__}") from None
    try:
        async with asyncio.timeout(timeout):
            answer: dict[str, Any] = await layer.receive(reply_to)
    except TimeoutError:
        raise Unavailable(
            f"the instance hosting room {room_id!r} did not answer within {timeout:g} s"
        ) from None
    await _forget_channel(layer, reply_to)
    return answer


async def _forget_channel(layer: Any, channel: str) -> None:
    # The pub/sub layer stays subscribed to a channel until a receive on it is
    # cancelled (it has no delete_channel): cancel one so nothing leaks.
    if isinstance(layer, RedisPubSubChannelLayer):
        waiting = asyncio.ensure_future(layer.receive(channel))
        await asyncio.sleep(0)
        waiting.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await waiting


# --- reading -----------------------------------------------------------------


async def aroom_list() -> list[RoomSummary]:
    """Every room with members on any instance, sorted by id; raises :class:`Unavailable`."""
    async with _cluster() as (_, registry):
        if registry is None:
            return []
        try:
            room_ids = await registry.room_ids()
        except RegistryUnavailable:
            raise Unavailable("the presence registry (Redis) does not answer") from None
        views = [await _view(registry, room_id) for room_id in room_ids]
    return [
        RoomSummary(v.room_id, len(v.connections), v.host_client_id) for v in views if v.connections
    ]


def room_list() -> list[RoomSummary]:
    """Sync twin of :func:`aroom_list`."""
    return async_to_sync(aroom_list)()


def _entity_info(snap: pb.EntitySnapshot) -> EntityInfo:
    p, r = snap.position, snap.rotation
    return EntityInfo(
        entity_id=snap.id,
        template_id=snap.template_id,
        owner_id=snap.owner_id,
        components=dict(snap.components),
        position=(p.x, p.y, p.z) if snap.HasField("position") else None,
        rotation=(r.x, r.y, r.z, r.w) if snap.HasField("rotation") else None,
    )


async def aroom_state(room_id: str) -> RoomInfo:
    """The room now: members, entities (as last written), counters, lock.

    A room nobody is in has no members or entities. Raises
    :class:`InvalidRequest` (room id) and :class:`Unavailable`.
    """
    _room(room_id)
    async with _cluster() as (_, registry):
        view = await _view(registry, room_id)
        try:
            entities = await registry.entities(room_id) if registry is not None else []
        except RegistryUnavailable:
            raise Unavailable("the presence registry (Redis) does not answer") from None
    stored = await database_sync_to_async(selectors.room_get)(room_id=room_id)
    members = [
        MemberInfo(
            client_id=c.client_id,
            user_id=c.user_id,
            display_name=c.display_name,
            instance_id=c.instance_id,
            muted=c.muted,
            is_host=c.client_id == view.host_client_id,
            connected_at_ms=c.connected_at_ms,
        )
        for c in view.connections
    ]
    return RoomInfo(
        room_id=room_id,
        host_client_id=view.host_client_id,
        members=members,
        entities=[_entity_info(e) for e in entities],
        message_count=view.message_count,
        locked=bool(stored and stored.locked),
    )


def room_state(room_id: str) -> RoomInfo:
    """Sync twin of :func:`aroom_state`."""
    return async_to_sync(aroom_state)(room_id)


# --- chat --------------------------------------------------------------------


async def asend_chat(room_id: str, text: str, *, sender: str = SYSTEM_SENDER) -> ChatLine:
    """Post ``text`` into the room as ``sender`` (a name, stamped as ``from_client_id``).

    Members hear a ``ChatMessage`` like any other; the line is stored (chat
    history, ``recent_chat`` of later joiners) even when nobody is there, and
    ``chat_message`` is signalled. ``text``: 1-2,000 characters, not blank, no
    control characters but tab and newlines. Raises :class:`InvalidRequest`,
    :class:`Unavailable`.
    """
    _room(room_id)
    _sender(sender)
    _valid(pb.Message(chat_message=pb.ChatMessage(message=text)))
    chat = pb.ChatMessage(from_client_id=sender, message=text)
    try:
        answer = await _run(room_id, {"kind": "chat", "sender": sender, "text": text})
        chat = pb.ChatMessage.FromString(answer["chat"])
    except NotPresent:  # nobody to tell: stored all the same
        chat.timestamp = int(time.time() * 1000)
    pk = await database_sync_to_async(services.chat_message_store)(
        room_id=room_id, sender_client_id=sender, sender_name=sender, text=text
    )
    await chat_recorded(get_recent_chat(), room_id, chat, sender, now=True)
    return ChatLine(pk, room_id, chat.from_client_id, sender, chat.message, chat.timestamp)


def send_chat(room_id: str, text: str, *, sender: str = SYSTEM_SENDER) -> ChatLine:
    """Sync twin of :func:`asend_chat`."""
    return async_to_sync(asend_chat)(room_id, text, sender=sender)


# --- server-owned entities ---------------------------------------------------


async def aspawn_entity(
    room_id: str,
    entity_id: str,
    *,
    template_id: str = "",
    components: Mapping[str, str] | None = None,
    position: Sequence[float] | None = None,
    rotation: Sequence[float] | None = None,
) -> None:
    """Spawn entity ``entity_id`` owned by ``"server"``; members hear ``EntitySpawn``.

    ``components``: up to 64 names (128 characters) to text (4,096 bytes);
    ``position`` ``(x, y, z)`` and ``rotation`` ``(x, y, z, w)`` in the room's
    units, then sent as a ``PositionUpdate``. Raises :class:`InvalidRequest`,
    :class:`NotPresent` (nobody in the room), :class:`Refused` (the id exists,
    the room's entity limits), :class:`Unavailable`.
    """
    _room(room_id)
    spawn = pb.EntitySpawn(entity_id=entity_id, template_id=template_id)
    spawn.components.update(_components(components))
    _valid(pb.Message(entity_spawn=spawn))
    command = {
        "kind": "spawn",
        "entity_id": entity_id,
        "template_id": template_id,
        "components": dict(spawn.components),
        "position": _floats("position", position, 3),
        "rotation": _floats("rotation", rotation, 4),
    }
    await _run(room_id, command)


def spawn_entity(
    room_id: str,
    entity_id: str,
    *,
    template_id: str = "",
    components: Mapping[str, str] | None = None,
    position: Sequence[float] | None = None,
    rotation: Sequence[float] | None = None,
) -> None:
    """Sync twin of :func:`aspawn_entity`."""
    async_to_sync(aspawn_entity)(
        room_id,
        entity_id,
        template_id=template_id,
        components=components,
        position=position,
        rotation=rotation,
    )


async def aupdate_entity(
    room_id: str,
    entity_id: str,
    *,
    components: Mapping[str, str] | None = None,
    position: Sequence[float] | None = None,
    rotation: Sequence[float] | None = None,
) -> None:
    """Change a server entity: ``components`` merge in (``EntityUpdate``), a pose moves it.

    Raises :class:`InvalidRequest`, :class:`NotPresent` (nobody in the room, or
    no such server entity), :class:`Refused` (too many components),
    :class:`Unavailable`.
    """
    _room(room_id)
    update = pb.EntityUpdate(entity_id=entity_id)
    for key, value in _components(components).items():
        update.components[key] = value.encode("utf-8")
    _valid(pb.Message(entity_update=update))
    if components is None and position is None and rotation is None:
        raise InvalidRequest("give components, a position or a rotation to change")
    command = {
        "kind": "update",
        "entity_id": entity_id,
        "components": _components(components),
        "position": _floats("position", position, 3),
        "rotation": _floats("rotation", rotation, 4),
    }
    await _run(room_id, command)


def update_entity(
    room_id: str,
    entity_id: str,
    *,
    components: Mapping[str, str] | None = None,
    position: Sequence[float] | None = None,
    rotation: Sequence[float] | None = None,
) -> None:
    """Sync twin of :func:`aupdate_entity`."""
    async_to_sync(aupdate_entity)(
        room_id, entity_id, components=components, position=position, rotation=rotation
    )


async def adespawn_entity(room_id: str, entity_id: str) -> None:
    """Remove a server entity; members hear ``EntityDespawn``.

    Raises :class:`InvalidRequest`, :class:`NotPresent`, :class:`Unavailable`.
    """
    _room(room_id)
    _valid(pb.Message(entity_despawn=pb.EntityDespawn(entity_id=entity_id)))
    await _run(room_id, {"kind": "despawn", "entity_id": entity_id})


def despawn_entity(room_id: str, entity_id: str) -> None:
    """Sync twin of :func:`adespawn_entity`."""
    async_to_sync(adespawn_entity)(room_id, entity_id)


# --- moderation --------------------------------------------------------------


def _actor_pk(actor: Any) -> int | None:
    return getattr(actor, "pk", None) if actor is not None else None


async def _moderate(
    room_id: str, order: ModerationOrder, *, actor: Any, must_be_there: bool
) -> None:
    """Check the target, record the order (audit row, lock, ban), signal it, announce it."""
    target_user_id = ""
    if must_be_there:
        async with _cluster() as (_, registry):
            view = await _view(registry, room_id)
        target = next((c for c in view.connections if c.client_id == order.target_client_id), None)
        if target is None:
            raise NotPresent(f"no member {order.target_client_id!r} in room {room_id!r}")
        target_user_id = target.user_id
    actor_user_id = _actor_pk(actor)
    await database_sync_to_async(services.moderation_record)(
        room_id=room_id,
        action=str(order.action),
        actor_user_id=actor_user_id,
        target_client_id=order.target_client_id,
        target_user_id=target_user_id,
        reason=order.reason,
        ban_seconds=order.ban_seconds,
    )
    await signals.get_dispatcher().send(
        "moderation_action",
        room_id=room_id,
        action=str(order.action),
        target_client_id=order.target_client_id,
        by_client_id="",
        actor_user_id=actor_user_id,
        reason=order.reason,
    )
    try:
        await _run(room_id, {"kind": "moderate", "order": order.as_event()})
    except NotPresent:
        if must_be_there:
            raise  # the member left meanwhile
        # A lock with nobody there: recorded, and this process's joiners see it now.
        hub = get_hub.existing()
        if hub is not None:
            hub.on_access_changed(room_id)


def _reason(reason: str) -> str:
    _valid(pb.Message(lock_room=pb.LockRoom(reason=reason)))
    return reason


def _target(room_id: str, client_id: str, reason: str) -> None:
    _room(room_id)
    if not isinstance(client_id, str) or not client_id:
        raise InvalidRequest("name the member to act on (its client id)")
    _valid(pb.Message(kick_player=pb.KickPlayer(target_client_id=client_id, reason=reason)))


async def akick(
    room_id: str, client_id: str, *, reason: str = "", ban_seconds: int = 0, actor: Any = None
) -> None:
    """Kick member ``client_id`` (closed 4403; everyone hears ``PlayerKicked``).

    ``ban_seconds`` (0 to a year) keeps its user out that long; ``reason`` up
    to 256 characters; ``actor``: the Django user giving the order, for the
    audit record. Raises :class:`InvalidRequest`, :class:`NotPresent`,
    :class:`Unavailable`.
    """
    _target(room_id, client_id, reason)
    if isinstance(ban_seconds, bool) or not isinstance(ban_seconds, int):
        raise InvalidRequest("ban_seconds must be a whole number of seconds")
    if not 0 <= ban_seconds <= MAX_BAN_SECONDS:
        raise InvalidRequest(f"ban_seconds must be 0 to {MAX_BAN_SECONDS}")
    order = ModerationOrder(Action.KICK, client_id, reason, "", ban_seconds)
    await _moderate(room_id, order, actor=actor, must_be_there=True)


def kick(
    room_id: str, client_id: str, *, reason: str = "", ban_seconds: int = 0, actor: Any = None
) -> None:
    """Sync twin of :func:`akick`."""
    async_to_sync(akick)(room_id, client_id, reason=reason, ban_seconds=ban_seconds, actor=actor)


async def amute(
    room_id: str, client_id: str, *, muted: bool = True, reason: str = "", actor: Any = None
) -> None:
    """Mute (or, with ``muted=False``, unmute) member ``client_id``: its chat and voice drop.

    Everyone hears ``PlayerMuted``. Raises :class:`InvalidRequest`,
    :class:`NotPresent`, :class:`Unavailable`.
    """
    _target(room_id, client_id, reason)
    order = ModerationOrder(Action.MUTE if muted else Action.UNMUTE, client_id, reason)
    await _moderate(room_id, order, actor=actor, must_be_there=True)


def mute(
    room_id: str, client_id: str, *, muted: bool = True, reason: str = "", actor: Any = None
) -> None:
    """Sync twin of :func:`amute`."""
    async_to_sync(amute)(room_id, client_id, muted=muted, reason=reason, actor=actor)


async def alock(room_id: str, *, locked: bool = True, reason: str = "", actor: Any = None) -> None:
    """Lock (or unlock) the room: joiners are refused with 4423; members hear ``RoomLocked``.

    Works with nobody in the room (it applies to the next joiners). Raises
    :class:`InvalidRequest`, :class:`Unavailable`.
    """
    _room(room_id)
    order = ModerationOrder(Action.LOCK if locked else Action.UNLOCK, "", _reason(reason))
    await _moderate(room_id, order, actor=actor, must_be_there=False)


def lock(room_id: str, *, locked: bool = True, reason: str = "", actor: Any = None) -> None:
    """Sync twin of :func:`alock`."""
    async_to_sync(alock)(room_id, locked=locked, reason=reason, actor=actor)
