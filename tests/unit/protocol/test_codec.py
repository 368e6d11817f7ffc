"""Frames <-> ``graphwiz.core.Message`` (PROTOCOL.md section 2): decoding, encoding, seq."""

from __future__ import annotations

import json

import pytest
from google.protobuf import json_format

from presence.protocol import pb
from presence.protocol.codec import (
    JSON_SUBPROTOCOL,
    PROTO_SUBPROTOCOL,
    EncodedMessage,
    Encoding,
    decode_frame,
    encode,
    negotiate_encoding,
    to_json,
)
from presence.protocol.codes import ErrorCode
from presence.protocol.errors import BadFrame, ProtocolError

NOW_MS = 1_700_000_000_123


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if not value:
            out.append(byte)
            return bytes(out)
        out.append(byte | 0x80)


def _length_delimited(field_number: int, payload: bytes) -> bytes:
    return _varint((field_number << 3) | 2) + _varint(len(payload)) + payload


def _varint_field(field_number: int, value: int) -> bytes:
    return _varint(field_number << 3) + _varint(value)


def _server_chat() -> pb.Message:
    """A relayed chat message as the server fans it out (seq unset)."""
    return pb.Message(
        message_id="srv-7",
        timestamp=NOW_MS,
        type=pb.CHAT_MESSAGE,
        sender_id="alice",
        chat_message=pb.ChatMessage(from_client_id="alice", message="hello", timestamp=NOW_MS),
    )


def _with_seq(message: pb.Message, seq: int) -> pb.Message:
    copy = pb.Message()
    copy.CopyFrom(message)
    copy.seq = seq
    return copy


# --- decoding ---------------------------------------------------------------


def test_binary_frame_decodes_to_the_protobuf_message() -> None:
    sent = pb.Message(message_id="c-1", chat_message=pb.ChatMessage(message="hi"))

    assert decode_frame(sent.SerializeToString()) == sent


def test_text_frame_decodes_from_proto3_json() -> None:
    message = decode_frame('{"messageId": "c-1", "chatMessage": {"message": "hi"}}')

    assert message == pb.Message(message_id="c-1", chat_message=pb.ChatMessage(message="hi"))


def test_text_frame_with_64_bit_ints_as_strings_decodes() -> None:
    message = decode_frame('{"ping": {"clientTimeMs": "1700000000123"}}')

    assert message.ping.client_time_ms == NOW_MS


def test_empty_binary_frame_decodes_to_an_empty_message() -> None:
    # "It parsed" is not "it is valid": validation refuses this one.
    assert decode_frame(b"") == pb.Message()


def _deeply_nested_batch(depth: int) -> bytes:
    inner = _length_delimited(62, b"")  # Message{ping{}}
    for _ in range(depth):
        inner = _length_delimited(64, _length_delimited(1, inner))  # Message{batch{messages}}
    return inner


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"\xff", id="truncated-varint-tag"),
        pytest.param(b"\x0a\x05ab", id="length-past-end"),
        pytest.param(b"\x0a\x02\xff\xfe", id="invalid-utf8-string"),
        pytest.param(b"\x0f", id="invalid-wire-type"),
        pytest.param(b"\x00\x01", id="field-number-zero"),
        pytest.param(_deeply_nested_batch(200), id="nesting-past-recursion-limit"),
    ],
)
def test_undecodable_binary_frame_is_a_bad_frame(data: bytes) -> None:
    with pytest.raises(BadFrame) as refused:
        decode_frame(data)

    assert refused.value.code == ErrorCode.BAD_MESSAGE


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("", id="empty"),
        pytest.param("{", id="truncated"),
        pytest.param("hello", id="not-json"),
        pytest.param("1", id="number"),
        pytest.param("null", id="null"),
        pytest.param('"chatMessage"', id="string"),
        pytest.param('["chatMessage"]', id="list-of-names"),
        pytest.param('{"chatMessage": {"message": 5}}', id="number-for-string"),
        pytest.param('{"chatMessage": ["message"]}', id="list-for-message"),
        pytest.param('{"timestamp": 1.5}', id="fraction-for-int64"),
        pytest.param('{"seq": "-1"}', id="negative-uint64"),
        pytest.param('{"positionUpdate": {"position": {"x": 1e300}}}', id="float-out-of-range"),
        pytest.param('{"entitySpawn": {"components": {"a": 1}}}', id="number-in-string-map"),
        pytest.param('{"clientHello": {"capabilities": "batch"}}', id="string-for-repeated"),
        pytest.param('{"batch":{"messages":[' * 300 + "{}" + "]}}" * 300, id="deep-nesting"),
    ],
)
def test_undecodable_json_frame_is_a_bad_frame(text: str) -> None:
    with pytest.raises(BadFrame) as refused:
        decode_frame(text)

    assert refused.value.code == ErrorCode.BAD_MESSAGE


