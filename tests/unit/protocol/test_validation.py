"""A decoded client message is valid only within FieldLimits (PROTOCOL.md sections 2, 3, 8)."""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from presence.protocol import pb
from presence.protocol.codec import decode_frame
from presence.protocol.codes import ErrorCode
from presence.protocol.errors import BadFrame
from presence.protocol.validation import (
    CLIENT_PAYLOADS,
    FieldLimits,
    _name_problem_per_character,
    _text_control,
    _text_control_per_character,
    name_problem,
    validate_client_message,
)

LIMITS = FieldLimits()


def _refused(message: pb.Message, limits: FieldLimits = LIMITS) -> ErrorCode:
    with pytest.raises(BadFrame) as refused:
        validate_client_message(message, limits)
    return refused.value.code


def _presence_update(data: pb.PresenceData) -> pb.Message:
    return pb.Message(presence_event=pb.PresenceEvent(event_type=pb.UPDATE, data=data))


VALID_CLIENT_MESSAGES: dict[str, pb.Message] = {
    "client_hello": pb.Message(
        client_hello=pb.ClientHello(
            client_id="headset-1",
            display_name="Ada",
            auth_token="eyJ.token.sig",
            requested_room="lobby",
            avatar_url="https://example.com/ada.glb",
            avatar_config=pb.AvatarConfig(body_type="robot", height=1.7),
            capabilities=["ack", "batch"],
        )
    ),
    "position_update": pb.Message(
        position_update=pb.PositionUpdate(
            position=pb.Vector3(x=1, y=1.6, z=-2), rotation=pb.Quaternion(w=1)
        )
    ),
    "voice_data": pb.Message(voice_data=pb.VoiceData(audio_data=b"\x01" * 160, codec=1)),
    "entity_spawn": pb.Message(
        entity_spawn=pb.EntitySpawn(
            entity_id="cube-1", template_id="cube", components={"color": "red"}
        )
    ),
    "entity_update": pb.Message(
        entity_update=pb.EntityUpdate(entity_id="cube-1", components={"color": b"blue"})
    ),
    "entity_despawn": pb.Message(entity_despawn=pb.EntityDespawn(entity_id="cube-1")),
    "chat_message": pb.Message(chat_message=pb.ChatMessage(message="hello\nworld")),
    "presence_event": _presence_update(pb.PresenceData(display_name="Ada")),
    "ack": pb.Message(ack=pb.Ack(up_to_seq=3)),
    "ping": pb.Message(ping=pb.Ping(client_time_ms=1_700_000_000_000)),
    # The answer to a server RTT probe (README "Metrics").
    "pong": pb.Message(pong=pb.Pong(client_time_ms=1_700_000_000_000)),
    "kick_player": pb.Message(kick_player=pb.KickPlayer(target_client_id="c2", reason="spam")),
    "mute_player": pb.Message(mute_player=pb.MutePlayer(target_client_id="c2", muted=True)),
    "lock_room": pb.Message(lock_room=pb.LockRoom(locked=True, reason="event")),
}

SERVER_ONLY_MESSAGES: dict[str, pb.Message] = {
    "server_hello": pb.Message(server_hello=pb.ServerHello(assigned_client_id="c1")),
    "error": pb.Message(error=pb.Error(code=ErrorCode.FORBIDDEN)),
    "batch": pb.Message(batch=pb.Batch(messages=[pb.Message(ping=pb.Ping())])),
    "player_kicked": pb.Message(player_kicked=pb.PlayerKicked(kicked_client_id="c2")),
    "player_muted": pb.Message(player_muted=pb.PlayerMuted(muted_client_id="c2")),
    "room_locked": pb.Message(room_locked=pb.RoomLocked(locked=True)),
}


def test_every_payload_is_either_client_or_server_only() -> None:
    payloads = {f.name for f in pb.Message.DESCRIPTOR.oneofs_by_name["payload"].fields}

    assert set(CLIENT_PAYLOADS) == set(VALID_CLIENT_MESSAGES)
    assert payloads == set(VALID_CLIENT_MESSAGES) | set(SERVER_ONLY_MESSAGES)


@pytest.mark.parametrize("kind", sorted(VALID_CLIENT_MESSAGES))
def test_client_payload_is_accepted_and_named(kind: str) -> None:
    assert validate_client_message(VALID_CLIENT_MESSAGES[kind], LIMITS) == kind


