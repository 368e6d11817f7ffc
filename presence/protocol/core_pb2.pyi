from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class MessageType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    UNKNOWN: _ClassVar[MessageType]
    CLIENT_HELLO: _ClassVar[MessageType]
    SERVER_HELLO: _ClassVar[MessageType]
    POSITION_UPDATE: _ClassVar[MessageType]
    VOICE_DATA: _ClassVar[MessageType]
    ENTITY_SPAWN: _ClassVar[MessageType]
    ENTITY_UPDATE: _ClassVar[MessageType]
    ENTITY_DESPAWN: _ClassVar[MessageType]
    CHAT_MESSAGE: _ClassVar[MessageType]
    PRESENCE_JOIN: _ClassVar[MessageType]
    PRESENCE_LEAVE: _ClassVar[MessageType]
    PRESENCE_UPDATE: _ClassVar[MessageType]
    ACK: _ClassVar[MessageType]
    ERROR: _ClassVar[MessageType]
    PING: _ClassVar[MessageType]
    PONG: _ClassVar[MessageType]
    BATCH: _ClassVar[MessageType]
    KICK_PLAYER: _ClassVar[MessageType]
    MUTE_PLAYER: _ClassVar[MessageType]
    LOCK_ROOM: _ClassVar[MessageType]
    PLAYER_KICKED: _ClassVar[MessageType]
    PLAYER_MUTED: _ClassVar[MessageType]
    ROOM_LOCKED: _ClassVar[MessageType]

class ChatMessageType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    NORMAL: _ClassVar[ChatMessageType]
    WHISPER: _ClassVar[ChatMessageType]
    SHOUT: _ClassVar[ChatMessageType]

class PresenceEventType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    JOIN: _ClassVar[PresenceEventType]
    LEAVE: _ClassVar[PresenceEventType]
    UPDATE: _ClassVar[PresenceEventType]
UNKNOWN: MessageType
CLIENT_HELLO: MessageType
SERVER_HELLO: MessageType
POSITION_UPDATE: MessageType
VOICE_DATA: MessageType
ENTITY_SPAWN: MessageType
ENTITY_UPDATE: MessageType
ENTITY_DESPAWN: MessageType
CHAT_MESSAGE: MessageType
PRESENCE_JOIN: MessageType
PRESENCE_LEAVE: MessageType
PRESENCE_UPDATE: MessageType
ACK: MessageType
ERROR: MessageType
PING: MessageType
PONG: MessageType
BATCH: MessageType
KICK_PLAYER: MessageType
MUTE_PLAYER: MessageType
LOCK_ROOM: MessageType
PLAYER_KICKED: MessageType
PLAYER_MUTED: MessageType
ROOM_LOCKED: MessageType
NORMAL: ChatMessageType
WHISPER: ChatMessageType
SHOUT: ChatMessageType
JOIN: PresenceEventType
LEAVE: PresenceEventType
UPDATE: PresenceEventType