@pytest.mark.parametrize(
    "text",
    [
        pytest.param('{"chatMessage": {"message": "hi"}, "admin": true}', id="top-level"),
        pytest.param('{"chatMessage": {"message": "hi", "color": "red"}}', id="nested"),
    ],
)
def test_unknown_json_field_is_refused(text: str) -> None:
    with pytest.raises(BadFrame) as refused:
        decode_frame(text)

    assert refused.value.code == ErrorCode.BAD_MESSAGE


def test_unknown_top_level_protobuf_field_is_discarded() -> None:
    known = pb.Message(message_id="c-1", ping=pb.Ping(client_time_ms=5))
    data = known.SerializeToString() + _varint_field(99, 1)

    message = decode_frame(data)

    assert message.SerializeToString() == known.SerializeToString()


def test_unknown_nested_protobuf_field_is_discarded() -> None:
    chat = pb.ChatMessage(message="hi")
    data = _length_delimited(40, chat.SerializeToString() + _varint_field(9, 5))

    message = decode_frame(data)

    assert message.SerializeToString() == pb.Message(chat_message=chat).SerializeToString()


# --- encoding negotiation ---------------------------------------------------


@pytest.mark.parametrize(
    ("subprotocols", "format_param", "expected"),
    [
        pytest.param([PROTO_SUBPROTOCOL], None, (Encoding.PROTO, PROTO_SUBPROTOCOL), id="proto-sp"),
        pytest.param([JSON_SUBPROTOCOL], None, (Encoding.JSON, JSON_SUBPROTOCOL), id="json-sp"),
        pytest.param([JSON_SUBPROTOCOL], "proto", (Encoding.JSON, JSON_SUBPROTOCOL), id="sp-wins"),
        pytest.param(
            [PROTO_SUBPROTOCOL], "json", (Encoding.PROTO, PROTO_SUBPROTOCOL), id="sp-wins2"
        ),
        pytest.param(
            [PROTO_SUBPROTOCOL], "bogus", (Encoding.PROTO, PROTO_SUBPROTOCOL), id="sp-skips-format"
        ),
        pytest.param(
            ["chat", JSON_SUBPROTOCOL, PROTO_SUBPROTOCOL],
            None,
            (Encoding.JSON, JSON_SUBPROTOCOL),
            id="first-known-sp-wins",
        ),
        pytest.param(["chat"], "json", (Encoding.JSON, None), id="unknown-sp-then-format"),
        pytest.param([], "json", (Encoding.JSON, None), id="format-json"),
        pytest.param([], "proto", (Encoding.PROTO, None), id="format-proto"),
        pytest.param([], "JSON", (Encoding.JSON, None), id="format-any-case"),
        pytest.param([], " json ", (Encoding.JSON, None), id="format-padded"),
        pytest.param(
            ["graphwiz.proto.v9", PROTO_SUBPROTOCOL],
            None,
            (Encoding.PROTO, PROTO_SUBPROTOCOL),
            id="unknown-graphwiz-sp-skipped-for-a-known-one",
        ),
        pytest.param([], "", (Encoding.PROTO, None), id="empty-format"),
        pytest.param([], None, (Encoding.PROTO, None), id="nothing"),
    ],
)
def test_negotiate_encoding(
    subprotocols: list[str], format_param: str | None, expected: tuple[Encoding, str | None]
) -> None:
    assert negotiate_encoding(subprotocols, format_param) == expected


@pytest.mark.parametrize("format_param", ["xml", "protobuf", "js on"])
def test_unknown_format_parameter_is_a_protocol_error(format_param: str) -> None:
    with pytest.raises(ProtocolError) as refused:
        negotiate_encoding([], format_param)

    assert refused.value.code == ErrorCode.BAD_MESSAGE


# --- encoding ---------------------------------------------------------------


def test_encode_proto_is_the_protobuf_serialization() -> None:
    message = _server_chat()

    assert encode(message, Encoding.PROTO) == message.SerializeToString()


def test_encode_json_is_proto3_json_text() -> None:
    message = _server_chat()

    frame = encode(message, Encoding.JSON)

    assert isinstance(frame, str)
    assert json_format.Parse(frame, pb.Message()) == message