@pytest.mark.parametrize("kind", sorted(SERVER_ONLY_MESSAGES))
def test_server_only_payload_from_a_client_is_bad_message(kind: str) -> None:
    assert _refused(SERVER_ONLY_MESSAGES[kind]) == ErrorCode.BAD_MESSAGE


def test_message_without_payload_is_bad_message() -> None:
    assert _refused(pb.Message(message_id="c-1", timestamp=5)) == ErrorCode.BAD_MESSAGE


def test_refusal_is_a_bad_frame_with_a_readable_text() -> None:
    with pytest.raises(BadFrame) as refused:
        validate_client_message(SERVER_ONLY_MESSAGES["player_kicked"], LIMITS)

    assert "player_kicked" in refused.value.message


# --- field limits: at the limit accepted, one past it TOO_LARGE --------------
#
# Each case: (FieldLimits attribute, builder of a message whose bounded field has size n).


def _hello(**fields: object) -> pb.Message:
    return pb.Message(client_hello=pb.ClientHello(**fields))  # type: ignore[arg-type]


def _spawn(**fields: object) -> pb.Message:
    fields.setdefault("entity_id", "e1")
    return pb.Message(entity_spawn=pb.EntitySpawn(**fields))  # type: ignore[arg-type]


def _components(n: int) -> dict[str, str]:
    return {f"c{i}": "v" for i in range(n)}


LIMIT_CASES: list[tuple[str, Callable[[int], pb.Message]]] = [
    ("display_name", lambda n: _hello(display_name="a" * n)),
    ("display_name", lambda n: _presence_update(pb.PresenceData(display_name="a" * n))),
    ("chat_chars", lambda n: pb.Message(chat_message=pb.ChatMessage(message="a" * n))),
    ("identifier", lambda n: pb.Message(message_id="m" * n, ping=pb.Ping())),
    (
        "identifier",
        lambda n: pb.Message(position_update=pb.PositionUpdate(entity_id="e" * n)),
    ),
    ("identifier", lambda n: _spawn(entity_id="e" * n)),
    ("identifier", lambda n: _spawn(template_id="t" * n)),
    ("identifier", lambda n: _spawn(components={"k" * n: "v"})),
    (
        "identifier",
        lambda n: pb.Message(entity_update=pb.EntityUpdate(entity_id="e" * n)),
    ),
    (
        "identifier",
        lambda n: pb.Message(
            entity_update=pb.EntityUpdate(entity_id="e", components={"k" * n: b""})
        ),
    ),
    (
        "identifier",
        lambda n: pb.Message(entity_despawn=pb.EntityDespawn(entity_id="e" * n)),
    ),
    ("identifier", lambda n: _hello(client_id="c" * n)),
    ("identifier", lambda n: _hello(requested_room="r" * n)),
    ("identifier", lambda n: _hello(capabilities=["c" * n])),
    ("identifier", lambda n: _hello(avatar_config=pb.AvatarConfig(body_type="b" * n))),
    ("identifier", lambda n: _hello(avatar_config=pb.AvatarConfig(primary_color="p" * n))),
    ("identifier", lambda n: _hello(avatar_config=pb.AvatarConfig(secondary_color="s" * n))),
    (
        "identifier",
        lambda n: pb.Message(kick_player=pb.KickPlayer(target_client_id="c" * n)),
    ),
    (
        "identifier",
        lambda n: pb.Message(mute_player=pb.MutePlayer(target_client_id="c" * n)),
    ),
    ("components", lambda n: _spawn(components=_components(n))),
    (
        "components",
        lambda n: pb.Message(
            entity_update=pb.EntityUpdate(
                entity_id="e1", components={f"c{i}": b"v" for i in range(n)}
            )
        ),
    ),
    ("component_bytes", lambda n: _spawn(components={"mesh": "a" * n})),
    (
        "component_bytes",
        lambda n: pb.Message(
            entity_update=pb.EntityUpdate(entity_id="e1", components={"mesh": b"\xff" * n})
        ),
    ),
    ("voice_bytes", lambda n: pb.Message(voice_data=pb.VoiceData(audio_data=b"\x00" * n))),
    ("capabilities", lambda n: _hello(capabilities=[f"cap{i}" for i in range(n)])),
    ("url", lambda n: _hello(avatar_url="u" * n)),
    ("url", lambda n: _presence_update(pb.PresenceData(avatar_url="u" * n))),
    ("url", lambda n: _hello(avatar_config=pb.AvatarConfig(custom_model_url="u" * n))),
    (
        "url",
        lambda n: _presence_update(
            pb.PresenceData(avatar_config=pb.AvatarConfig(custom_model_url="u" * n))
        ),
    ),
    (
        "reason",
        lambda n: pb.Message(kick_player=pb.KickPlayer(target_client_id="c", reason="r" * n)),
    ),
    (
        "reason",
        lambda n: pb.Message(mute_player=pb.MutePlayer(target_client_id="c", reason="r" * n)),
    ),
    ("reason", lambda n: pb.Message(lock_room=pb.LockRoom(reason="r" * n))),
    ("frame_bytes", lambda n: _hello(auth_token="t" * n)),
]
LIMIT_IDS = [
    f"{name}-{build(1).WhichOneof('payload')}-{i}" for i, (name, build) in enumerate(LIMIT_CASES)
]