class Message(_message.Message):
    __slots__ = ("message_id", "timestamp", "type", "seq", "sender_id", "client_hello", "server_hello", "position_update", "voice_data", "entity_spawn", "entity_update", "entity_despawn", "chat_message", "presence_event", "ack", "error", "ping", "pong", "batch", "kick_player", "mute_player", "lock_room", "player_kicked", "player_muted", "room_locked")
    MESSAGE_ID_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    SENDER_ID_FIELD_NUMBER: _ClassVar[int]
    CLIENT_HELLO_FIELD_NUMBER: _ClassVar[int]
    SERVER_HELLO_FIELD_NUMBER: _ClassVar[int]
    POSITION_UPDATE_FIELD_NUMBER: _ClassVar[int]
    VOICE_DATA_FIELD_NUMBER: _ClassVar[int]
    ENTITY_SPAWN_FIELD_NUMBER: _ClassVar[int]
    ENTITY_UPDATE_FIELD_NUMBER: _ClassVar[int]
    ENTITY_DESPAWN_FIELD_NUMBER: _ClassVar[int]
    CHAT_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    PRESENCE_EVENT_FIELD_NUMBER: _ClassVar[int]
    ACK_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    PING_FIELD_NUMBER: _ClassVar[int]
    PONG_FIELD_NUMBER: _ClassVar[int]
    BATCH_FIELD_NUMBER: _ClassVar[int]
    KICK_PLAYER_FIELD_NUMBER: _ClassVar[int]
    MUTE_PLAYER_FIELD_NUMBER: _ClassVar[int]
    LOCK_ROOM_FIELD_NUMBER: _ClassVar[int]
    PLAYER_KICKED_FIELD_NUMBER: _ClassVar[int]
    PLAYER_MUTED_FIELD_NUMBER: _ClassVar[int]
    ROOM_LOCKED_FIELD_NUMBER: _ClassVar[int]
    message_id: str
    timestamp: int
    type: MessageType
    seq: int
    sender_id: str
    client_hello: ClientHello
    server_hello: ServerHello
    position_update: PositionUpdate
    voice_data: VoiceData
    entity_spawn: EntitySpawn
    entity_update: EntityUpdate
    entity_despawn: EntityDespawn
    chat_message: ChatMessage
    presence_event: PresenceEvent
    ack: Ack
    error: Error
    ping: Ping
    pong: Pong
    batch: Batch
    kick_player: KickPlayer
    mute_player: MutePlayer
    lock_room: LockRoom
    player_kicked: PlayerKicked
    player_muted: PlayerMuted
    room_locked: RoomLocked
    def __init__(self, message_id: _Optional[str] = ..., timestamp: _Optional[int] = ..., type: _Optional[_Union[MessageType, str]] = ..., seq: _Optional[int] = ..., sender_id: _Optional[str] = ..., client_hello: _Optional[_Union[ClientHello, _Mapping]] = ..., server_hello: _Optional[_Union[ServerHello, _Mapping]] = ..., position_update: _Optional[_Union[PositionUpdate, _Mapping]] = ..., voice_data: _Optional[_Union[VoiceData, _Mapping]] = ..., entity_spawn: _Optional[_Union[EntitySpawn, _Mapping]] = ..., entity_update: _Optional[_Union[EntityUpdate, _Mapping]] = ..., entity_despawn: _Optional[_Union[EntityDespawn, _Mapping]] = ..., chat_message: _Optional[_Union[ChatMessage, _Mapping]] = ..., presence_event: _Optional[_Union[PresenceEvent, _Mapping]] = ..., ack: _Optional[_Union[Ack, _Mapping]] = ..., error: _Optional[_Union[Error, _Mapping]] = ..., ping: _Optional[_Union[Ping, _Mapping]] = ..., pong: _Optional[_Union[Pong, _Mapping]] = ..., batch: _Optional[_Union[Batch, _Mapping]] = ..., kick_player: _Optional[_Union[KickPlayer, _Mapping]] = ..., mute_player: _Optional[_Union[MutePlayer, _Mapping]] = ..., lock_room: _Optional[_Union[LockRoom, _Mapping]] = ..., player_kicked: _Optional[_Union[PlayerKicked, _Mapping]] = ..., player_muted: _Optional[_Union[PlayerMuted, _Mapping]] = ..., room_locked: _Optional[_Union[RoomLocked, _Mapping]] = ...) -> None: ...

class Vector3(_message.Message):
    __slots__ = ("x", "y", "z")
    X_FIELD_NUMBER: _ClassVar[int]
    Y_FIELD_NUMBER: _ClassVar[int]
    Z_FIELD_NUMBER: _ClassVar[int]
    x: float
    y: float
    z: float
    def __init__(self, x: _Optional[float] = ..., y: _Optional[float] = ..., z: _Optional[float] = ...) -> None: ...

class Quaternion(_message.Message):
    __slots__ = ("x", "y", "z", "w")
    X_FIELD_NUMBER: _ClassVar[int]
    Y_FIELD_NUMBER: _ClassVar[int]
    Z_FIELD_NUMBER: _ClassVar[int]
    W_FIELD_NUMBER: _ClassVar[int]
    x: float
    y: float
    z: float
    w: float
    def __init__(self, x: _Optional[float] = ..., y: _Optional[float] = ..., z: _Optional[float] = ..., w: _Optional[float] = ...) -> None: ...

