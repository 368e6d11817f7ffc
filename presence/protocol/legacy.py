"""The legacy GraphWiz-XR wire, both ways, and how a connection is found to speak it.

The GraphWiz-XR hub-client (issue 14) does not speak ``graphwiz.core``
protobuf. After a text ``SERVER_HELLO`` JSON from the server, both sides send
binary frames::

    [u8 id length][id, UTF-8][u64 big-endian ms timestamp][u8 type][UTF-8 JSON payload]

The type is the upstream ``MessageType`` number and the payload the camelCase
proto3 JSON of the same ``graphwiz.core`` message, so a legacy frame maps onto
a ``pb.Message`` and back: inbound frames go through the same validation and
room as protobuf frames; outbound, a server message becomes zero, one or a
few legacy frames (:func:`frames_of`). A text ``{"type": 255}`` frame is the
client's keep-alive ping.

Pure: bytes in, messages out; no sockets, no Django.
"""

from __future__ import annotations

import base64
import json
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import Enum, IntEnum
from typing import Any

from google.protobuf import json_format
from google.protobuf.descriptor import Descriptor

from presence.protocol import core_pb2 as pb
from presence.protocol.codes import ErrorCode
from presence.protocol.errors import BadFrame
from presence.protocol.jsonshape import explain_payload, quoted

PROTOCOL_PARAM = "protocol"  # ?protocol=legacy picks the legacy wire explicitly
# The GraphWiz-XR hub-client puts the room in the query too (room_id, user_id,
# client_id); PROTOCOL.md has no such parameter. Only a handshake that carries
# it has its first frame sniffed: every other client gets its ServerHello at
# once, as PROTOCOL.md section 4 promises ("the server speaks first").
HUB_CLIENT_PARAM = "room_id"
LEGACY = "legacy"
OUR_SUBPROTOCOLS = "graphwiz."
_HEAD = struct.Struct(">QB")  # timestamp (ms) and type, after the id
_MIN_FRAME = 1 + _HEAD.size  # an empty id and an empty payload


class LegacyType(IntEnum):
    """Legacy frame types: upstream ``MessageType`` numbers (and 255, the text ping)."""

    CLIENT_HELLO = 1
    POSITION_UPDATE = 10
    VOICE_DATA = 11
    ENTITY_SPAWN = 20
    ENTITY_UPDATE = 21
    ENTITY_DESPAWN = 22
    CHAT_MESSAGE = 30
    PRESENCE_JOIN = 40
    PRESENCE_LEAVE = 41
    PRESENCE_UPDATE = 42
    ERROR = 61  # [ext] the server's Error, so a legacy client can log why
    PLAYER_KICKED = 73  # [ext] moderation broadcasts, as their MessageType numbers
    PLAYER_MUTED = 74
    ROOM_LOCKED = 75
    PING = 255


# What a legacy client may send, and the graphwiz.core payload each one becomes.
_INBOUND: dict[int, tuple[str, Any]] = {
    LegacyType.CLIENT_HELLO: ("client_hello", pb.ClientHello.DESCRIPTOR),
    LegacyType.POSITION_UPDATE: ("position_update", pb.PositionUpdate.DESCRIPTOR),
    LegacyType.VOICE_DATA: ("voice_data", pb.VoiceData.DESCRIPTOR),
    LegacyType.ENTITY_SPAWN: ("entity_spawn", pb.EntitySpawn.DESCRIPTOR),
    LegacyType.ENTITY_UPDATE: ("entity_update", pb.EntityUpdate.DESCRIPTOR),
    LegacyType.ENTITY_DESPAWN: ("entity_despawn", pb.EntityDespawn.DESCRIPTOR),
    LegacyType.CHAT_MESSAGE: ("chat_message", pb.ChatMessage.DESCRIPTOR),
    LegacyType.PRESENCE_UPDATE: ("presence_event", pb.PresenceData.DESCRIPTOR),
}
CLIENT_TYPES = "1, 10, 11, 20, 21, 22, 30, 42 (and the text ping, 255)"


