"""Is a decoded client message valid? "It parsed" is not "it is valid".

Every limit is a field of :class:`FieldLimits` with a safe default.
"""

from __future__ import annotations

import math
import unicodedata
from dataclasses import dataclass

from presence.protocol import core_pb2 as pb
from presence.protocol.codes import ErrorCode
from presence.protocol.errors import BadFrame

# Payloads a client may send; everything else is server-only (BAD_MESSAGE).
CLIENT_PAYLOADS = frozenset(
    {
        "client_hello",
        "position_update",
        "voice_data",
        "entity_spawn",
        "entity_update",
        "entity_despawn",
        "chat_message",
        "presence_event",
        "ack",
        "ping",
        "pong",  # the answer to a server Ping (RTT probe, README "Metrics")
        "kick_player",
        "mute_player",
        "lock_room",
    }
)


@dataclass(frozen=True, slots=True)
class FieldLimits:
    """Bounds on client-supplied fields (PROTOCOL.md sections 2 and 8)."""

    frame_bytes: int = 64 * 1024
    display_name: int = 64
    chat_chars: int = 2000
    identifier: int = 128  # entity, template, client and message ids
    components: int = 64
    component_bytes: int = 4096
    url: int = 2048
    reason: int = 256
    capabilities: int = 16
    voice_bytes: int = 32 * 1024


def _bad(text: str) -> BadFrame:
    return BadFrame(ErrorCode.BAD_MESSAGE, text)


def _too_large(text: str) -> BadFrame:
    return BadFrame(ErrorCode.TOO_LARGE, text)


def _check_length(value: str, limit: int, name: str) -> None:
    if len(value) > limit:
        raise _too_large(f"{name} longer than {limit} characters")


# Which characters each kind of text field accepts (PROTOCOL.md section 2, "valid"):
# * names (ids, display names, labels, capabilities, component names): no control
#   (Cc) or format (Cf) characters, except the zero-width joiner inside emoji;
# * free text (chat, moderation reasons): no control characters except tab,
#   newline and carriage return; format characters (bidi marks) are fine;
# * URLs: no control characters and no whitespace.
# NUL in particular never reaches a database column (PostgreSQL refuses it).
_TEXT_CONTROLS_ALLOWED = frozenset("\t\n\r")


def _codepoint(ch: str) -> str:
    return f"U+{ord(ch):04X}"


def name_problem(value: str) -> str | None:
    """Why ``value`` is not acceptable as a name or id, or ``None`` if it is."""
    # Every pose carries two ids: printable ASCII (U+0020-U+007E) holds no
    # control or format character, so most ids skip the per-character lookup.
    if value.isascii() and value.isprintable():
        return None
    return _name_problem_per_character(value)


def _name_problem_per_character(value: str) -> str | None:
    """:func:`name_problem`'s rule, one character at a time (any text)."""
    for ch in value:
        category = unicodedata.category(ch)
        if category == "Cc" or (category == "Cf" and ch != "\u200d"):
            return f"contains a control or format character ({_codepoint(ch)})"
    return None


def _check_name(value: str, limit: int, name: str) -> None:
    _check_length(value, limit, name)
    problem = name_problem(value)
    if problem is not None:
        raise _bad(f"{name} {problem}; use printable characters only")


def _text_control(value: str) -> str | None:
    """The first control character free text may not hold, or ``None``."""
    if value.isascii() and value.isprintable():  # no control character at all
        return None
    return _text_control_per_character(value)


def _text_control_per_character(value: str) -> str | None:
    """:func:`_text_control`'s rule, one character at a time (any text)."""
    for ch in value:
        if ch not in _TEXT_CONTROLS_ALLOWED and unicodedata.category(ch) == "Cc":
            return ch
    return None


def _check_text(value: str, limit: int, name: str) -> None:
    _check_length(value, limit, name)
    ch = _text_control(value)
    if ch is not None:
        raise _bad(
            f"{name} contains a control character ({_codepoint(ch)}); "
            "only tab, newline and carriage return are allowed"
        )


def _check_url(value: str, limit: int, name: str) -> None:
    _check_length(value, limit, name)
    for ch in value:
        if ch.isspace() or unicodedata.category(ch) == "Cc":
            raise _bad(f"{name} contains whitespace or a control character ({_codepoint(ch)})")


def _check_floats(name: str, *values: float) -> None:
    if not all(math.isfinite(v) for v in values):
        raise _bad(f"{name} must be finite")