class AvatarConfig(_message.Message):
    __slots__ = ("body_type", "primary_color", "secondary_color", "height", "custom_model_url")
    BODY_TYPE_FIELD_NUMBER: _ClassVar[int]
    PRIMARY_COLOR_FIELD_NUMBER: _ClassVar[int]
    SECONDARY_COLOR_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    CUSTOM_MODEL_URL_FIELD_NUMBER: _ClassVar[int]
    body_type: str
    primary_color: str
    secondary_color: str
    height: float
    custom_model_url: str
    def __init__(self, body_type: _Optional[str] = ..., primary_color: _Optional[str] = ..., secondary_color: _Optional[str] = ..., height: _Optional[float] = ..., custom_model_url: _Optional[str] = ...) -> None: ...

class ClientHello(_message.Message):
    __slots__ = ("client_id", "display_name", "auth_token", "requested_room", "avatar_url", "avatar_config", "capabilities")
    CLIENT_ID_FIELD_NUMBER: _ClassVar[int]
    DISPLAY_NAME_FIELD_NUMBER: _ClassVar[int]
    AUTH_TOKEN_FIELD_NUMBER: _ClassVar[int]
    REQUESTED_ROOM_FIELD_NUMBER: _ClassVar[int]
    AVATAR_URL_FIELD_NUMBER: _ClassVar[int]
    AVATAR_CONFIG_FIELD_NUMBER: _ClassVar[int]
    CAPABILITIES_FIELD_NUMBER: _ClassVar[int]
    client_id: str
    display_name: str
    auth_token: str
    requested_room: str
    avatar_url: str
    avatar_config: AvatarConfig
    capabilities: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, client_id: _Optional[str] = ..., display_name: _Optional[str] = ..., auth_token: _Optional[str] = ..., requested_room: _Optional[str] = ..., avatar_url: _Optional[str] = ..., avatar_config: _Optional[_Union[AvatarConfig, _Mapping]] = ..., capabilities: _Optional[_Iterable[str]] = ...) -> None: ...

class ServerHello(_message.Message):
    __slots__ = ("server_version", "assigned_client_id", "room_id", "initial_state", "session_id", "resumed", "host_client_id", "heartbeat_interval_ms", "capabilities")
    SERVER_VERSION_FIELD_NUMBER: _ClassVar[int]
    ASSIGNED_CLIENT_ID_FIELD_NUMBER: _ClassVar[int]
    ROOM_ID_FIELD_NUMBER: _ClassVar[int]
    INITIAL_STATE_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    RESUMED_FIELD_NUMBER: _ClassVar[int]
    HOST_CLIENT_ID_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_INTERVAL_MS_FIELD_NUMBER: _ClassVar[int]
    CAPABILITIES_FIELD_NUMBER: _ClassVar[int]
    server_version: str
    assigned_client_id: str
    room_id: str
    initial_state: WorldState
    session_id: str
    resumed: bool
    host_client_id: str
    heartbeat_interval_ms: int
    capabilities: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, server_version: _Optional[str] = ..., assigned_client_id: _Optional[str] = ..., room_id: _Optional[str] = ..., initial_state: _Optional[_Union[WorldState, _Mapping]] = ..., session_id: _Optional[str] = ..., resumed: _Optional[bool] = ..., host_client_id: _Optional[str] = ..., heartbeat_interval_ms: _Optional[int] = ..., capabilities: _Optional[_Iterable[str]] = ...) -> None: ...

class PositionUpdate(_message.Message):
    __slots__ = ("entity_id", "position", "rotation", "sequence_number")
    ENTITY_ID_FIELD_NUMBER: _ClassVar[int]
    POSITION_FIELD_NUMBER: _ClassVar[int]
    ROTATION_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_NUMBER_FIELD_NUMBER: _ClassVar[int]
    entity_id: str
    position: Vector3
    rotation: Quaternion
    sequence_number: int
    def __init__(self, entity_id: _Optional[str] = ..., position: _Optional[_Union[Vector3, _Mapping]] = ..., rotation: _Optional[_Union[Quaternion, _Mapping]] = ..., sequence_number: _Optional[int] = ...) -> None: ...

class VoiceData(_message.Message):
    __slots__ = ("from_client_id", "audio_data", "sequence_number", "codec")
    FROM_CLIENT_ID_FIELD_NUMBER: _ClassVar[int]
    AUDIO_DATA_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_NUMBER_FIELD_NUMBER: _ClassVar[int]
    CODEC_FIELD_NUMBER: _ClassVar[int]
    from_client_id: str
    audio_data: bytes
    sequence_number: int
    codec: int
    def __init__(self, from_client_id: _Optional[str] = ..., audio_data: _Optional[bytes] = ..., sequence_number: _Optional[int] = ..., codec: _Optional[int] = ...) -> None: ...