@dataclass(frozen=True, slots=True)
class LegacyLimits:
    """Bounds on a legacy frame beyond the frame size (each a :class:`BadFrame` when crossed)."""

    id_bytes: int = 128  # like every identifier (FieldLimits.identifier)
    json_depth: int = 16  # nested objects/arrays in a payload; the client's deepest is 3


@dataclass(frozen=True, slots=True)
class LegacyFrame:
    """One binary legacy frame, its payload decoded to JSON."""

    frame_id: str
    timestamp_ms: int
    type: int
    payload: dict[str, Any]


# --- which wire a connection speaks -----------------------------------------


class Wire(Enum):
    """What the handshake says about the connection's wire."""

    PROTOCOL = "protocol"  # a graphwiz.* subprotocol or format=: PROTOCOL.md as is
    LEGACY = "legacy"  # protocol=legacy
    SNIFF = "sniff"  # hub-client-shaped, nothing negotiated: the first client frame decides


class WireRefused(ValueError):
    """The handshake asked for a wire in a way that cannot be served (close 4400)."""


def choose_wire(subprotocols: Sequence[str], query: Mapping[str, str]) -> Wire:
    """The wire the handshake asks for; raises :class:`WireRefused` for a bad ``protocol``."""
    ours = any(s.startswith(OUR_SUBPROTOCOLS) for s in subprotocols)
    if PROTOCOL_PARAM in query:
        if query[PROTOCOL_PARAM].strip().lower() != LEGACY:
            raise WireRefused(
                f"protocol must be {LEGACY} (the GraphWiz-XR hub-client's wire) or left out, "
                f"got {quoted(query[PROTOCOL_PARAM])}"
            )
        if ours:
            raise WireRefused(
                "protocol=legacy and a graphwiz.* subprotocol exclude each other: use one"
            )
        return Wire.LEGACY
    if ours or "format" in query or HUB_CLIENT_PARAM not in query:
        return Wire.PROTOCOL
    return Wire.SNIFF


def is_legacy_frame(data: bytes | str) -> bool:
    """Does a connection's first frame speak the legacy wire?

    Binary: the legacy framing holds (id, timestamp, type) and the rest is a
    UTF-8 JSON object, which no protobuf ``Message`` is in practice (an empty
    payload is valid legacy, but ten zero bytes would be taken for it).
    Text: the keep-alive ping ``{"type": 255, ...}``.
    """
    if isinstance(data, str):
        return _is_ping_text(data)
    try:
        frame = parse_frame(data, LegacyLimits(id_bytes=255, json_depth=1 << 30))
    except BadFrame:
        return False
    return bool(frame.payload) or data.rstrip().endswith(b"}")


def _is_ping_text(text: str) -> bool:
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        return False
    return isinstance(value, dict) and value.get("type") == LegacyType.PING


# --- inbound ------------------------------------------------------------------


def _bad(text: str) -> BadFrame:
    return BadFrame(ErrorCode.BAD_MESSAGE, text)


def parse_frame(data: bytes, limits: LegacyLimits) -> LegacyFrame:
    """Split one binary legacy frame; raise :class:`BadFrame` saying what is wrong."""
    if len(data) < _MIN_FRAME:
        raise _bad(
            f"legacy frame of {len(data)} bytes: it needs at least {_MIN_FRAME} "
            "([u8 id length][id][u64 ms timestamp][u8 type][JSON payload])"
        )
    id_length = data[0]
    if id_length > limits.id_bytes:
        raise BadFrame(
            ErrorCode.TOO_LARGE, f"legacy frame id of {id_length} bytes: at most {limits.id_bytes}"
        )
    if len(data) < _MIN_FRAME + id_length:
        raise _bad(f"legacy frame shorter than its id length ({id_length}) says")
    try:
        frame_id = data[1 : 1 + id_length].decode("utf-8")
    except UnicodeDecodeError:
        raise _bad("legacy frame id is not UTF-8") from None
    timestamp_ms, kind = _HEAD.unpack_from(data, 1 + id_length)
    payload = _payload(data[_MIN_FRAME + id_length :], kind, limits)
    return LegacyFrame(frame_id, timestamp_ms, kind, payload)