def _check_pose(message: pb.PositionUpdate | pb.PresenceData | pb.PlayerSnapshot) -> None:
    # Plain calls, no generator: this runs for every pose.
    isfinite = math.isfinite
    if message.HasField("position"):
        p = message.position
        if not (isfinite(p.x) and isfinite(p.y) and isfinite(p.z)):
            raise _bad("position must be finite")
    if message.HasField("rotation"):
        r = message.rotation
        if not (isfinite(r.x) and isfinite(r.y) and isfinite(r.z) and isfinite(r.w)):
            raise _bad("rotation must be finite")


def _check_avatar(config: pb.AvatarConfig, limits: FieldLimits) -> None:
    for field in ("body_type", "primary_color", "secondary_color"):
        _check_name(getattr(config, field), limits.identifier, f"avatar_config.{field}")
    _check_url(config.custom_model_url, limits.url, "avatar_config.custom_model_url")
    _check_floats("avatar_config.height", config.height)


def _check_components(components: object, limits: FieldLimits) -> None:
    items = components.items()  # type: ignore[attr-defined]
    if len(items) > limits.components:
        raise _too_large(f"more than {limits.components} components")
    for key, value in items:
        _check_name(key, limits.identifier, "component name")
        size = len(value.encode("utf-8")) if isinstance(value, str) else len(value)
        if size > limits.component_bytes:
            raise _too_large(f"component {key[:32]!r} larger than {limits.component_bytes} bytes")


def _check_hello(hello: pb.ClientHello, limits: FieldLimits) -> None:
    _check_name(hello.client_id, limits.identifier, "client_id")
    _check_name(hello.display_name, limits.display_name, "display_name")
    _check_length(hello.auth_token, limits.frame_bytes, "auth_token")
    _check_name(hello.requested_room, limits.identifier, "requested_room")
    _check_url(hello.avatar_url, limits.url, "avatar_url")
    _check_avatar(hello.avatar_config, limits)
    if len(hello.capabilities) > limits.capabilities:
        raise _too_large(f"more than {limits.capabilities} capabilities")
    for capability in hello.capabilities:
        _check_name(capability, limits.identifier, "capability")


def _check_presence(event: pb.PresenceEvent, limits: FieldLimits) -> None:
    if event.event_type != pb.UPDATE:
        raise _bad("clients may only send PresenceEvent UPDATE")
    data = event.data
    _check_name(data.display_name, limits.display_name, "display_name")
    _check_url(data.avatar_url, limits.url, "avatar_url")
    _check_avatar(data.avatar_config, limits)
    _check_pose(data)


def validate_client_message(message: pb.Message, limits: FieldLimits) -> str:
    """Check a decoded client message; return its payload name or raise ``BadFrame``."""
    kind: str | None = message.WhichOneof("payload")
    if kind is None:
        raise _bad("message has no payload")
    if kind not in CLIENT_PAYLOADS:
        raise _bad(f"{kind} is sent by the server only")
    _check_name(message.message_id, limits.identifier, "message_id")
    if kind == "position_update":
        update = message.position_update
        _check_name(update.entity_id, limits.identifier, "entity_id")
        _check_pose(update)
    elif kind == "voice_data":
        voice = message.voice_data
        if len(voice.audio_data) > limits.voice_bytes:
            raise _too_large(f"voice data larger than {limits.voice_bytes} bytes")
        if voice.codec < 0:
            raise _bad("voice_data.codec must be 0 or more (0 Opus, 1 PCMU, 2 PCMA)")
    elif kind == "entity_spawn":
        spawn = message.entity_spawn
        if not spawn.entity_id:
            raise _bad("entity_spawn needs an entity_id")
        _check_name(spawn.entity_id, limits.identifier, "entity_id")
        _check_name(spawn.template_id, limits.identifier, "template_id")
        _check_components(spawn.components, limits)
    elif kind == "entity_update":
        _check_name(message.entity_update.entity_id, limits.identifier, "entity_id")
        _check_components(message.entity_update.components, limits)
    elif kind == "entity_despawn":
        _check_name(message.entity_despawn.entity_id, limits.identifier, "entity_id")
    elif kind == "chat_message":
        text = message.chat_message.message
        if not text.strip():
            raise _bad("chat message is empty")
        _check_text(text, limits.chat_chars, "chat message")
    elif kind == "client_hello":
        _check_hello(message.client_hello, limits)
    elif kind == "presence_event":
        _check_presence(message.presence_event, limits)
    elif kind in ("kick_player", "mute_player"):
        target = getattr(message, kind).target_client_id
        _check_name(target, limits.identifier, "target_client_id")
        _check_text(getattr(message, kind).reason, limits.reason, "reason")
    elif kind == "lock_room":
        _check_text(message.lock_room.reason, limits.reason, "reason")
    return kind
