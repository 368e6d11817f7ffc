"""Connection-attempt limits in a real Redis, shared by two limiters ("two servers")."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable

import pytest
import redis

from presence.protocol.ratelimit import Decision
from presence.transport.ratelimits import (
    LocalAttemptLimiter,
    RateLimitBackendError,
    RedisAttemptLimiter,
    build_attempt_limiter,
    client_ip,
)
from tests.conftest import closed_redis_url
from tests.fakes import FakeClock

DEADLINE_SECONDS = 3.0  # generous: the machine may be busy; the waits end on a condition
POLL_SECONDS = 0.01


@pytest.fixture
async def make_limiter(
    redis_url: str, redis_prefix: str, redis_keys: redis.Redis
) -> AsyncIterator[Callable[..., RedisAttemptLimiter]]:
    """Build limiters on the test's Redis and prefix; close them afterwards."""
    made: list[RedisAttemptLimiter] = []

    def make(
        limit: int, window: float, clock: Callable[[], float] = time.time
    ) -> RedisAttemptLimiter:
        limiter = RedisAttemptLimiter(redis_url, redis_prefix, limit, window, clock=clock)
        made.append(limiter)
        return limiter

    yield make
    for limiter in made:
        await limiter.aclose()


async def wait_until_allowed(limiter: RedisAttemptLimiter, key: str) -> float:
    """Knock until admitted; the time it took. Fails past the deadline."""
    start = time.monotonic()
    while not (await limiter.hit(key)).allowed:
        assert time.monotonic() - start < DEADLINE_SECONDS, "the window never slid"
        await asyncio.sleep(POLL_SECONDS)
    return time.monotonic() - start


# --- RedisAttemptLimiter -----------------------------------------------------------


async def test_limit_holds_across_two_instances(make_limiter) -> None:
    clock = FakeClock()
    server_a = make_limiter(3, 60.0, clock=clock)
    server_b = make_limiter(3, 60.0, clock=clock)
    assert (await server_a.hit("198.51.100.1")).allowed
    assert (await server_b.hit("198.51.100.1")).allowed
    assert (await server_a.hit("198.51.100.1")).allowed
    assert not (await server_b.hit("198.51.100.1")).allowed
    assert not (await server_a.hit("198.51.100.1")).allowed
    assert (server_a.allowed, server_a.blocked, server_b.allowed, server_b.blocked) == (2, 1, 1, 1)


async def test_next_ip_still_gets_in(make_limiter) -> None:
    limiter = make_limiter(2, 60.0, clock=FakeClock())
    for _ in range(5):
        await limiter.hit("198.51.100.1")
    assert (await limiter.hit("198.51.100.2")).allowed


async def test_refusal_says_when_the_oldest_attempt_leaves(make_limiter) -> None:
    clock = FakeClock()
    limiter = make_limiter(2, 60.0, clock=clock)
    await limiter.hit("198.51.100.1")
    clock.advance(10.0)
    await limiter.hit("198.51.100.1")
    clock.advance(5.0)
    assert await limiter.hit("198.51.100.1") == Decision(False, 45.0)
    clock.advance(45.0)  # the first attempt is one window old: a slot is free
    assert (await limiter.hit("198.51.100.1")).allowed
    assert await limiter.hit("198.51.100.1") == Decision(False, 10.0)


async def test_refused_attempts_are_not_logged(make_limiter, redis_keys: redis.Redis) -> None:
    limiter = make_limiter(2, 60.0, clock=FakeClock())
    for _ in range(10):
        await limiter.hit("198.51.100.1")
    assert redis_keys.zcard(limiter.key("198.51.100.1")) == 2


async def test_window_slides_in_real_time(make_limiter) -> None:
    limiter = make_limiter(3, 0.2)
    first = time.monotonic()
    assert all([(await limiter.hit("198.51.100.1")).allowed for _ in range(3)])
    refused = await limiter.hit("198.51.100.1")
    assert not refused.allowed and 0 < refused.retry_after <= 0.2
    await wait_until_allowed(limiter, "198.51.100.1")
    # Times are whole milliseconds in Redis, so a slot may free a millisecond early.
    assert time.monotonic() - first >= 0.2 - 0.002