def _payload(raw: bytes, kind: int, limits: LegacyLimits) -> dict[str, Any]:
    if not raw.strip():
        return {}
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise _bad(f"type {kind} payload is not UTF-8: it is camelCase JSON text") from None
    try:
        value = json.loads(text)
    except RecursionError:
        raise _too_deep(kind, limits) from None
    except json.JSONDecodeError as bad:  # its text holds a position, never the input
        raise _bad(
            f"type {kind} payload is not JSON: {bad.msg} at line {bad.lineno} column {bad.colno}"
        ) from None
    if not isinstance(value, dict):
        raise _bad(f"type {kind} payload must be a JSON object")
    if _depth(value, limits.json_depth) > limits.json_depth:
        raise _too_deep(kind, limits)
    return value


def _too_deep(kind: int, limits: LegacyLimits) -> BadFrame:
    return BadFrame(
        ErrorCode.TOO_LARGE, f"type {kind} payload nested deeper than {limits.json_depth} levels"
    )


def _depth(value: Any, limit: int) -> int:
    """Nesting depth of ``value`` (an object is 1), counted up to ``limit + 1``."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > deepest:
            deepest = depth
            if deepest > limit:
                return deepest
        children = item.values() if isinstance(item, dict) else item
        stack.extend((c, depth + 1) for c in children if isinstance(c, dict | list))
    return deepest


def decode(data: bytes | str, *, sender_id: str, limits: LegacyLimits) -> pb.Message:
    """One frame of a legacy connection as a ``graphwiz.core.Message`` (not yet validated).

    ``sender_id`` is the connection's server-assigned id: a pose of that
    entity id moves the sender's avatar. Raises :class:`BadFrame`.
    """
    if isinstance(data, str):
        if _is_ping_text(data):
            return pb.Message(ping=pb.Ping())
        raise _bad(
            "a legacy client sends binary frames; text frames carry only the keep-alive "
            '{"type": 255}'
        )
    return to_message(parse_frame(data, limits), sender_id=sender_id)


def to_message(frame: LegacyFrame, *, sender_id: str = "") -> pb.Message:
    """The ``graphwiz.core.Message`` a legacy frame stands for; raises :class:`BadFrame`."""
    if frame.type == LegacyType.PING:
        return pb.Message(message_id=frame.frame_id, ping=pb.Ping(client_time_ms=0))
    spec = _INBOUND.get(frame.type)
    if spec is None:
        if frame.type in (LegacyType.PRESENCE_JOIN, LegacyType.PRESENCE_LEAVE):
            raise _bad(
                f"type {frame.type} comes from the server; a client announces itself with "
                "type 1 (CLIENT_HELLO) and updates itself with type 42 (PRESENCE_UPDATE)"
            )
        raise _bad(f"type {frame.type} is not relayed here: a client sends types {CLIENT_TYPES}")
    kind, descriptor = spec
    payload = dict(frame.payload)
    message = pb.Message(message_id=frame.frame_id)
    if kind == "entity_spawn":
        payload["components"] = _components_in(payload.get("components"), frame.type)
    elif kind == "entity_update":
        components = _components_in(payload.pop("components", None), frame.type)
    elif kind == "presence_event" and isinstance(payload.get("data"), dict):
        payload = payload["data"]  # the PresenceEvent shape; the client sends the data itself
    target = getattr(message, kind)
    target.SetInParent()  # an empty payload is still this message
    if kind == "presence_event":
        target.event_type = pb.UPDATE
        target = target.data
    _parse_into(payload, target, descriptor, frame.type)
    if kind == "entity_update":
        for key, value in components.items():
            message.entity_update.components[key] = value.encode("utf-8")
    if kind == "position_update" and message.position_update.entity_id == sender_id:
        message.position_update.entity_id = ""  # the client keys its avatar by its own id
    return message


def _components_in(value: Any, kind: int) -> dict[str, str]:
    """Entity components as text: strings as they are, other JSON values as compact JSON."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _bad(f"type {kind} payload.components must be an object")
    return {
        key: item if isinstance(item, str) else _compact(item)
        for key, item in value.items()
        if item is not None
    }