class EntitySpawn(_message.Message):
    __slots__ = ("entity_id", "template_id", "owner_id", "components")
    class ComponentsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ENTITY_ID_FIELD_NUMBER: _ClassVar[int]
    TEMPLATE_ID_FIELD_NUMBER: _ClassVar[int]
    OWNER_ID_FIELD_NUMBER: _ClassVar[int]
    COMPONENTS_FIELD_NUMBER: _ClassVar[int]
    entity_id: str
    template_id: str
    owner_id: str
    components: _containers.ScalarMap[str, str]
    def __init__(self, entity_id: _Optional[str] = ..., template_id: _Optional[str] = ..., owner_id: _Optional[str] = ..., components: _Optional[_Mapping[str, str]] = ...) -> None: ...

class EntityUpdate(_message.Message):
    __slots__ = ("entity_id", "components")
    class ComponentsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: bytes
        def __init__(self, key: _Optional[str] = ..., value: _Optional[bytes] = ...) -> None: ...
    ENTITY_ID_FIELD_NUMBER: _ClassVar[int]
    COMPONENTS_FIELD_NUMBER: _ClassVar[int]
    entity_id: str
    components: _containers.ScalarMap[str, bytes]
    def __init__(self, entity_id: _Optional[str] = ..., components: _Optional[_Mapping[str, bytes]] = ...) -> None: ...

class EntityDespawn(_message.Message):
    __slots__ = ("entity_id",)
    ENTITY_ID_FIELD_NUMBER: _ClassVar[int]
    entity_id: str
    def __init__(self, entity_id: _Optional[str] = ...) -> None: ...

class ChatMessage(_message.Message):
    __slots__ = ("from_client_id", "message", "timestamp", "type")
    FROM_CLIENT_ID_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    from_client_id: str
    message: str
    timestamp: int
    type: ChatMessageType
    def __init__(self, from_client_id: _Optional[str] = ..., message: _Optional[str] = ..., timestamp: _Optional[int] = ..., type: _Optional[_Union[ChatMessageType, str]] = ...) -> None: ...

class PresenceEvent(_message.Message):
    __slots__ = ("client_id", "event_type", "data")
    CLIENT_ID_FIELD_NUMBER: _ClassVar[int]
    EVENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    client_id: str
    event_type: PresenceEventType
    data: PresenceData
    def __init__(self, client_id: _Optional[str] = ..., event_type: _Optional[_Union[PresenceEventType, str]] = ..., data: _Optional[_Union[PresenceData, _Mapping]] = ...) -> None: ...

class PresenceData(_message.Message):
    __slots__ = ("display_name", "avatar_url", "position", "rotation", "avatar_config", "host_client_id")
    DISPLAY_NAME_FIELD_NUMBER: _ClassVar[int]
    AVATAR_URL_FIELD_NUMBER: _ClassVar[int]
    POSITION_FIELD_NUMBER: _ClassVar[int]
    ROTATION_FIELD_NUMBER: _ClassVar[int]
    AVATAR_CONFIG_FIELD_NUMBER: _ClassVar[int]
    HOST_CLIENT_ID_FIELD_NUMBER: _ClassVar[int]
    display_name: str
    avatar_url: str
    position: Vector3
    rotation: Quaternion
    avatar_config: AvatarConfig
    host_client_id: str
    def __init__(self, display_name: _Optional[str] = ..., avatar_url: _Optional[str] = ..., position: _Optional[_Union[Vector3, _Mapping]] = ..., rotation: _Optional[_Union[Quaternion, _Mapping]] = ..., avatar_config: _Optional[_Union[AvatarConfig, _Mapping]] = ..., host_client_id: _Optional[str] = ...) -> None: ...

