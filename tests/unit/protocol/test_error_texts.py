"""The exact texts of refused frames: each names what was wrong and what was expected.

One row per mistake a client makes; the texts quote a client's field names or
keys at most :data:`MAX_ECHO` characters long and never its values.
"""

from __future__ import annotations

import pytest

from presence.protocol import pb
from presence.protocol.codec import (
    JSON_SUBPROTOCOL,
    PROTO_SUBPROTOCOL,
    UNDECODABLE_PROTOBUF,
    Encoding,
    UnsupportedSubprotocol,
    decode_frame,
    negotiate_encoding,
)
from presence.protocol.codes import ErrorCode
from presence.protocol.errors import BadFrame, ProtocolError
from presence.protocol.jsonshape import MAX_ECHO
from presence.protocol.validation import FieldLimits, validate_client_message

MESSAGE_FIELDS = (
    "messageId, timestamp, type, seq, senderId, clientHello, serverHello, positionUpdate, "
    "voiceData, entitySpawn, entityUpdate, entityDespawn, chatMessage, presenceEvent, ack, "
    "error, ping, pong, batch, kickPlayer, mutePlayer, lockRoom, playerKicked, playerMuted, "
    "roomLocked"
)
COMPONENTS = (
    "entitySpawn components are strings, entityUpdate components are bytes (base64 in JSON)"
)
INTEGER = "expected an integer (a number or a decimal string)"

JSON_TEXTS = [
    ("hello", "text frame is not JSON: Expecting value at line 1 column 1"),
    ('{"chatMessage": ', "text frame is not JSON: Expecting value at line 1 column 17"),
    (
        '["chatMessage"]',
        'a JSON frame is an object naming its payload, e.g. {"chatMessage": {"message": "hi"}}',
    ),
    ('{"chat": {"message": "hi"}}', f'unknown field "chat"; expected one of: {MESSAGE_FIELDS}'),
    (
        '{"chatMessage": {"text": "hi"}}',
        'unknown field "text" in chatMessage; expected one of: '
        "fromClientId, message, timestamp, type",
    ),
    ('{"chatMessage": {"message": 5}}', "chatMessage.message: expected a string"),
    ('{"chatMessage": "hi"}', "chatMessage: expected an object (ChatMessage)"),
    (
        '{"chatMessage": {"message": "hi", "type": "LOUD"}}',
        "chatMessage.type: expected one of NORMAL, WHISPER, SHOUT",
    ),
    (
        '{"chatMessage": {"message": "hi"}, "ping": {}}',
        "a message has one payload, got both chatMessage and ping",
    ),
    ('{"ping": {"clientTimeMs": "soon"}}', f"ping.clientTimeMs: {INTEGER}"),
    ('{"timestamp": 1.5}', f"timestamp: {INTEGER}"),
    (
        '{"ack": {"upToSeq": "-1"}}',
        "ack.upToSeq: expected an integer from 0 to 18446744073709551615",
    ),
    (
        '{"positionUpdate": {"position": {"x": "left"}}}',
        "positionUpdate.position.x: expected a number",
    ),
    (
        '{"clientHello": {"capabilities": "batch"}}',
        "clientHello.capabilities: expected a list of strings",
    ),
    (
        '{"entitySpawn": {"entityId": "box", "components": {"color": 1}}}',
        f'entitySpawn.components["color"]: expected a string; {COMPONENTS}',
    ),
    (
        '{"entityUpdate": {"entityId": "box", "components": {"color": {"r": 1}}}}',
        f'entityUpdate.components["color"]: expected bytes as a base64 string; {COMPONENTS}',
    ),
    (
        '{"entityUpdate": {"entityId": "box", "components": ["color"]}}',
        f"entityUpdate.components: expected an object of base64 strings; {COMPONENTS}",
    ),
    (
        '{"voiceData": {"codec": "opus"}}',
        f"voiceData.codec: {INTEGER}; codec is 0 (Opus), 1 (PCMU) or 2 (PCMA)",
    ),
    (
        '{"batch": {"messages": [{"chatMessage": {"message": 1}}]}}',
        "batch.messages[0].chatMessage.message: expected a string",
    ),
    ('{"batch":{"messages":[' * 300 + "{}" + "]}}" * 300, "JSON frame nested too deeply"),
]


@pytest.mark.parametrize(("text", "expected"), JSON_TEXTS, ids=[t[:40] for t, _ in JSON_TEXTS])
def test_json_frame_of_the_wrong_shape_names_the_field_and_what_it_must_be(
    text: str, expected: str
) -> None:
    with pytest.raises(BadFrame) as refused:
        decode_frame(text)

    assert refused.value.message == expected


# Found over a live socket: these three got only the generic "does not match
# graphwiz.core.Message" text, naming neither the field nor the fix.
JSON_TEXTS_NAMED_NOW = [
    (
        '{"chatMessage": {"message": "a\\ud800b"}}',
        "chatMessage.message: not valid Unicode (a lone surrogate such as \\ud800); "
        "send UTF-8 text",
    ),
    (
        '{"positionUpdate": {"position": {"x": 1e999}}}',
        "positionUpdate.position.x: expected a finite number (1e999 overflows a double)",
    ),
    (
        '{"chatMessage": {"message": "x"}, "chatMessage": {"message": "y"}}',
        'field "chatMessage" given twice; send each field once',
    ),
    (
        '{"chatMessage": {"message": "x", "message": "y"}}',
        'field "message" given twice; send each field once',
    ),
]