@pytest.mark.parametrize(("limit", "build"), LIMIT_CASES, ids=LIMIT_IDS)
def test_field_exactly_at_its_limit_is_accepted(
    limit: str, build: Callable[[int], pb.Message]
) -> None:
    message = build(getattr(LIMITS, limit))

    assert validate_client_message(message, LIMITS) == message.WhichOneof("payload")


@pytest.mark.parametrize(("limit", "build"), LIMIT_CASES, ids=LIMIT_IDS)
def test_field_one_past_its_limit_is_too_large(
    limit: str, build: Callable[[int], pb.Message]
) -> None:
    assert _refused(build(getattr(LIMITS, limit) + 1)) == ErrorCode.TOO_LARGE


@pytest.mark.parametrize(("limit", "build"), LIMIT_CASES, ids=LIMIT_IDS)
def test_field_limit_follows_the_configured_limits(
    limit: str, build: Callable[[int], pb.Message]
) -> None:
    tiny = FieldLimits(**{limit: 3})

    assert validate_client_message(build(3), tiny)
    assert _refused(build(4), tiny) == ErrorCode.TOO_LARGE


@pytest.mark.parametrize(
    ("limit", "value"),
    [
        ("frame_bytes", 64 * 1024),
        ("display_name", 64),
        ("chat_chars", 2000),
        ("identifier", 128),
        ("components", 64),
        ("component_bytes", 4096),
    ],
)
def test_default_limits_match_the_contract(limit: str, value: int) -> None:
    assert getattr(LIMITS, limit) == value


def test_spawn_component_limit_counts_utf8_bytes_not_characters() -> None:
    # FieldLimits.component_bytes is a byte bound (EntityUpdate counts bytes);
    # 2049 two-byte characters are 4098 bytes.
    text = "é" * (LIMITS.component_bytes // 2 + 1)

    assert _refused(_spawn(components={"label": text})) == ErrorCode.TOO_LARGE


def test_negative_voice_codec_is_bad_message_naming_the_values() -> None:
    with pytest.raises(BadFrame) as refused:
        validate_client_message(pb.Message(voice_data=pb.VoiceData(codec=-1)), LIMITS)

    assert refused.value.message == "voice_data.codec must be 0 or more (0 Opus, 1 PCMU, 2 PCMA)"


# --- finite floats ----------------------------------------------------------

NON_FINITE = [math.nan, math.inf, -math.inf]


@pytest.mark.parametrize("value", NON_FINITE, ids=["nan", "inf", "-inf"])
@pytest.mark.parametrize("axis", ["x", "y", "z"])
def test_non_finite_position_is_bad_message(axis: str, value: float) -> None:
    message = pb.Message(position_update=pb.PositionUpdate(position=pb.Vector3(**{axis: value})))

    assert _refused(message) == ErrorCode.BAD_MESSAGE


@pytest.mark.parametrize("value", NON_FINITE, ids=["nan", "inf", "-inf"])
@pytest.mark.parametrize("axis", ["x", "y", "z", "w"])
def test_non_finite_rotation_is_bad_message(axis: str, value: float) -> None:
    message = pb.Message(position_update=pb.PositionUpdate(rotation=pb.Quaternion(**{axis: value})))

    assert _refused(message) == ErrorCode.BAD_MESSAGE


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(pb.PresenceData(position=pb.Vector3(y=math.nan)), id="position"),
        pytest.param(pb.PresenceData(rotation=pb.Quaternion(w=math.inf)), id="rotation"),
        pytest.param(
            pb.PresenceData(avatar_config=pb.AvatarConfig(height=math.nan)), id="avatar-height"
        ),
    ],
)
def test_non_finite_pose_in_presence_update_is_bad_message(data: pb.PresenceData) -> None:
    assert _refused(_presence_update(data)) == ErrorCode.BAD_MESSAGE


