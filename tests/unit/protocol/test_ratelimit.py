"""Sliding-window rate limits on a fake clock: no sleeps, no I/O."""

from __future__ import annotations

import pytest

from presence.protocol.ratelimit import (
    ConnectionAttemptLimiter,
    Decision,
    InProcessAttemptLimiter,
    MessageRateLimiter,
    SlidingWindow,
    attempt_key,
)
from tests.fakes import FakeClock


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def flood(limiter: MessageRateLimiter, count: int) -> list:
    return [limiter.check() for _ in range(count)]


# --- SlidingWindow ---------------------------------------------------------------


def test_hits_under_the_limit_are_allowed(clock: FakeClock) -> None:
    window = SlidingWindow(3, 10.0, clock=clock)
    assert [window.hit().allowed for _ in range(3)] == [True, True, True]


def test_hit_over_the_limit_is_blocked_until_the_oldest_leaves(clock: FakeClock) -> None:
    window = SlidingWindow(3, 10.0, clock=clock)
    window.hit()
    clock.advance(2.0)
    window.hit()
    window.hit()
    clock.advance(1.0)
    decision = window.hit()
    assert decision == Decision(False, 7.0)  # the first hit leaves at +10 s, now is +3 s
    assert decision.retry_after_ms == 7000


def test_allowed_hit_has_no_retry_after(clock: FakeClock) -> None:
    decision = SlidingWindow(1, 1.0, clock=clock).hit()
    assert decision.allowed and decision.retry_after == 0 and decision.retry_after_ms == 0


def test_window_slides_as_old_hits_expire(clock: FakeClock) -> None:
    window = SlidingWindow(2, 10.0, clock=clock)
    window.hit()
    clock.advance(5.0)
    window.hit()
    assert not window.hit().allowed
    clock.advance(5.0)  # the first hit is exactly one window old: out
    assert window.hit().allowed
    assert not window.hit().allowed  # the +5 s hit and the new one fill it again
    clock.advance(4.5)
    assert window.hit() == Decision(False, 0.5)
    clock.advance(0.5)
    assert window.hit().allowed


def test_blocked_hits_are_not_logged(clock: FakeClock) -> None:
    window = SlidingWindow(1, 10.0, clock=clock)
    window.hit()
    for _ in range(5):
        clock.advance(1.0)
        assert not window.hit().allowed
    clock.advance(5.0)  # ten seconds after the only admitted hit
    assert window.hit().allowed


def test_log_never_holds_more_than_limit_entries(clock: FakeClock) -> None:
    window = SlidingWindow(4, 1.0, clock=clock)
    for _ in range(1000):
        window.hit()
        clock.advance(0.125)
    assert len(window._log) == 4


def test_window_counts_allowed_and_blocked(clock: FakeClock) -> None:
    window = SlidingWindow(2, 1.0, clock=clock)
    for _ in range(5):
        window.hit()
    assert (window.allowed, window.blocked) == (2, 3)


@pytest.mark.parametrize(("limit", "window"), [(0, 1.0), (1, 0.0), (1, -1.0), (1, float("inf"))])
def test_window_refuses_meaningless_limits(limit: int, window: float) -> None:
    with pytest.raises(ValueError):
        SlidingWindow(limit, window)


# --- MessageRateLimiter ----------------------------------------------------------


def test_messages_under_the_limit_pass(clock: FakeClock) -> None:
    limiter = MessageRateLimiter(limit=5, window=1.0, clock=clock)
    assert all(v.allowed and not v.notify and not v.close for v in flood(limiter, 5))


def test_excess_messages_are_dropped_with_one_notify_per_window(clock: FakeClock) -> None:
    limiter = MessageRateLimiter(limit=5, window=1.0, clock=clock)
    verdicts = flood(limiter, 12)
    dropped = verdicts[5:]
    assert not any(v.allowed for v in dropped)
    assert [v.notify for v in dropped] == [True] + [False] * 6
    assert dropped[0].retry_after_ms == 1000
    assert not any(v.close for v in verdicts)


def test_a_new_window_notifies_again(clock: FakeClock) -> None:
    limiter = MessageRateLimiter(limit=5, window=1.0, clock=clock)
    flood(limiter, 8)
    clock.advance(1.0)
    assert sum(v.notify for v in flood(limiter, 8)) == 1


def test_close_after_three_consecutive_windows_over_the_limit(clock: FakeClock) -> None:
    limiter = MessageRateLimiter(limit=5, window=1.0, strikes=3, clock=clock)
    first = flood(limiter, 8)
    clock.advance(1.0)
    second = flood(limiter, 8)
    assert not any(v.close for v in first + second)  # two windows over: not yet
    clock.advance(1.0)
    third = flood(limiter, 8)
    closing = [v for v in third if v.close]
    assert closing[0].notify and not closing[0].allowed  # the Error goes out with the close
    assert limiter.strikes == 3


def test_after_close_every_message_is_dropped(clock: FakeClock) -> None:
    limiter = MessageRateLimiter(limit=2, window=1.0, strikes=1, clock=clock)
    flood(limiter, 3)
    clock.advance(10.0)
    verdict = limiter.check()
    assert not verdict.allowed and verdict.close and not verdict.notify


