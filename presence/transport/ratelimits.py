"""Connection-attempt limits across instances, and the client address they key on.

The I/O side of :mod:`presence.protocol.ratelimit`: with ``REDIS_URL`` the
sliding window of each client address lives in Redis, so the limit holds
however many instances the client's attempts are spread over; without it,
:class:`~presence.protocol.ratelimit.InProcessAttemptLimiter` keeps it in the
process (one instance, or ``N`` times the limit across ``N`` workers).
"""

from __future__ import annotations

import asyncio
import ipaddress
import itertools
import time
import uuid
import weakref
from collections.abc import Iterable, Mapping
from functools import lru_cache
from typing import Any, Protocol

import redis.asyncio as aioredis
from redis.commands.core import AsyncScript
from redis.exceptions import RedisError

from presence.protocol.ratelimit import ALLOWED, Clock, Decision, InProcessAttemptLimiter
from presence.redis_client import redis_client

# A limiter check sits on the handshake path: a stalled Redis refuses the
# connection in seconds instead of holding it for the channel layer's 10 s.
REDIS_SOCKET_TIMEOUT = 2.0
UNKNOWN_CLIENT = "unknown"  # the key of a peer the server gave no address for
MAX_FORWARDED_HOPS = 16  # X-Forwarded-For entries examined, from the right


class RateLimitBackendError(Exception):
    """Redis did not answer a rate-limit check (the caller decides: 4012)."""


class AttemptLimiter(Protocol):
    """Connection attempts per client address, possibly shared across instances."""

    async def hit(self, key: str) -> Decision:
        """One connection attempt from ``key`` arrived now."""
        ...


# One atomic sliding-window log per key: a ZSET of admitted attempt times in
# integer milliseconds. Refused attempts are not logged (see SlidingWindow).
# Re-running it with the same ARGV (redis-py's retry after a lost reply) adds
# the same member again, so a retry never counts an attempt twice.
SLIDING_WINDOW_LUA = """
local now = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local limit = tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
local count = redis.call('ZCARD', KEYS[1])
if count < limit then
    redis.call('ZADD', KEYS[1], now, ARGV[4])
    redis.call('PEXPIRE', KEYS[1], window)
    return {1, 0}
end
-- A slot frees when the (count - limit + 1)th oldest entry leaves the window
-- (count exceeds limit only after the limit was lowered).
local entry = redis.call('ZRANGE', KEYS[1], count - limit, count - limit, 'WITHSCORES')
return {0, tonumber(entry[2]) + window - now}
"""


class RedisAttemptLimiter:
    """``limit`` attempts per ``window`` s per key, in Redis, across instances.

    Keys are ``{prefix}:ratelimit:conn:{key}`` and expire ``window`` after
    their last admitted attempt. Times come from ``clock`` (wall-clock
    seconds, shared by all instances); hosts kept in step by NTP differ by
    milliseconds, noise against a 60 s window, and an injected clock keeps the
    window testable (Redis ``TIME`` would not be).
    """

    def __init__(
        self,
        redis_url: str,
        prefix: str,
        limit: int,
        window: float,
        *,
        clock: Clock = time.time,
        socket_timeout: float = REDIS_SOCKET_TIMEOUT,
    ) -> None:
        if limit < 1 or not window > 0:
            raise ValueError("limit must be at least 1 and window positive")
        self.redis_url = redis_url
        self.prefix = prefix
        self.limit = limit
        self.window = window
        self.window_ms = max(1, round(window * 1000))
        self.socket_timeout = socket_timeout
        self._clock = clock
        self._member_ids = itertools.count()
        self._instance = uuid.uuid4().hex[:12]
        # A client per event loop: its connections belong to the loop that opened them.
        self._clients: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, tuple[aioredis.Redis, AsyncScript]
        ] = weakref.WeakKeyDictionary()
        self.allowed = 0
        self.blocked = 0
        self.errors = 0

    def key(self, key: str) -> str:
        """The Redis key holding ``key``'s window."""
        return f"{self.prefix}:ratelimit:conn:{key}"

    async def hit(self, key: str) -> Decision:
        """One connection attempt from ``key`` arrived now; raises RateLimitBackendError."""
        now_ms = int(self._clock() * 1000)
        member = f"{now_ms}:{self._instance}:{next(self._member_ids)}"
        _, script = self._client()
        try:
            allowed, retry_ms = await script(
                keys=[self.key(key)], args=[now_ms, self.window_ms, self.limit, member]
            )
        except (RedisError, OSError) as exc:
            self.errors += 1
            raise RateLimitBackendError(f"rate limit check failed: {exc}") from exc
        if allowed:
            self.allowed += 1
            return ALLOWED
        self.blocked += 1
        # Clamped: an entry from a host whose clock runs ahead must not ask for more.
        return Decision(False, min(int(retry_ms), self.window_ms) / 1000)

    async def aclose(self) -> None:
        """Close the running event loop's connections (tests, shutdown)."""
        entry = self._clients.pop(asyncio.get_running_loop(), None)
        if entry is not None:
            await entry[0].aclose()

    def _client(self) -> tuple[aioredis.Redis, AsyncScript]:
        loop = asyncio.get_running_loop()
        entry = self._clients.get(loop)
        if entry is None:
            client = redis_client(self.redis_url, timeout=self.socket_timeout)
            entry = self._clients[loop] = (client, client.register_script(SLIDING_WINDOW_LUA))
        return entry