def test_non_finite_avatar_height_in_hello_is_bad_message() -> None:
    message = _hello(avatar_config=pb.AvatarConfig(height=-math.inf))

    assert _refused(message) == ErrorCode.BAD_MESSAGE


def test_non_finite_position_decoded_from_json_is_bad_message() -> None:
    message = decode_frame('{"positionUpdate": {"position": {"x": "NaN"}}}')

    assert _refused(message) == ErrorCode.BAD_MESSAGE


def test_extreme_but_finite_pose_is_accepted() -> None:
    big = 3.4e38  # close to the float32 maximum
    message = pb.Message(
        position_update=pb.PositionUpdate(
            position=pb.Vector3(x=big, y=-big, z=0), rotation=pb.Quaternion(x=-big, w=big)
        )
    )

    assert validate_client_message(message, LIMITS) == "position_update"


# --- names: no control characters -------------------------------------------

CONTROL_CHARACTERS = {
    "nul": "\x00",
    "newline": "\n",
    "escape": "\x1b",
    "del": "\x7f",
    "zero-width-space": "\u200b",
    "right-to-left-override": "\u202e",
}

NAMED_FIELDS: dict[str, Callable[[str], pb.Message]] = {
    "hello-display_name": lambda s: _hello(display_name=s),
    "presence-display_name": lambda s: _presence_update(pb.PresenceData(display_name=s)),
    "hello-client_id": lambda s: _hello(client_id=s),
    "capability": lambda s: _hello(capabilities=[s]),
    "message_id": lambda s: pb.Message(message_id=s, ping=pb.Ping()),
    "entity_id": lambda s: _spawn(entity_id=s),
    "component-name": lambda s: _spawn(components={s: "v"}),
    "target_client_id": lambda s: pb.Message(kick_player=pb.KickPlayer(target_client_id=s)),
}


@pytest.mark.parametrize("char", list(CONTROL_CHARACTERS.values()), ids=list(CONTROL_CHARACTERS))
@pytest.mark.parametrize("field", list(NAMED_FIELDS))
def test_control_character_in_a_name_is_bad_message(field: str, char: str) -> None:
    assert _refused(NAMED_FIELDS[field](f"Ada{char}Lovelace")) == ErrorCode.BAD_MESSAGE


@pytest.mark.parametrize("name", ["Zoë", "Łukasz", "山田", "Ada 🚀", "O'Brien-Smith"])
def test_printable_unicode_display_name_is_accepted(name: str) -> None:
    assert validate_client_message(_hello(display_name=name), LIMITS) == "client_hello"


def test_overlong_name_with_control_characters_is_too_large() -> None:
    # Length is checked first: the cheaper check decides.
    assert _refused(_hello(display_name="\x00" * 65)) == ErrorCode.TOO_LARGE


# --- free text and URLs --------------------------------------------------------

TEXT_FIELDS: dict[str, Callable[[str], pb.Message]] = {
    "chat": lambda s: pb.Message(chat_message=pb.ChatMessage(message=s)),
    "kick-reason": lambda s: pb.Message(kick_player=pb.KickPlayer(target_client_id="c", reason=s)),
    "mute-reason": lambda s: pb.Message(mute_player=pb.MutePlayer(target_client_id="c", reason=s)),
    "lock-reason": lambda s: pb.Message(lock_room=pb.LockRoom(locked=True, reason=s)),
}
URL_FIELDS: dict[str, Callable[[str], pb.Message]] = {
    "hello-avatar_url": lambda s: _hello(avatar_url=s),
    "presence-avatar_url": lambda s: _presence_update(pb.PresenceData(avatar_url=s)),
    "custom_model_url": lambda s: _hello(avatar_config=pb.AvatarConfig(custom_model_url=s)),
}


@pytest.mark.parametrize("char", ["\x00", "\x1b", "\x7f", "\x85"], ids=["nul", "esc", "del", "nel"])
@pytest.mark.parametrize("field", list(TEXT_FIELDS))
def test_control_character_in_free_text_is_bad_message_naming_it(field: str, char: str) -> None:
    with pytest.raises(BadFrame) as refused:
        validate_client_message(TEXT_FIELDS[field](f"hi{char}there"), LIMITS)
    assert refused.value.code == ErrorCode.BAD_MESSAGE
    assert f"U+{ord(char):04X}" in refused.value.message
    assert "only tab, newline and carriage return are allowed" in refused.value.message


