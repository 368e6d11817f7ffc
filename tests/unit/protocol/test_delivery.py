"""The delivery window and the answer cache (PROTOCOL.md sections 5 and 6), on a fake clock."""

from __future__ import annotations

import pytest

from presence.protocol.delivery import (
    CAUSE_OVERFLOW,
    CAUSE_UNACKED,
    AnswerCache,
    DeliveryWindow,
    SlowConsumer,
)


def window(**kwargs: object) -> DeliveryWindow[str]:
    options: dict[str, object] = {"size": 4, "retry_interval": 5.0, "max_retries": 3, "acks": True}
    options.update(kwargs)
    return DeliveryWindow(**options)  # type: ignore[arg-type]


def send_all(w: DeliveryWindow[str], now: float) -> None:
    for kept in list(w.kept()):
        if kept.sent_at is None:
            w.sent(kept.seq, now)


# --- numbering -------------------------------------------------------------------


def test_seq_starts_at_one_and_has_no_gaps() -> None:
    w = window()
    assert [w.number(m) for m in ("a", "b", "c")] == [1, 2, 3]
    assert w.last_seq == 3


def test_numbering_continues_after_a_resumed_last_seq() -> None:
    w = window(last_seq=41)
    assert w.number("x") == 42


# --- acknowledgement ---------------------------------------------------------------


def test_ack_is_cumulative_and_counts_what_it_newly_covers() -> None:
    w = window()
    for m in "abc":
        w.number(m)
    assert w.ack(2) == 2
    assert w.ack(1) == 0  # older ack: nothing new
    assert w.ack(3) == 1
    assert w.acked == 3


def test_ack_beyond_what_was_numbered_acks_only_what_was_numbered() -> None:
    w = window()
    w.number("a")
    assert w.ack(99) == 1
    assert w.acked == 1
    assert w.number("b") == 2  # and b is not acknowledged by it
    assert w.acked == 1


def test_without_ack_capability_written_counts_as_acknowledged() -> None:
    w = window(acks=False)
    w.number("a")
    w.sent(1, now=0.0)
    assert w.acked == 1


def test_with_ack_capability_written_is_not_acknowledged() -> None:
    w = window()
    w.number("a")
    w.sent(1, now=0.0)
    assert w.acked == 0


# --- re-sends ------------------------------------------------------------------------


def test_unacked_message_is_due_again_after_the_retry_interval_with_its_seq() -> None:
    w = window()
    w.number("a")
    w.sent(1, now=100.0)
    assert w.due(104.9) == []
    (resend,) = w.due(105.0)
    assert (resend.seq, resend.item, resend.retries) == (1, "a", 1)


def test_acked_message_is_never_due() -> None:
    w = window()
    w.number("a")
    w.sent(1, now=0.0)
    w.ack(1)
    assert w.due(1000.0) == []
    assert w.next_due_at() is None


def test_unwritten_message_is_not_due() -> None:
    w = window()
    w.number("a")  # still waiting for the writer
    assert w.due(1000.0) == []


def test_max_retries_resends_then_slow_consumer_with_cause_unacked() -> None:
    w = window(max_retries=3)
    w.number("a")
    now = 0.0
    w.sent(1, now)
    for retry in (1, 2, 3):
        now += 5.0
        (kept,) = w.due(now)
        assert kept.retries == retry
        w.sent(1, now)
    assert w.due(now + 4.9) == []  # the last re-send still has its interval
    with pytest.raises(SlowConsumer) as closed:
        w.due(now + 5.0)
    assert closed.value.cause == CAUSE_UNACKED


def test_an_ack_after_a_resend_stops_the_schedule() -> None:
    w = window()
    w.number("a")
    w.sent(1, now=0.0)
    w.due(5.0)
    w.sent(1, now=5.0)
    w.ack(1)
    assert w.due(100.0) == []