@pytest.mark.parametrize(
    ("text", "expected"), JSON_TEXTS_NAMED_NOW, ids=[t[:40] for t, _ in JSON_TEXTS_NAMED_NOW]
)
def test_bad_unicode_overflowing_numbers_and_repeated_fields_are_named(
    text: str, expected: str
) -> None:
    with pytest.raises(BadFrame) as refused:
        decode_frame(text)

    assert refused.value.message == expected


SURROGATE_FRAMES = [
    ('{"voiceData": {"audioData": "\\udfff"}}', "voiceData.audioData: "),
    (
        '{"entityUpdate": {"entityId": "b", "components": {"c": "\\ud800"}}}',
        'entityUpdate.components["c"]: ',
    ),
    (
        '{"entitySpawn": {"entityId": "b", "components": {"\\ud800": "x"}}}',
        "entitySpawn.components: a key is ",
    ),
    ('{"\\ud800": 1}', "a field name is "),
    ('{"chatMessage": {"\\ud800": 1}}', "a field name in chatMessage is "),
    ('{"clientHello": {"capabilities": ["\\ud800"]}}', "clientHello.capabilities[0]: "),
]


@pytest.mark.parametrize(
    ("text", "where"), SURROGATE_FRAMES, ids=[t[:40] for t, _ in SURROGATE_FRAMES]
)
def test_a_lone_surrogate_anywhere_is_bad_message_naming_where(text: str, where: str) -> None:
    # Over a live socket, the first two raised UnicodeEncodeError and the next
    # three SystemError out of the error text itself: INTERNAL and close 4011.
    with pytest.raises(BadFrame) as refused:
        decode_frame(text)

    assert refused.value.code == ErrorCode.BAD_MESSAGE
    assert refused.value.message.startswith(where)
    assert "not valid Unicode" in refused.value.message


def test_a_long_unknown_field_name_is_quoted_cut_and_escaped() -> None:
    name = "\x1b[31m" + "x" * 500

    with pytest.raises(BadFrame) as refused:
        decode_frame(f'{{"chatMessage": {{"{name}": 1}}}}'.replace("\x1b", "\\u001b"))

    quoted = '"\\u001b[31m' + "x" * (MAX_ECHO - 5) + '..."'
    assert refused.value.message.startswith(f"unknown field {quoted} in chatMessage;")
    assert "x" * MAX_ECHO not in refused.value.message


def test_a_wrong_value_is_never_echoed() -> None:
    secret = "do-not-echo-" + "v" * 100

    with pytest.raises(BadFrame) as refused:
        decode_frame(f'{{"ping": {{"clientTimeMs": "{secret}"}}}}')

    assert "do-not-echo" not in refused.value.message


def test_undecodable_protobuf_says_what_a_binary_frame_holds() -> None:
    invalid_utf8_component = pb.Message(
        entity_update=pb.EntityUpdate(entity_id="box", components={"color": b"\xff"})
    ).SerializeToString()
    # The same bytes read as an EntitySpawn: its components are strings.
    as_spawn = invalid_utf8_component.replace(b"\xfa\x01", b"\xf2\x01", 1)

    with pytest.raises(BadFrame) as refused:
        decode_frame(as_spawn)

    assert refused.value.message == UNDECODABLE_PROTOBUF
    assert refused.value.message == (
        "undecodable protobuf frame: a binary frame holds one graphwiz.core.Message "
        "(PROTOCOL.md section 3) and its strings are UTF-8 (entitySpawn components are "
        "strings, entityUpdate components bytes)"
    )


@pytest.mark.parametrize(
    ("format_param", "expected"),
    [
        ("xml", 'format must be proto or json, got "xml"'),
        ("x" * 100, f'format must be proto or json, got "{"x" * MAX_ECHO}..."'),
    ],
)
def test_unknown_format_names_the_values(format_param: str, expected: str) -> None:
    with pytest.raises(ProtocolError) as refused:
        negotiate_encoding([], format_param)

    assert refused.value.message == expected


@pytest.mark.parametrize("format_param", ["JSON", "Json", " json "])
def test_format_is_read_case_insensitively(format_param: str) -> None:
    assert negotiate_encoding([], format_param) == (Encoding.JSON, None)


@pytest.mark.parametrize(
    ("offered", "encoding"),
    [
        (["graphwiz.json.v2"], Encoding.JSON),
        (["graphwiz.proto.v2", "chat"], Encoding.PROTO),
    ],
)
def test_only_unknown_graphwiz_subprotocols_are_refused_naming_the_supported_ones(
    offered: list[str], encoding: Encoding
) -> None:
    with pytest.raises(UnsupportedSubprotocol) as refused:
        negotiate_encoding(offered, None)

    assert refused.value.message == (
        f'unsupported subprotocol "{offered[0]}": this server speaks '
        f"{PROTO_SUBPROTOCOL} (binary protobuf) and {JSON_SUBPROTOCOL} (proto3 JSON)"
    )
    assert (refused.value.offered, refused.value.encoding) == (offered[0], encoding)


def test_subprotocols_of_other_protocols_are_ignored() -> None:
    # RFC 6455 section 4.2.2: the server selects one it speaks, or none.
    assert negotiate_encoding(["chat", "mqtt"], None) == (Encoding.PROTO, None)


def test_negative_voice_codec_names_the_codecs() -> None:
    with pytest.raises(BadFrame) as refused:
        validate_client_message(pb.Message(voice_data=pb.VoiceData(codec=-1)), FieldLimits())

    assert refused.value.message == "voice_data.codec must be 0 or more (0 Opus, 1 PCMU, 2 PCMA)"