class LocalAttemptLimiter:
    """The in-process limiter behind the same ``async hit`` as the Redis one."""

    def __init__(self, limiter: InProcessAttemptLimiter) -> None:
        self.limiter = limiter

    @property
    def allowed(self) -> int:
        """Attempts admitted so far."""
        return self.limiter.allowed

    @property
    def blocked(self) -> int:
        """Attempts refused so far."""
        return self.limiter.blocked

    async def hit(self, key: str) -> Decision:
        """One connection attempt from ``key`` arrived now."""
        return self.limiter.hit(key)

    async def aclose(self) -> None:
        """Nothing to close; here so both limiters close alike."""


def build_attempt_limiter(
    *,
    redis_url: str,
    prefix: str,
    limit: int,
    window: float,
    max_keys: int = 100_000,
) -> RedisAttemptLimiter | LocalAttemptLimiter:
    """The Redis limiter when ``redis_url`` is set, else the in-process one."""
    if redis_url:
        return RedisAttemptLimiter(redis_url, prefix, limit, window)
    return LocalAttemptLimiter(InProcessAttemptLimiter(limit, window, max_keys=max_keys))


# --- client address -----------------------------------------------------------


@lru_cache(maxsize=8)
def trusted_networks(
    trusted_proxies: frozenset[str],
) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    """Parse proxy addresses or networks (``10.0.0.5``, ``10.0.0.0/8``); ValueError if bad."""
    return tuple(ipaddress.ip_network(entry.strip(), strict=False) for entry in trusted_proxies)


def _parse_ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    text = text.strip()
    if text.startswith("["):  # "[v6]" or "[v6]:port"
        text = text[1 : text.find("]")] if "]" in text else ""
    elif text.count(":") == 1:  # "v4:port"
        text = text.split(":", 1)[0]
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def in_networks(ip: ipaddress.IPv4Address | ipaddress.IPv6Address, trusted: Iterable[Any]) -> bool:
    """Whether ``ip`` lies in one of the networks ``trusted`` (as :func:`trusted_networks`)."""
    return any(ip.version == net.version and ip in net for net in trusted)


def client_ip(scope: Mapping[str, Any], trusted_proxies: frozenset[str]) -> str:
    """The client's address: the peer, or, behind a trusted proxy, X-Forwarded-For.

    ``X-Forwarded-For`` is read only when the peer is one of ``trusted_proxies``
    (addresses or networks); then the entries are walked from the right, past
    trusted proxies, and the first untrusted address is the client. An entry
    that is not an address ends the walk at the last trusted hop, so a
    malformed or spoofed header never yields a key the client chose.
    """
    client = scope.get("client")
    if not client or client[0] is None:
        return UNKNOWN_CLIENT
    peer = _parse_ip(str(client[0]))
    if peer is None:  # a unix socket path or similar: not a client address
        return str(client[0])
    if not trusted_proxies:
        return str(peer)
    trusted = trusted_networks(trusted_proxies)
    if not in_networks(peer, trusted):
        return str(peer)
    forwarded = b",".join(
        value for name, value in scope.get("headers") or () if name == b"x-forwarded-for"
    ).decode("latin-1")
    hop = peer
    # rsplit bounds the work however long the header is.
    for entry in reversed(forwarded.rsplit(",", MAX_FORWARDED_HOPS)[-MAX_FORWARDED_HOPS:]):
        ip = _parse_ip(entry)
        if ip is None:
            break
        if not in_networks(ip, trusted):
            return str(ip)
        hop = ip
    return str(hop)


def meta_client_ip(meta: Mapping[str, Any], trusted_proxies: frozenset[str]) -> str:
    """:func:`client_ip` of a Django request's ``META`` (HTTP views, throttles)."""
    forwarded = str(meta.get("HTTP_X_FORWARDED_FOR", ""))
    scope: dict[str, Any] = {
        "client": (meta.get("REMOTE_ADDR"), 0),
        "headers": [(b"x-forwarded-for", forwarded.encode("latin-1"))] if forwarded else [],
    }
    return client_ip(scope, trusted_proxies)