def test_next_due_at_is_the_earliest_unacked_send_plus_the_interval() -> None:
    w = window()
    w.number("a")
    w.number("b")
    w.sent(1, now=10.0)
    w.sent(2, now=12.0)
    assert w.next_due_at() == 15.0
    w.ack(1)
    assert w.next_due_at() == 17.0


def test_clients_without_ack_get_no_resends() -> None:
    w = window(acks=False)
    w.number("a")
    w.sent(1, now=0.0)
    assert w.due(1e9) == []


# --- bounds --------------------------------------------------------------------------


def test_window_keeps_at_most_size_messages_once_they_are_acked() -> None:
    w = window(size=4)
    for i in range(10):
        w.number(str(i))
        send_all(w, 0.0)
        w.ack(w.last_seq)
    assert len(w) == 4
    assert [k.seq for k in w.kept()] == [7, 8, 9, 10]


def test_overflow_of_unacked_messages_is_slow_consumer_not_a_silent_drop() -> None:
    w = window(size=4)
    for m in "abcd":
        w.number(m)
    send_all(w, 0.0)
    with pytest.raises(SlowConsumer) as closed:
        w.number("e")
    assert closed.value.cause == CAUSE_OVERFLOW
    assert [k.item for k in w.kept()] == ["a", "b", "c", "d"]  # nothing was dropped


def test_overflow_of_unwritten_messages_without_ack_is_slow_consumer() -> None:
    w = window(size=2, acks=False)
    w.number("a")
    w.number("b")
    with pytest.raises(SlowConsumer):
        w.number("c")


def test_acked_messages_stay_replayable_until_pushed_out() -> None:
    w = window(size=4)
    for m in "ab":
        w.number(m)
    w.ack(2)
    assert [k.item for k in w.after(0) or []] == ["a", "b"]


# --- replay --------------------------------------------------------------------------


def test_after_returns_everything_after_last_seq_in_order() -> None:
    w = window()
    for m in "abc":
        w.number(m)
    assert [(k.seq, k.item) for k in w.after(1) or []] == [(2, "b"), (3, "c")]
    assert w.after(3) == []


def test_after_beyond_what_was_sent_is_not_possible() -> None:
    w = window()
    w.number("a")
    assert w.after(2) is None


def test_after_a_gap_that_can_no_longer_be_filled_is_not_possible() -> None:
    w = window(size=2, acks=False)
    for m in "abcd":
        w.number(m)
        w.sent(w.last_seq, 0.0)
    assert w.first_seq == 3
    assert w.after(1) is None  # seq 2 is gone
    assert [k.seq for k in w.after(2) or []] == [3, 4]


def test_resume_from_acks_what_the_client_processed_and_resends_the_rest() -> None:
    w = window()
    for m in "abc":
        w.number(m)
    send_all(w, 0.0)
    replay = w.resume_from(1)
    assert replay is not None
    assert [k.seq for k in replay] == [2, 3]
    assert w.acked == 1
    assert all(k.sent_at is None and k.retries == 0 for k in replay)


def test_keep_adopts_numbered_messages_and_refuses_a_gap() -> None:
    w = window(last_seq=5)
    w.keep(6, "f")
    assert w.number("g") == 7
    with pytest.raises(ValueError):
        w.keep(9, "i")


def test_invalid_limits_are_refused() -> None:
    with pytest.raises(ValueError):
        DeliveryWindow(size=0)


# --- answers to client message ids ------------------------------------------------------


def test_a_repeated_message_id_gets_the_same_answer_and_counts_as_duplicate() -> None:
    cache: AnswerCache[bytes] = AnswerCache(size=3)
    assert cache.get("m1") is None
    cache.put("m1", b"ack m1")
    assert cache.get("m1") == b"ack m1"
    assert cache.duplicates == 1


def test_answer_cache_forgets_the_oldest_id_past_its_size() -> None:
    cache: AnswerCache[bytes] = AnswerCache(size=3)
    for i in range(4):
        cache.put(f"m{i}", b"a")
    assert "m0" not in cache
    assert [mid for mid, _ in cache.items()] == ["m1", "m2", "m3"]
    assert len(cache) == 3