class WorldState(_message.Message):
    __slots__ = ("entities", "players", "last_update", "recent_chat")
    ENTITIES_FIELD_NUMBER: _ClassVar[int]
    PLAYERS_FIELD_NUMBER: _ClassVar[int]
    LAST_UPDATE_FIELD_NUMBER: _ClassVar[int]
    RECENT_CHAT_FIELD_NUMBER: _ClassVar[int]
    entities: _containers.RepeatedCompositeFieldContainer[EntitySnapshot]
    players: _containers.RepeatedCompositeFieldContainer[PlayerSnapshot]
    last_update: int
    recent_chat: _containers.RepeatedCompositeFieldContainer[ChatMessage]
    def __init__(self, entities: _Optional[_Iterable[_Union[EntitySnapshot, _Mapping]]] = ..., players: _Optional[_Iterable[_Union[PlayerSnapshot, _Mapping]]] = ..., last_update: _Optional[int] = ..., recent_chat: _Optional[_Iterable[_Union[ChatMessage, _Mapping]]] = ...) -> None: ...

class EntitySnapshot(_message.Message):
    __slots__ = ("id", "template_id", "position", "rotation", "components", "owner_id")
    class ComponentsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    TEMPLATE_ID_FIELD_NUMBER: _ClassVar[int]
    POSITION_FIELD_NUMBER: _ClassVar[int]
    ROTATION_FIELD_NUMBER: _ClassVar[int]
    COMPONENTS_FIELD_NUMBER: _ClassVar[int]
    OWNER_ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    template_id: str
    position: Vector3
    rotation: Quaternion
    components: _containers.ScalarMap[str, str]
    owner_id: str
    def __init__(self, id: _Optional[str] = ..., template_id: _Optional[str] = ..., position: _Optional[_Union[Vector3, _Mapping]] = ..., rotation: _Optional[_Union[Quaternion, _Mapping]] = ..., components: _Optional[_Mapping[str, str]] = ..., owner_id: _Optional[str] = ...) -> None: ...

class PlayerSnapshot(_message.Message):
    __slots__ = ("client_id", "display_name", "avatar_url", "position", "rotation", "avatar_config")
    CLIENT_ID_FIELD_NUMBER: _ClassVar[int]
    DISPLAY_NAME_FIELD_NUMBER: _ClassVar[int]
    AVATAR_URL_FIELD_NUMBER: _ClassVar[int]
    POSITION_FIELD_NUMBER: _ClassVar[int]
    ROTATION_FIELD_NUMBER: _ClassVar[int]
    AVATAR_CONFIG_FIELD_NUMBER: _ClassVar[int]
    client_id: str
    display_name: str
    avatar_url: str
    position: Vector3
    rotation: Quaternion
    avatar_config: AvatarConfig
    def __init__(self, client_id: _Optional[str] = ..., display_name: _Optional[str] = ..., avatar_url: _Optional[str] = ..., position: _Optional[_Union[Vector3, _Mapping]] = ..., rotation: _Optional[_Union[Quaternion, _Mapping]] = ..., avatar_config: _Optional[_Union[AvatarConfig, _Mapping]] = ...) -> None: ...

class Ack(_message.Message):
    __slots__ = ("up_to_seq", "message_id")
    UP_TO_SEQ_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_ID_FIELD_NUMBER: _ClassVar[int]
    up_to_seq: int
    message_id: str
    def __init__(self, up_to_seq: _Optional[int] = ..., message_id: _Optional[str] = ...) -> None: ...