@pytest.mark.parametrize("text", ["two\nlines", "a\tb", "crlf\r\n", "\u200fRTL mark", "👩\u200d💻"])
@pytest.mark.parametrize("field", list(TEXT_FIELDS))
def test_free_text_keeps_tabs_newlines_and_format_characters(field: str, text: str) -> None:
    assert validate_client_message(TEXT_FIELDS[field](text), LIMITS) is not None


@pytest.mark.parametrize(
    "char", ["\x00", " ", "\n", "\x1b"], ids=["nul", "space", "newline", "esc"]
)
@pytest.mark.parametrize("field", list(URL_FIELDS))
def test_whitespace_or_control_character_in_a_url_is_bad_message(field: str, char: str) -> None:
    assert _refused(URL_FIELDS[field](f"https://x.example/{char}a.glb")) == ErrorCode.BAD_MESSAGE


def test_name_refusal_names_the_character_and_the_rule() -> None:
    with pytest.raises(BadFrame) as refused:
        validate_client_message(_hello(display_name="Ada\x00"), LIMITS)
    assert refused.value.message == (
        "display_name contains a control or format character (U+0000); "
        "use printable characters only"
    )


# --- chat, presence, spawn ----------------------------------------------------


@pytest.mark.parametrize("text", ["", " ", "\n\t  "], ids=["empty", "space", "whitespace"])
def test_empty_chat_is_bad_message(text: str) -> None:
    assert _refused(pb.Message(chat_message=pb.ChatMessage(message=text))) == ErrorCode.BAD_MESSAGE


@pytest.mark.parametrize("event_type", [pb.JOIN, pb.LEAVE], ids=["join", "leave"])
def test_presence_join_or_leave_from_a_client_is_bad_message(event_type: int) -> None:
    message = pb.Message(
        presence_event=pb.PresenceEvent(client_id="c2", event_type=event_type)  # type: ignore[arg-type]
    )

    assert _refused(message) == ErrorCode.BAD_MESSAGE


def test_entity_spawn_without_id_is_bad_message() -> None:
    message = pb.Message(entity_spawn=pb.EntitySpawn(template_id="cube"))

    assert _refused(message) == ErrorCode.BAD_MESSAGE


# --- the printable-ASCII shortcut decides as the per-character rule ------------

# Characters at the edges of the shortcut: ASCII controls and DEL, C1 controls,
# format characters (soft hyphen, zero-width ones, bidi marks, the BOM), the
# zero-width joiner names allow, whitespace, and printable non-ASCII.
EDGE_CHARACTERS = (
    [chr(c) for c in range(0x00, 0x21)]
    + ["\x7e", "\x7f", "\x80", "\x85", "\x9f", "\xa0", "\xad"]
    + [chr(c) for c in range(0x200B, 0x2010)]
    + [chr(c) for c in range(0x202A, 0x202F)]
    + ["\u2060", "\u2066", "\u2069", "\ufeff", "\ufff9", "\U000e0001", "\U0001d173"]
    + ["é", "Ł", "山", "🚀", "\u3000", "\u2028"]
)
MIXED_TEXT = st.text(
    alphabet=st.one_of(
        st.characters(min_codepoint=0x20, max_codepoint=0x7E),
        st.sampled_from(EDGE_CHARACTERS),
        st.characters(),
    ),
    max_size=40,
)


@given(MIXED_TEXT)
@settings(max_examples=2000, suppress_health_check=[HealthCheck.too_slow])
def test_name_shortcut_agrees_with_the_per_character_rule(value: str) -> None:
    assert name_problem(value) == _name_problem_per_character(value)


@given(MIXED_TEXT)
@settings(max_examples=2000, suppress_health_check=[HealthCheck.too_slow])
def test_text_shortcut_agrees_with_the_per_character_rule(value: str) -> None:
    assert _text_control(value) == _text_control_per_character(value)


def test_shortcuts_agree_on_each_character_alone_and_inside_an_ascii_id() -> None:
    disagree = [
        f"U+{code:04X}"
        for code in range(0x3000)  # ASCII, Latin-1, C1 and the format blocks
        for value in (chr(code), f"cube-{chr(code)}-1")
        if name_problem(value) != _name_problem_per_character(value)
        or _text_control(value) != _text_control_per_character(value)
    ]
    assert disagree == []