async def test_keys_expire_a_window_after_the_last_attempt(
    make_limiter, redis_keys: redis.Redis
) -> None:
    limiter = make_limiter(3, 0.2)
    await limiter.hit("198.51.100.1")
    key = limiter.key("198.51.100.1")
    assert 0 < redis_keys.pttl(key) <= 200
    deadline = time.monotonic() + DEADLINE_SECONDS
    while redis_keys.exists(key):
        assert time.monotonic() < deadline, "the key never expired"
        await asyncio.sleep(POLL_SECONDS)


def test_one_limiter_serves_successive_event_loops(
    redis_url: str, redis_prefix: str, redis_keys: redis.Redis
) -> None:
    limiter = RedisAttemptLimiter(redis_url, redis_prefix, 1, 60.0, clock=FakeClock())

    async def knock() -> Decision:
        try:
            return await limiter.hit("198.51.100.1")
        finally:
            await limiter.aclose()

    assert asyncio.run(knock()).allowed
    assert not asyncio.run(knock()).allowed  # a new loop, a new client, the same window


async def test_unreachable_redis_raises_backend_error(redis_prefix: str) -> None:
    limiter = RedisAttemptLimiter(closed_redis_url(), redis_prefix, 3, 60.0, socket_timeout=0.5)
    with pytest.raises(RateLimitBackendError):
        await limiter.hit("198.51.100.1")
    assert limiter.errors == 1
    await limiter.aclose()


# --- choosing a limiter ------------------------------------------------------------


async def test_build_uses_redis_only_when_a_url_is_given(
    redis_url: str, redis_prefix: str, redis_keys: redis.Redis
) -> None:
    remote = build_attempt_limiter(redis_url=redis_url, prefix=redis_prefix, limit=1, window=60.0)
    local = build_attempt_limiter(redis_url="", prefix=redis_prefix, limit=1, window=60.0)
    assert isinstance(remote, RedisAttemptLimiter)
    assert isinstance(local, LocalAttemptLimiter)
    assert (await local.hit("198.51.100.1")).allowed
    assert not (await local.hit("198.51.100.1")).allowed
    assert (local.allowed, local.blocked) == (1, 1)
    await remote.aclose()


# --- client_ip ---------------------------------------------------------------------


def scope(peer: str | None, *forwarded: str) -> dict[str, object]:
    headers = [(b"x-forwarded-for", value.encode("latin-1")) for value in forwarded]
    return {
        "type": "websocket",
        "client": [peer, 50000] if peer else None,
        "headers": [(b"user-agent", b"test"), *headers],
    }


PROXY = "10.0.0.5"
TRUSTED = frozenset({PROXY})


def test_client_ip_is_the_peer_without_trusted_proxies() -> None:
    assert client_ip(scope("203.0.113.7", "198.51.100.9"), frozenset()) == "203.0.113.7"


def test_spoofed_forwarded_for_from_an_untrusted_peer_is_ignored() -> None:
    assert client_ip(scope("203.0.113.7", "198.51.100.9"), TRUSTED) == "203.0.113.7"


def test_trusted_proxy_forwards_the_client_address() -> None:
    assert client_ip(scope(PROXY, "198.51.100.9"), TRUSTED) == "198.51.100.9"


def test_first_untrusted_address_from_the_right_is_the_client() -> None:
    # The client wrote "1.2.3.4" itself; the proxy appended what it saw.
    assert client_ip(scope(PROXY, "1.2.3.4, 198.51.100.9"), TRUSTED) == "198.51.100.9"


def test_a_chain_of_trusted_proxies_is_skipped() -> None:
    trusted = frozenset({PROXY, "172.16.0.0/12"})
    chain = scope(PROXY, "1.2.3.4, 198.51.100.9", "172.16.3.4")  # two headers, joined in order
    assert client_ip(chain, trusted) == "198.51.100.9"


def test_garbage_forwarded_for_falls_back_to_the_last_trusted_hop() -> None:
    assert client_ip(scope(PROXY, "not-an-ip"), TRUSTED) == PROXY
    assert client_ip(scope(PROXY), TRUSTED) == PROXY


def test_forwarded_addresses_with_ports_are_understood() -> None:
    assert client_ip(scope(PROXY, "198.51.100.9:4711"), TRUSTED) == "198.51.100.9"
    assert client_ip(scope(PROXY, "[2001:db8::1]:4711"), TRUSTED) == "2001:db8::1"


def test_client_ip_without_a_peer_is_unknown() -> None:
    assert client_ip(scope(None), TRUSTED) == "unknown"