class Error(_message.Message):
    __slots__ = ("code", "message", "retry_after_ms", "ref_message_id")
    class ErrorCode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        UNKNOWN: _ClassVar[Error.ErrorCode]
        BAD_MESSAGE: _ClassVar[Error.ErrorCode]
        UNAUTHORIZED: _ClassVar[Error.ErrorCode]
        FORBIDDEN: _ClassVar[Error.ErrorCode]
        RATE_LIMITED: _ClassVar[Error.ErrorCode]
        TOO_LARGE: _ClassVar[Error.ErrorCode]
        NOT_OWNER: _ClassVar[Error.ErrorCode]
        ROOM_LOCKED: _ClassVar[Error.ErrorCode]
        ROOM_FULL: _ClassVar[Error.ErrorCode]
        RESYNC_REQUIRED: _ClassVar[Error.ErrorCode]
        UNAVAILABLE: _ClassVar[Error.ErrorCode]
        MUTED: _ClassVar[Error.ErrorCode]
        INTERNAL: _ClassVar[Error.ErrorCode]
    UNKNOWN: Error.ErrorCode
    BAD_MESSAGE: Error.ErrorCode
    UNAUTHORIZED: Error.ErrorCode
    FORBIDDEN: Error.ErrorCode
    RATE_LIMITED: Error.ErrorCode
    TOO_LARGE: Error.ErrorCode
    NOT_OWNER: Error.ErrorCode
    ROOM_LOCKED: Error.ErrorCode
    ROOM_FULL: Error.ErrorCode
    RESYNC_REQUIRED: Error.ErrorCode
    UNAVAILABLE: Error.ErrorCode
    MUTED: Error.ErrorCode
    INTERNAL: Error.ErrorCode
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    RETRY_AFTER_MS_FIELD_NUMBER: _ClassVar[int]
    REF_MESSAGE_ID_FIELD_NUMBER: _ClassVar[int]
    code: Error.ErrorCode
    message: str
    retry_after_ms: int
    ref_message_id: str
    def __init__(self, code: _Optional[_Union[Error.ErrorCode, str]] = ..., message: _Optional[str] = ..., retry_after_ms: _Optional[int] = ..., ref_message_id: _Optional[str] = ...) -> None: ...

class Ping(_message.Message):
    __slots__ = ("client_time_ms",)
    CLIENT_TIME_MS_FIELD_NUMBER: _ClassVar[int]
    client_time_ms: int
    def __init__(self, client_time_ms: _Optional[int] = ...) -> None: ...

class Pong(_message.Message):
    __slots__ = ("client_time_ms", "server_time_ms")
    CLIENT_TIME_MS_FIELD_NUMBER: _ClassVar[int]
    SERVER_TIME_MS_FIELD_NUMBER: _ClassVar[int]
    client_time_ms: int
    server_time_ms: int
    def __init__(self, client_time_ms: _Optional[int] = ..., server_time_ms: _Optional[int] = ...) -> None: ...

class Batch(_message.Message):
    __slots__ = ("messages",)
    MESSAGES_FIELD_NUMBER: _ClassVar[int]
    messages: _containers.RepeatedCompositeFieldContainer[Message]
    def __init__(self, messages: _Optional[_Iterable[_Union[Message, _Mapping]]] = ...) -> None: ...

class KickPlayer(_message.Message):
    __slots__ = ("target_client_id", "reason")
    TARGET_CLIENT_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    target_client_id: str
    reason: str
    def __init__(self, target_client_id: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class MutePlayer(_message.Message):
    __slots__ = ("target_client_id", "muted", "reason")
    TARGET_CLIENT_ID_FIELD_NUMBER: _ClassVar[int]
    MUTED_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    target_client_id: str
    muted: bool
    reason: str
    def __init__(self, target_client_id: _Optional[str] = ..., muted: _Optional[bool] = ..., reason: _Optional[str] = ...) -> None: ...

class LockRoom(_message.Message):
    __slots__ = ("locked", "reason")
    LOCKED_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    locked: bool
    reason: str
    def __init__(self, locked: _Optional[bool] = ..., reason: _Optional[str] = ...) -> None: ...

class PlayerKicked(_message.Message):
    __slots__ = ("kicked_client_id", "kicked_by_client_id", "reason")
    KICKED_CLIENT_ID_FIELD_NUMBER: _ClassVar[int]
    KICKED_BY_CLIENT_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    kicked_client_id: str
    kicked_by_client_id: str
    reason: str
    def __init__(self, kicked_client_id: _Optional[str] = ..., kicked_by_client_id: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class PlayerMuted(_message.Message):
    __slots__ = ("muted_client_id", "muted", "reason")
    MUTED_CLIENT_ID_FIELD_NUMBER: _ClassVar[int]
    MUTED_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    muted_client_id: str
    muted: bool
    reason: str
    def __init__(self, muted_client_id: _Optional[str] = ..., muted: _Optional[bool] = ..., reason: _Optional[str] = ...) -> None: ...

class RoomLocked(_message.Message):
    __slots__ = ("locked", "locked_by_client_id", "reason")
    LOCKED_FIELD_NUMBER: _ClassVar[int]
    LOCKED_BY_CLIENT_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    locked: bool
    locked_by_client_id: str
    reason: str
    def __init__(self, locked: _Optional[bool] = ..., locked_by_client_id: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...
