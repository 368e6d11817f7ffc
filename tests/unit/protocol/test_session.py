"""Session: frame intake, the bad-frame streak, counters and seq (PROTOCOL.md sections 2, 7)."""

from __future__ import annotations

import pytest

from presence.protocol import pb
from presence.protocol.codec import to_json
from presence.protocol.codes import CloseCode, ErrorCode
from presence.protocol.session import BAD_FRAME_STREAK_LIMIT, Accepted, Rejected, Session
from presence.protocol.validation import FieldLimits

GOOD = pb.Message(message_id="c-1", chat_message=pb.ChatMessage(message="hi")).SerializeToString()
UNDECODABLE = b"\xff"
SERVER_ONLY = pb.Message(message_id="c-2", player_kicked=pb.PlayerKicked()).SerializeToString()


def accepted(result: Accepted | Rejected) -> Accepted:
    assert isinstance(result, Accepted), result
    return result


def rejected(result: Accepted | Rejected) -> Rejected:
    assert isinstance(result, Rejected), result
    return result


def hello_frame_of_size(size: int) -> bytes:
    """A valid binary ClientHello frame of exactly ``size`` bytes (padded auth token)."""
    for pad in range(size, -1, -1):
        frame = pb.Message(client_hello=pb.ClientHello(auth_token="t" * pad)).SerializeToString()
        if len(frame) == size:
            return frame
    raise AssertionError(f"no ClientHello frame of {size} bytes")


# --- accepted frames ----------------------------------------------------------


def test_valid_binary_frame_is_accepted_with_its_kind() -> None:
    result = accepted(Session("alice").receive(GOOD))

    assert result.kind == "chat_message"
    assert result.message.chat_message.message == "hi"
    assert result.message.message_id == "c-1"


def test_valid_text_frame_is_accepted_on_the_same_session() -> None:
    session = Session("alice")
    text = to_json(pb.Message(ping=pb.Ping(client_time_ms=7)))

    result = accepted(session.receive(text))

    assert result.kind == "ping"
    assert result.message.ping.client_time_ms == 7


# --- frame size -------------------------------------------------------------


@pytest.mark.parametrize("limit", [64, FieldLimits().frame_bytes], ids=["tiny", "default"])
def test_frame_exactly_at_the_size_limit_is_accepted(limit: int) -> None:
    session = Session("alice", limits=FieldLimits(frame_bytes=limit))

    result = accepted(session.receive(hello_frame_of_size(limit)))

    assert result.kind == "client_hello"


@pytest.mark.parametrize("limit", [64, FieldLimits().frame_bytes], ids=["tiny", "default"])
def test_frame_one_byte_over_the_size_limit_is_too_large(limit: int) -> None:
    session = Session("alice", limits=FieldLimits(frame_bytes=limit))

    result = rejected(session.receive(hello_frame_of_size(limit + 1)))

    assert result.code == ErrorCode.TOO_LARGE
    assert result.close_code is None


def test_oversized_frame_is_refused_before_decoding() -> None:
    session = Session("alice", limits=FieldLimits(frame_bytes=4))

    result = rejected(session.receive(b"\xff" * 5))  # undecodable, but too large first

    assert result.code == ErrorCode.TOO_LARGE
    assert result.ref_message_id == ""


def test_text_frame_size_is_counted_in_utf8_bytes() -> None:
    text = to_json(pb.Message(chat_message=pb.ChatMessage(message="é" * 40)))
    session = Session("alice", limits=FieldLimits(frame_bytes=len(text)))  # chars, not bytes

    result = rejected(session.receive(text))

    assert result.code == ErrorCode.TOO_LARGE


# --- bad frames and the 4007 streak -------------------------------------------


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        pytest.param(UNDECODABLE, ErrorCode.BAD_MESSAGE, id="undecodable-binary"),
        pytest.param("{not json", ErrorCode.BAD_MESSAGE, id="undecodable-text"),
        pytest.param(b"", ErrorCode.BAD_MESSAGE, id="empty"),
        pytest.param(SERVER_ONLY, ErrorCode.BAD_MESSAGE, id="server-only"),
        pytest.param(
            pb.Message(chat_message=pb.ChatMessage(message="x" * 2001)).SerializeToString(),
            ErrorCode.TOO_LARGE,
            id="field-too-large",
        ),
    ],
)
def test_bad_frame_is_rejected_with_its_error_code(frame: bytes | str, code: ErrorCode) -> None:
    result = rejected(Session("alice").receive(frame))

    assert result.code == code
    assert result.text


