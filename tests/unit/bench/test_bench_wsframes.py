"""The benchmark's minimal RFC 6455 client core (bench/wsframes.py): frames and handshake."""

from __future__ import annotations

import pytest
from websockets.frames import Frame
from websockets.frames import Opcode as WsOpcode
from websockets.streams import StreamReader

from bench.wsframes import (
    CLIENT_KEY,
    CloseCode,
    FrameParser,
    HandshakeError,
    Opcode,
    ProtocolViolation,
    accept_key,
    check_handshake_response,
    close_payload,
    encode_frame,
    handshake_end,
    handshake_request,
    mask,
    parse_close,
)

RFC_MASK = bytes.fromhex("37fa213d")  # RFC 6455 section 5.7's example key


def _server_frame(opcode: int, payload: bytes, *, fin: bool = True) -> bytes:
    """An unmasked frame as a server writes it."""
    return encode_frame(opcode, payload, fin=fin)


def _parse_as_server(data: bytes) -> Frame:
    """Parse one client frame with the websockets library (mask required)."""
    reader = StreamReader()
    reader.feed_data(data)
    reader.feed_eof()
    parser = Frame.parse(reader.read_exact, mask=True, max_size=None)
    try:
        next(parser)
    except StopIteration as done:
        return done.value
    raise AssertionError("websockets wanted more bytes than the whole frame")


# --- masking and encoding -------------------------------------------------------------


def test_masked_hello_matches_the_rfc_example() -> None:
    frame = encode_frame(Opcode.TEXT, b"Hello", mask_key=RFC_MASK)

    assert frame == bytes.fromhex("818537fa213d7f9f4d5158")


def test_unmasked_hello_matches_the_rfc_example() -> None:
    assert _server_frame(Opcode.TEXT, b"Hello") == bytes.fromhex("810548656c6c6f")


def test_masking_twice_restores_the_payload() -> None:
    payload = bytes(range(256)) * 3 + b"tail"

    assert mask(mask(payload, RFC_MASK), RFC_MASK) == payload
    assert mask(b"", RFC_MASK) == b""


def test_mask_key_must_be_four_bytes() -> None:
    with pytest.raises(ValueError):
        encode_frame(Opcode.BINARY, b"x", mask_key=b"abc")


@pytest.mark.parametrize(
    ("length", "header_bytes"),
    [(0, 2), (125, 2), (126, 4), (65535, 4), (65536, 10)],
)
def test_length_uses_the_shortest_form_at_the_boundaries(length: int, header_bytes: int) -> None:
    payload = bytes(length)

    frame = encode_frame(Opcode.BINARY, payload, mask_key=RFC_MASK)

    assert len(frame) == header_bytes + 4 + length
    assert frame[1] & 0x80, "client frames carry the mask bit"


@pytest.mark.parametrize("length", [0, 1, 125, 126, 127, 65535, 65536, 70000])
def test_client_frames_parse_in_the_websockets_library(length: int) -> None:
    payload = bytes(i % 251 for i in range(length))

    frame = _parse_as_server(encode_frame(Opcode.BINARY, payload, mask_key=b"\x01\x02\x03\x04"))

    assert frame.opcode is WsOpcode.BINARY
    assert frame.fin
    assert frame.data == payload


# --- parsing server frames ----------------------------------------------------------------


@pytest.mark.parametrize("length", [0, 125, 126, 65535, 65536])
def test_parser_reads_each_length_form(length: int) -> None:
    payload = bytes(i % 253 for i in range(length))

    assert FrameParser().feed(_server_frame(Opcode.BINARY, payload)) == [(Opcode.BINARY, payload)]


def test_parser_reads_frames_the_websockets_library_writes() -> None:
    frames = [
        Frame(WsOpcode.BINARY, b"\x00" * 300),
        Frame(WsOpcode.TEXT, "héllo".encode()),
        Frame(WsOpcode.PING, b"p"),
    ]
    data = b"".join(f.serialize(mask=False) for f in frames)

    out = FrameParser().feed(data)

    assert out == [(Opcode.BINARY, b"\x00" * 300), (Opcode.TEXT, "héllo".encode()), (9, b"p")]


def test_a_frame_fed_one_byte_at_a_time_comes_out_once_whole() -> None:
    data = _server_frame(Opcode.BINARY, b"x" * 300)  # 2-byte length form
    parser = FrameParser()

    out = [item for i in range(len(data)) for item in parser.feed(data[i : i + 1])]

    assert out == [(Opcode.BINARY, b"x" * 300)]
    assert parser.buffered == 0


@pytest.mark.parametrize("cut", range(1, 12))
def test_a_large_frame_split_anywhere_in_its_header_is_parsed(cut: int) -> None:
    data = _server_frame(Opcode.BINARY, b"y" * 70000)  # 10-byte header: 8-byte length form
    parser = FrameParser()

    first = parser.feed(data[:cut])
    second = parser.feed(data[cut:])

    assert (first, second) == ([], [(Opcode.BINARY, b"y" * 70000)])


