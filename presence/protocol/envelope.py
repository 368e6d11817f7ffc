"""Building server messages: the envelope fields the server always sets."""

from __future__ import annotations

from presence.protocol import core_pb2 as pb

_PAYLOAD_TYPES: dict[str, int] = {
    "client_hello": pb.CLIENT_HELLO,
    "server_hello": pb.SERVER_HELLO,
    "position_update": pb.POSITION_UPDATE,
    "voice_data": pb.VOICE_DATA,
    "entity_spawn": pb.ENTITY_SPAWN,
    "entity_update": pb.ENTITY_UPDATE,
    "entity_despawn": pb.ENTITY_DESPAWN,
    "chat_message": pb.CHAT_MESSAGE,
    "ack": pb.ACK,
    "error": pb.ERROR,
    "ping": pb.PING,
    "pong": pb.PONG,
    "batch": pb.BATCH,
    "kick_player": pb.KICK_PLAYER,
    "mute_player": pb.MUTE_PLAYER,
    "lock_room": pb.LOCK_ROOM,
    "player_kicked": pb.PLAYER_KICKED,
    "player_muted": pb.PLAYER_MUTED,
    "room_locked": pb.ROOM_LOCKED,
}
_PRESENCE_TYPES: dict[int, int] = {
    pb.JOIN: pb.PRESENCE_JOIN,
    pb.LEAVE: pb.PRESENCE_LEAVE,
    pb.UPDATE: pb.PRESENCE_UPDATE,
}


def message_type_of(message: pb.Message) -> int:
    """The ``MessageType`` that matches the message's payload."""
    kind = message.WhichOneof("payload")
    if kind == "presence_event":
        return _PRESENCE_TYPES[message.presence_event.event_type]
    return _PAYLOAD_TYPES.get(kind or "", pb.UNKNOWN)


def stamp(
    message: pb.Message, *, now_ms: int, sender_id: str = "", message_id: str = ""
) -> pb.Message:
    """Set the server-owned envelope fields in place and return ``message``."""
    message.type = message_type_of(message)  # type: ignore[assignment]
    message.timestamp = now_ms
    message.sender_id = sender_id
    message.message_id = message_id
    message.seq = 0
    return message


def error_message(
    code: int, text: str, *, now_ms: int, ref_message_id: str = "", retry_after_ms: int = 0
) -> pb.Message:
    """An ``Error`` frame for one connection."""
    message = pb.Message(
        error=pb.Error(
            code=code,  # type: ignore[arg-type]
            message=text,
            ref_message_id=ref_message_id,
            retry_after_ms=retry_after_ms,
        )
    )
    return stamp(message, now_ms=now_ms)