@pytest.mark.parametrize(
    "bad_frame_limit", [BAD_FRAME_STREAK_LIMIT, 3], ids=["default-10", "tiny-3"]
)
def test_bad_frames_before_the_streak_limit_do_not_close(bad_frame_limit: int) -> None:
    session = Session("alice", bad_frame_limit=bad_frame_limit)

    results = [rejected(session.receive(UNDECODABLE)) for _ in range(bad_frame_limit - 1)]

    assert [r.close_code for r in results] == [None] * (bad_frame_limit - 1)


@pytest.mark.parametrize(
    "bad_frame_limit", [BAD_FRAME_STREAK_LIMIT, 3], ids=["default-10", "tiny-3"]
)
def test_bad_frame_reaching_the_streak_limit_closes_with_4007(bad_frame_limit: int) -> None:
    session = Session("alice", bad_frame_limit=bad_frame_limit)
    for _ in range(bad_frame_limit - 1):
        session.receive(UNDECODABLE)

    result = rejected(session.receive(UNDECODABLE))

    assert result.close_code == CloseCode.INVALID_MESSAGES
    assert result.close_code == 4007


def test_default_bad_frame_streak_limit_is_ten() -> None:
    assert Session("alice").bad_frame_limit == BAD_FRAME_STREAK_LIMIT == 10


def test_every_kind_of_bad_frame_counts_towards_the_streak() -> None:
    session = Session("alice", limits=FieldLimits(frame_bytes=1024), bad_frame_limit=3)
    session.receive(UNDECODABLE)
    session.receive(SERVER_ONLY)

    result = rejected(session.receive(b"\x00" * 1025))

    assert result.close_code == CloseCode.INVALID_MESSAGES


def test_good_frame_resets_the_bad_frame_streak() -> None:
    session = Session("alice", bad_frame_limit=3)
    session.receive(UNDECODABLE)
    session.receive(UNDECODABLE)
    accepted(session.receive(GOOD))
    session.receive(UNDECODABLE)

    result = rejected(session.receive(UNDECODABLE))

    assert result.close_code is None
    assert session.bad_streak == 2


def test_streak_after_a_reset_closes_at_the_limit_again() -> None:
    session = Session("alice", bad_frame_limit=3)
    session.receive(UNDECODABLE)
    session.receive(GOOD)
    for _ in range(2):
        session.receive(UNDECODABLE)

    result = rejected(session.receive(UNDECODABLE))

    assert result.close_code == CloseCode.INVALID_MESSAGES


# --- ref_message_id of rejections ----------------------------------------------


def test_rejected_decodable_message_carries_its_message_id() -> None:
    result = rejected(Session("alice").receive(SERVER_ONLY))

    assert result.ref_message_id == "c-2"


def test_rejected_undecodable_frame_has_no_ref_message_id() -> None:
    result = rejected(Session("alice").receive(UNDECODABLE))

    assert result.ref_message_id == ""


def test_overlong_message_id_is_echoed_cut_to_the_identifier_limit() -> None:
    frame = pb.Message(message_id="m" * 500, ping=pb.Ping()).SerializeToString()

    result = rejected(Session("alice").receive(frame))

    assert result.code == ErrorCode.TOO_LARGE
    assert result.ref_message_id == "m" * FieldLimits().identifier


# --- counters, capabilities, seq -----------------------------------------------


def test_messages_in_counts_every_frame_accepted_or_not() -> None:
    session = Session("alice")
    for frame in (GOOD, UNDECODABLE, GOOD):
        session.receive(frame)

    assert session.messages_in == 3


def test_bytes_in_sums_frame_sizes_with_text_in_utf8_bytes() -> None:
    session = Session("alice")
    text = '{"chatMessage": {"message": "Grüße"}}'

    session.receive(GOOD)
    session.receive(UNDECODABLE)
    session.receive(text)

    assert session.bytes_in == len(GOOD) + len(UNDECODABLE) + len(text.encode("utf-8"))


def test_a_new_session_has_no_capabilities() -> None:
    assert Session("alice").capabilities == frozenset()


def test_client_hello_sets_the_capabilities() -> None:
    session = Session("alice")
    hello = pb.Message(client_hello=pb.ClientHello(capabilities=["ack", "batch"]))

    session.receive(hello.SerializeToString())

    assert session.capabilities == frozenset({"ack", "batch"})


def test_rejected_client_hello_does_not_set_capabilities() -> None:
    session = Session("alice")
    hello = pb.Message(client_hello=pb.ClientHello(display_name="\x00", capabilities=["batch"]))

    rejected(session.receive(hello.SerializeToString()))

    assert session.capabilities == frozenset()


def test_next_seq_counts_up_from_one() -> None:
    session = Session("alice")

    assert [session.next_seq() for _ in range(4)] == [1, 2, 3, 4]
    assert session.last_seq == 4