def test_a_clean_window_resets_the_strikes(clock: FakeClock) -> None:
    limiter = MessageRateLimiter(limit=5, window=1.0, strikes=3, clock=clock)
    flood(limiter, 8)
    clock.advance(1.0)
    flood(limiter, 8)
    clock.advance(1.0)
    assert all(v.allowed for v in flood(limiter, 3))  # a window within the limit
    clock.advance(1.0)
    flood(limiter, 8)
    clock.advance(1.0)
    assert not any(v.close for v in flood(limiter, 8))
    assert limiter.strikes == 2


def test_an_idle_window_also_resets_the_strikes(clock: FakeClock) -> None:
    limiter = MessageRateLimiter(limit=5, window=1.0, strikes=2, clock=clock)
    flood(limiter, 8)
    clock.advance(2.0)  # one whole window with no message at all
    assert not any(v.close for v in flood(limiter, 8))


def test_strike_windows_are_fixed_from_the_join(clock: FakeClock) -> None:
    limiter = MessageRateLimiter(limit=5, window=1.0, strikes=3, clock=clock)
    clock.advance(0.75)
    assert sum(v.notify for v in flood(limiter, 8)) == 1  # window 0
    clock.advance(0.5)  # 1.25 s after the join: window 1, though the sliding log is full
    verdicts = flood(limiter, 3)
    assert [v.notify for v in verdicts] == [True, False, False]
    assert verdicts[0].retry_after_ms == 500  # the first message leaves at 1.75 s


def test_message_limiter_counts_allowed_and_dropped(clock: FakeClock) -> None:
    limiter = MessageRateLimiter(limit=5, window=1.0, clock=clock)
    flood(limiter, 9)
    assert (limiter.allowed, limiter.blocked) == (5, 4)


def test_message_limiter_defaults_match_the_protocol(clock: FakeClock) -> None:
    limiter = MessageRateLimiter(clock=clock)
    verdicts = flood(limiter, 101)
    assert sum(v.allowed for v in verdicts) == 100
    assert limiter.strike_limit == 3


# --- InProcessAttemptLimiter -----------------------------------------------------


def test_attempts_over_the_limit_are_refused_per_key(clock: FakeClock) -> None:
    limiter: ConnectionAttemptLimiter = InProcessAttemptLimiter(3, 60.0, clock=clock)
    assert all(limiter.hit("10.0.0.1").allowed for _ in range(3))
    clock.advance(15.0)
    assert limiter.hit("10.0.0.1") == Decision(False, 45.0)
    assert limiter.hit("10.0.0.2").allowed  # the next address still gets in


def test_attempt_window_slides(clock: FakeClock) -> None:
    limiter = InProcessAttemptLimiter(2, 60.0, clock=clock)
    limiter.hit("a")
    limiter.hit("a")
    clock.advance(60.0)
    assert limiter.hit("a").allowed


def test_idle_keys_are_dropped(clock: FakeClock) -> None:
    limiter = InProcessAttemptLimiter(2, 10.0, clock=clock)
    for n in range(50):
        limiter.hit(f"10.0.0.{n}")
    clock.advance(10.0)
    limiter.hit("10.0.1.1")
    assert len(limiter) == 1
    assert limiter.evicted == 0  # idle windows do not count as evictions


def test_keys_are_bounded_by_evicting_the_least_recently_used(clock: FakeClock) -> None:
    limiter = InProcessAttemptLimiter(1, 60.0, clock=clock, max_keys=3)
    for key in ("a", "b", "c"):
        limiter.hit(key)
    assert not limiter.hit("a").allowed  # "a" is now the most recently used
    limiter.hit("d")  # evicts "b"
    assert len(limiter) == 3 and limiter.evicted == 1
    assert not limiter.hit("a").allowed and not limiter.hit("c").allowed
    assert limiter.hit("b").allowed  # forgotten, so admitted again


def test_many_keys_stay_within_max_keys(clock: FakeClock) -> None:
    limiter = InProcessAttemptLimiter(5, 60.0, clock=clock, max_keys=100)
    for n in range(10_000):
        limiter.hit(f"key-{n}")
    assert len(limiter) == 100


def test_attempt_limiter_counts_allowed_and_blocked(clock: FakeClock) -> None:
    limiter = InProcessAttemptLimiter(2, 60.0, clock=clock, max_keys=1)
    for key in ("a", "a", "a", "b", "b", "b"):
        limiter.hit(key)
    assert (limiter.allowed, limiter.blocked) == (4, 2)  # evicted windows keep their counts


# --- attempt_key -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "key"),
    [
        ("203.0.113.7", "203.0.113.7"),
        ("2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"),
        ("2001:db8:1:2:ffff::1", "2001:db8:1:2::/64"),
        ("::ffff:203.0.113.7", "203.0.113.7"),
        ("unknown", "unknown"),
    ],
)
def test_attempt_key_groups_an_ipv6_subscriber(address: str, key: str) -> None:
    assert attempt_key(address) == key