def _compact(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _parse_into(payload: dict[str, Any], target: Any, descriptor: Descriptor, kind: int) -> None:
    # Fields the message does not have (the client's own timestamp, clientId...)
    # are ignored, as proto3 JSON parsers may.
    known = {
        key: value
        for key, value in payload.items()
        if key in descriptor.fields_by_camelcase_name or key in descriptor.fields_by_name
    }
    try:
        json_format.ParseDict(known, target, ignore_unknown_fields=True)
    except (json_format.ParseError, ValueError, TypeError, RecursionError):
        where = f"type {kind} payload"
        problem = explain_payload(known, descriptor, where)
        raise _bad(problem or f"{where} does not match graphwiz.core.{descriptor.name}") from None


# --- outbound -----------------------------------------------------------------


def build_frame(frame_id: str, timestamp_ms: int, kind: int, payload: Mapping[str, Any]) -> bytes:
    """One binary legacy frame (ids longer than 255 bytes are cut, never sent broken)."""
    raw_id = frame_id.encode("utf-8")[:255]
    body = _compact(payload).encode("utf-8")
    return bytes([len(raw_id)]) + raw_id + _HEAD.pack(max(0, timestamp_ms), kind) + body


def _dict(message: Any) -> dict[str, Any]:
    return json_format.MessageToDict(
        message, use_integers_for_enums=True, always_print_fields_with_no_presence=True
    )


def _component_out(value: str | bytes) -> Any:
    """A component as a legacy client reads it: JSON objects and arrays as values."""
    if isinstance(value, bytes):
        try:
            text = value.decode("utf-8")
        except UnicodeDecodeError:
            return "base64:" + base64.b64encode(value).decode("ascii")
    else:
        text = value
    if text[:1] in ("{", "["):
        try:
            return json.loads(text)
        except (ValueError, RecursionError):
            pass
    return text


def _presence_payload(event: pb.PresenceEvent) -> dict[str, Any]:
    payload = _dict(event)
    if event.event_type == pb.UPDATE:
        # The client takes an update's payload itself as the player's data.
        for key, value in payload.get("data", {}).items():
            payload.setdefault(key, value)
    return payload


def server_hello_text(message: pb.Message) -> str:
    """The text ``SERVER_HELLO`` a legacy client expects first (``timestamp`` in seconds)."""
    hello = message.server_hello
    return _compact(
        {
            "type": "SERVER_HELLO",
            "room_id": hello.room_id,
            "client_id": hello.assigned_client_id,
            "timestamp": message.timestamp // 1000,
            "server_version": hello.server_version,
            "host_client_id": hello.host_client_id,
        }
    )


def pong_text(message: pb.Message) -> str:
    """The answer to a keep-alive ping: a text frame of type 255 (the client ignores it)."""
    return _compact({"type": LegacyType.PING.value, "timestamp": message.pong.server_time_ms})


def world_frames(message: pb.Message) -> list[bytes]:
    """What a late joiner gets after its hello: each member's 42, each entity's 20 (and
    pose), then the room's recent chat as 30s."""
    state = message.server_hello.initial_state
    now = message.timestamp
    frames = []
    for player in state.players:
        data = pb.PresenceData(
            display_name=player.display_name,
            avatar_url=player.avatar_url,
            host_client_id=message.server_hello.host_client_id,
        )
        for name in ("position", "rotation", "avatar_config"):
            if player.HasField(name):
                getattr(data, name).CopyFrom(getattr(player, name))
        event = pb.PresenceEvent(client_id=player.client_id, event_type=pb.UPDATE, data=data)
        payload = _presence_payload(event)
        frames.append(build_frame(player.client_id, now, LegacyType.PRESENCE_UPDATE, payload))
    for entity in state.entities:
        spawn = pb.EntitySpawn(
            entity_id=entity.id,
            template_id=entity.template_id,
            owner_id=entity.owner_id,
            components=entity.components,
        )
        frames.append(build_frame(entity.owner_id, now, LegacyType.ENTITY_SPAWN, _spawn(spawn)))
        if entity.HasField("position") or entity.HasField("rotation"):
            pose = pb.PositionUpdate(entity_id=entity.id)
            for name in ("position", "rotation"):
                if entity.HasField(name):
                    getattr(pose, name).CopyFrom(getattr(entity, name))
            frames.append(
                build_frame(entity.owner_id, now, LegacyType.POSITION_UPDATE, _dict(pose))
            )
    for line in state.recent_chat:  # the room's recent chat, oldest first
        frames.append(build_frame(line.from_client_id, now, LegacyType.CHAT_MESSAGE, _chat(line)))
    return frames


def _chat(chat: pb.ChatMessage) -> dict[str, Any]:
    payload = _dict(chat)
    payload["timestamp"] = chat.timestamp  # a number, as the client sent it
    return payload


def _spawn(spawn: pb.EntitySpawn) -> dict[str, Any]:
    payload = _dict(spawn)
    payload["components"] = {k: _component_out(v) for k, v in spawn.components.items()}
    return payload


def frames_of(message: pb.Message) -> list[bytes | str]:
    """A server message as the legacy frames a legacy client gets (maybe none).

    The frame id is the originating member's server id (``sender_id``).
    ``ServerHello`` becomes the text hello and the world for a late joiner;
    a despawn also goes as a type-40 LEAVE of the entity id (the client keeps
    spawned avatars as players); acks and server probes have no legacy form.
    """
    kind = message.WhichOneof("payload")
    sender, now = message.sender_id, message.timestamp
    if kind == "server_hello":
        return [server_hello_text(message), *world_frames(message)]
    if kind == "pong":
        return [pong_text(message)]
    if kind == "position_update":
        update = message.position_update
        payload = _dict(update)
        payload["entityId"] = update.entity_id or sender
        return [build_frame(sender, now, LegacyType.POSITION_UPDATE, payload)]
    if kind == "presence_event":
        event = message.presence_event
        payload = _presence_payload(event)
        kind_out = LegacyType.PRESENCE_UPDATE if event.event_type == pb.UPDATE else 40
        return [build_frame(sender, now, kind_out, payload)]
    if kind == "entity_despawn":
        entity_id = message.entity_despawn.entity_id
        leave = {"clientId": entity_id, "eventType": pb.LEAVE}
        return [
            build_frame(sender, now, LegacyType.ENTITY_DESPAWN, {"entityId": entity_id}),
            build_frame(sender, now, LegacyType.PRESENCE_JOIN, leave),
        ]
    if kind == "entity_spawn":
        return [build_frame(sender, now, LegacyType.ENTITY_SPAWN, _spawn(message.entity_spawn))]
    if kind == "entity_update":
        changed = message.entity_update
        payload = {
            "entityId": changed.entity_id,
            "components": {k: _component_out(v) for k, v in changed.components.items()},
        }
        return [build_frame(sender, now, LegacyType.ENTITY_UPDATE, payload)]
    if kind == "chat_message":
        return [build_frame(sender, now, LegacyType.CHAT_MESSAGE, _chat(message.chat_message))]
    simple = _SIMPLE.get(kind or "")
    if simple is not None:
        return [build_frame(sender, now, simple, _dict(getattr(message, kind or "")))]
    return []  # ack, ping (the server's RTT probe), batch: nothing a legacy client reads


_SIMPLE: dict[str, int] = {
    "voice_data": LegacyType.VOICE_DATA,
    "error": LegacyType.ERROR,
    "player_kicked": LegacyType.PLAYER_KICKED,
    "player_muted": LegacyType.PLAYER_MUTED,
    "room_locked": LegacyType.ROOM_LOCKED,
}