def test_json_uses_lower_camel_case_field_names() -> None:
    as_dict = json.loads(to_json(_server_chat()))

    assert set(as_dict) == {"messageId", "timestamp", "type", "senderId", "chatMessage"}
    assert set(as_dict["chatMessage"]) == {"fromClientId", "message", "timestamp"}


@pytest.mark.parametrize(
    ("message", "path", "expected"),
    [
        pytest.param(pb.Message(timestamp=NOW_MS), ["timestamp"], str(NOW_MS), id="int64"),
        pytest.param(pb.Message(seq=2**40), ["seq"], str(2**40), id="uint64"),
        pytest.param(
            pb.Message(ack=pb.Ack(up_to_seq=12)), ["ack", "upToSeq"], "12", id="nested-uint64"
        ),
        pytest.param(
            pb.Message(pong=pb.Pong(server_time_ms=NOW_MS)),
            ["pong", "serverTimeMs"],
            str(NOW_MS),
            id="nested-int64",
        ),
    ],
)
def test_json_writes_64_bit_ints_as_strings(
    message: pb.Message, path: list[str], expected: str
) -> None:
    value: object = json.loads(to_json(message))
    for key in path:
        value = value[key]  # type: ignore[index]

    assert value == expected


def test_json_writes_32_bit_ints_as_numbers() -> None:
    message = pb.Message(error=pb.Error(retry_after_ms=1500))

    assert json.loads(to_json(message))["error"]["retryAfterMs"] == 1500


def test_json_writes_enums_by_name() -> None:
    as_dict = json.loads(to_json(_server_chat()))

    assert as_dict["type"] == "CHAT_MESSAGE"


def test_json_keeps_non_ascii_text_unescaped() -> None:
    text = to_json(pb.Message(chat_message=pb.ChatMessage(message="Grüße 🚀")))

    assert "Grüße 🚀" in text


# --- EncodedMessage: encode once, frame per recipient -----------------------


def test_encoded_message_json_is_the_json_of_the_message() -> None:
    message = _server_chat()

    assert EncodedMessage.of(message).json == to_json(message)


@pytest.mark.parametrize("encoding", list(Encoding))
def test_frame_without_seq_is_the_plain_encoding(encoding: Encoding) -> None:
    message = _server_chat()

    assert EncodedMessage.of(message).frame(encoding, 0) == encode(message, encoding)


def test_proto_frame_with_seq_decodes_to_that_seq_and_the_same_payload() -> None:
    message = _server_chat()

    frame = EncodedMessage.of(message).frame(Encoding.PROTO, 5)

    assert isinstance(frame, bytes)
    assert pb.Message.FromString(frame) == _with_seq(message, 5)


def test_json_frame_with_seq_parses_to_the_same_message_with_seq() -> None:
    message = _server_chat()

    frame = EncodedMessage.of(message).frame(Encoding.JSON, 5)

    assert isinstance(frame, str)
    assert json_format.Parse(frame, pb.Message()) == _with_seq(message, 5)


SEQS = [1, 127, 128, 300, 2**31, 2**32 - 1, 2**32, 2**32 + 1, 2**53 + 1, 2**63, 2**64 - 1]


@pytest.mark.parametrize("seq", SEQS)
def test_proto_frame_round_trips_large_seq(seq: int) -> None:
    frame = EncodedMessage.of(_server_chat()).frame(Encoding.PROTO, seq)

    assert pb.Message.FromString(frame).seq == seq


@pytest.mark.parametrize("seq", SEQS)
def test_json_frame_round_trips_large_seq(seq: int) -> None:
    frame = EncodedMessage.of(_server_chat()).frame(Encoding.JSON, seq)

    assert json_format.Parse(frame, pb.Message()).seq == seq


def test_json_frame_writes_seq_as_a_string() -> None:
    frame = EncodedMessage.of(_server_chat()).frame(Encoding.JSON, 2**40)

    assert json.loads(frame)["seq"] == str(2**40)


@pytest.mark.parametrize("encoding", list(Encoding))
def test_frame_of_an_empty_message_with_seq_decodes(encoding: Encoding) -> None:
    frame = EncodedMessage.of(pb.Message()).frame(encoding, 9)

    decoded = decode_frame(frame)

    assert decoded == pb.Message(seq=9)


def test_one_encoded_message_frames_different_seqs_per_recipient() -> None:
    encoded = EncodedMessage.of(_server_chat())

    seqs = [pb.Message.FromString(encoded.frame(Encoding.PROTO, s)).seq for s in (3, 1, 2)]

    assert seqs == [3, 1, 2]