def test_a_chunk_with_many_frames_and_a_partial_one_keeps_the_rest() -> None:
    whole = [_server_frame(Opcode.BINARY, bytes([n]) * 60) for n in range(5)]
    partial = _server_frame(Opcode.BINARY, b"last" * 40)
    parser = FrameParser()

    first = parser.feed(b"".join(whole) + partial[:3])
    second = parser.feed(partial[3:])

    assert first == [(Opcode.BINARY, bytes([n]) * 60) for n in range(5)]
    assert second == [(Opcode.BINARY, b"last" * 40)]


def test_a_fragmented_message_is_reassembled_around_a_ping() -> None:
    data = (
        _server_frame(Opcode.BINARY, b"one-", fin=False)
        + _server_frame(Opcode.PING, b"still there?")
        + _server_frame(Opcode.CONT, b"two-", fin=False)
        + _server_frame(Opcode.CONT, b"three", fin=True)
    )

    out = FrameParser().feed(data)

    assert out == [(Opcode.PING, b"still there?"), (Opcode.BINARY, b"one-two-three")]


def test_close_frame_carries_code_and_reason() -> None:
    data = _server_frame(Opcode.CLOSE, close_payload(4009, "slow consumer"))

    [(opcode, payload)] = FrameParser().feed(data)

    assert opcode == Opcode.CLOSE
    assert parse_close(payload) == (4009, "slow consumer")


def test_empty_close_frame_means_no_status() -> None:
    assert parse_close(b"") == (CloseCode.NO_STATUS, "")


def test_one_byte_close_body_is_a_protocol_error() -> None:
    with pytest.raises(ProtocolViolation):
        parse_close(b"\x03")


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (encode_frame(Opcode.BINARY, b"x", mask_key=RFC_MASK), "masked server frame"),
        (bytes([0x80 | 0x40 | Opcode.BINARY, 1]) + b"x", "reserved bit"),
        (_server_frame(Opcode.CONT, b"x"), "continuation without start"),
        (_server_frame(Opcode.PING, b"x", fin=False), "fragmented control frame"),
        (_server_frame(Opcode.PING, b"x" * 126), "control frame over 125 bytes"),
        (_server_frame(0x3, b"x"), "reserved opcode"),
        (
            _server_frame(Opcode.TEXT, b"a", fin=False) + _server_frame(Opcode.TEXT, b"b"),
            "new message inside a fragmented one",
        ),
    ],
)
def test_protocol_violations_are_refused(data: bytes, why: str) -> None:
    with pytest.raises(ProtocolViolation) as raised:
        FrameParser().feed(data)

    assert raised.value.code == CloseCode.PROTOCOL_ERROR, why


def test_a_message_over_max_size_is_refused_before_it_is_buffered() -> None:
    parser = FrameParser(max_size=1000)

    with pytest.raises(ProtocolViolation) as raised:
        parser.feed(_server_frame(Opcode.BINARY, b"x" * 1001)[:4])  # the header is enough

    assert raised.value.code == CloseCode.MESSAGE_TOO_BIG


def test_fragments_over_max_size_are_refused() -> None:
    parser = FrameParser(max_size=1000)
    parser.feed(_server_frame(Opcode.BINARY, b"x" * 600, fin=False))

    with pytest.raises(ProtocolViolation):
        parser.feed(_server_frame(Opcode.CONT, b"x" * 600))


# --- opening handshake ----------------------------------------------------------------------


def test_accept_key_of_the_rfc_sample_nonce() -> None:
    assert accept_key(CLIENT_KEY) == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


def test_request_names_path_host_key_and_version() -> None:
    request = handshake_request("127.0.0.1", 8083, "/ws/lobby?user_id=u1", origin="http://x")

    lines = request.decode().split("\r\n")
    assert lines[0] == "GET /ws/lobby?user_id=u1 HTTP/1.1"
    assert "Host: 127.0.0.1:8083" in lines
    assert f"Sec-WebSocket-Key: {CLIENT_KEY}" in lines
    assert "Sec-WebSocket-Version: 13" in lines
    assert "Origin: http://x" in lines
    assert request.endswith(b"\r\n\r\n")


def test_a_101_with_the_right_accept_completes_the_handshake() -> None:
    head = (
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n"
    )
    first_frame = _server_frame(Opcode.BINARY, b"hello")

    end = handshake_end(head + first_frame)

    assert end == len(head)
    check_handshake_response(head[:end])  # does not raise


def test_an_incomplete_head_asks_for_more() -> None:
    assert handshake_end(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n") == -1


@pytest.mark.parametrize(
    "head",
    [
        b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n",
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
        b"Sec-WebSocket-Accept: wrong=\r\n\r\n",
        b"HTTP/1.1 101 Switching Protocols\r\n"  # no Upgrade header
        b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n",
    ],
)
def test_anything_but_a_valid_101_is_refused(head: bytes) -> None:
    with pytest.raises(HandshakeError):
        check_handshake_response(head)
