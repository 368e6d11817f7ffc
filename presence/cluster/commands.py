"""Server-side API calls (presence.rooms), carried out by a hub that hosts the room.

A call reaches the hub of an instance with members in the room: directly when
the caller runs on that instance's event loop, else as a ``presence.command``
event through the channel layer (:mod:`presence.cluster.bridge`). The hub
applies it like a message from a member that is the server -- the same room
rules, the same limits -- and publishes what it produced the usual way, so the
other instances hear it as they hear their members' messages.

A command and its answer are plain dicts (msgpack-friendly):

* ``{"kind": "chat", "sender": str, "text": str}`` -> ``{"chat": bytes}``
  (the ``ChatMessage`` as stamped and sent)
* ``{"kind": "spawn", "entity_id", "template_id", "components": {str: str},
  "position": [x, y, z] | None, "rotation": [x, y, z, w] | None}``
* ``{"kind": "update", "entity_id", "components": {str: str} | None,
  "position", "rotation"}``
* ``{"kind": "despawn", "entity_id"}``
* ``{"kind": "moderate", "order": ModerationOrder.as_event()}``

Every answer has ``ok``; a refusal adds ``code`` (an ``ErrorCode``) and
``text``; ``absent`` means this instance has no member in the room (any more).
"""

from __future__ import annotations

import logging
from typing import Any

from presence.cluster.hub import BackendUnavailable, Hub
from presence.cluster.registry import SERVER_OWNER, RegistryUnavailable
from presence.protocol import core_pb2 as pb
from presence.protocol.codes import ErrorCode
from presence.protocol.moderation import ModerationOrder
from presence.protocol.room import Entity

logger = logging.getLogger(__name__)

ABSENT: dict[str, Any] = {"ok": False, "absent": True}


def refused(code: int, text: str) -> dict[str, Any]:
    """The answer to a command the room refused."""
    return {"ok": False, "code": int(code), "text": text}


def vector(values: list[float] | None) -> pb.Vector3 | None:
    """A position from ``[x, y, z]``."""
    return pb.Vector3(x=values[0], y=values[1], z=values[2]) if values else None


def quaternion(values: list[float] | None) -> pb.Quaternion | None:
    """A rotation from ``[x, y, z, w]``."""
    if not values:
        return None
    return pb.Quaternion(x=values[0], y=values[1], z=values[2], w=values[3])


async def run_command(hub: Hub, room_id: str, command: dict[str, Any]) -> dict[str, Any]:
    """Carry ``command`` out in ``room_id`` on ``hub``; the answer (never raises)."""
    try:
        if room_id not in hub.rooms:
            return ABSENT
        kind = command.get("kind")
        if kind == "chat":
            return await _chat(hub, room_id, command)
        if kind == "moderate":
            await hub.moderate(room_id, ModerationOrder.from_event(command["order"]))
            return {"ok": True}
        if kind in ("spawn", "update", "despawn"):
            await _adopt_server_entities(hub, room_id)
            if room_id not in hub.rooms:
                return ABSENT
            answer = await _entity(hub, room_id, kind, command)
            await hub.publisher.drained()  # in the registry when the caller reads it back
            return answer
        return refused(ErrorCode.BAD_MESSAGE, f"unknown command {kind!r}")
    except (BackendUnavailable, RegistryUnavailable):
        return refused(ErrorCode.UNAVAILABLE, "backend unavailable")
    except Exception:
        logger.exception("a server-side API call failed in a room")
        return refused(ErrorCode.INTERNAL, "internal error")


async def _apply(
    hub: Hub, room_id: str, sender: str, kind: str, message: pb.Message
) -> dict[str, Any] | None:
    """Apply and publish one message as ``sender``; a refusal's answer, or ``None``."""
    outcome = hub.apply(room_id, sender, kind, message)
    for reply in outcome.replies:
        if reply.HasField("error"):
            return refused(reply.error.code, reply.error.message)
    await hub.publish(room_id, outcome.broadcasts)
    return None


async def _chat(hub: Hub, room_id: str, command: dict[str, Any]) -> dict[str, Any]:
    message = pb.Message(chat_message=pb.ChatMessage(message=str(command["text"])))
    problem = await _apply(hub, room_id, str(command["sender"]), "chat_message", message)
    if problem is not None:
        return problem
    return {"ok": True, "chat": message.chat_message.SerializeToString()}


async def _entity(hub: Hub, room_id: str, kind: str, command: dict[str, Any]) -> dict[str, Any]:
    entity_id = str(command["entity_id"])
    position, rotation = vector(command.get("position")), quaternion(command.get("rotation"))
    if kind == "despawn":
        message = pb.Message(entity_despawn=pb.EntityDespawn(entity_id=entity_id))
        return await _apply(hub, room_id, SERVER_OWNER, "entity_despawn", message) or {"ok": True}
    components = {str(k): str(v) for k, v in (command.get("components") or {}).items()}
    if kind == "spawn":
        spawn = pb.EntitySpawn(entity_id=entity_id, template_id=str(command.get("template_id", "")))
        spawn.components.update(components)
        problem = await _apply(
            hub, room_id, SERVER_OWNER, "entity_spawn", pb.Message(entity_spawn=spawn)
        )
        if problem is not None:
            return problem
    elif components:
        update = pb.EntityUpdate(entity_id=entity_id)
        for key, value in components.items():
            update.components[key] = value.encode("utf-8")
        message = pb.Message(entity_update=update)
        problem = await _apply(hub, room_id, SERVER_OWNER, "entity_update", message)
        if problem is not None:
            return problem
    if position is not None or rotation is not None:
        pose = pb.PositionUpdate(entity_id=entity_id)
        if position is not None:
            pose.position.CopyFrom(position)
        if rotation is not None:
            pose.rotation.CopyFrom(rotation)
        message = pb.Message(position_update=pose)
        problem = await _apply(hub, room_id, SERVER_OWNER, "position_update", message)
        if problem is not None:
            return problem
        await hub.sync()  # a pose would wait for the keeper: a joiner sees it now
    return {"ok": True}


async def _adopt_server_entities(hub: Hub, room_id: str) -> None:
    """Make this hub's copy of the server's entities the registry's.

    Another instance may have spawned, changed or removed them since: the
    registry holds what every instance wrote (this one's queued writes first).
    """
    await hub.publisher.drained()
    room = hub.rooms.get(room_id)
    if room is None:
        return
    listed = {e.id: e for e in await hub.registry.entities(room_id) if e.owner_id == SERVER_OWNER}
    state = room.state
    for entity_id in [eid for eid, e in state.entities.items() if e.owner_id == SERVER_OWNER]:
        if entity_id not in listed:
            del state.entities[entity_id]
    for entity_id, snap in listed.items():
        state.entities[entity_id] = Entity(
            entity_id=entity_id,
            template_id=snap.template_id,
            owner_id=SERVER_OWNER,
            components=dict(snap.components),
            position=snap.position if snap.HasField("position") else None,
            rotation=snap.rotation if snap.HasField("rotation") else None,
        )
