"""Rate limits (PROTOCOL.md section 8): sliding windows on an injected clock.

Pure: the limiters decide, the caller does the I/O. Every limiter takes a
``clock`` (seconds as a float, ``time.monotonic`` by default) so tests advance
a fake clock instead of sleeping.

* :class:`SlidingWindow` -- ``limit`` hits per ``window`` seconds, exact.
* :class:`MessageRateLimiter` -- messages on one connection: drop the excess,
  one ``Error RATE_LIMITED`` per window, close 4008 when it persists.
* :class:`InProcessAttemptLimiter` -- connection attempts per client IP in one
  process; ``presence.transport.ratelimits`` holds the Redis twin that spans instances.
"""

from __future__ import annotations

import ipaddress
import math
import time
from array import array
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

Clock = Callable[[], float]

IPV6_PREFIX = 64  # one IPv6 subscriber usually owns a whole /64: limit the network


@dataclass(frozen=True, slots=True)
class Decision:
    """The answer to one hit: allowed, or refused until ``retry_after`` seconds pass."""

    allowed: bool
    retry_after: float = 0.0

    @property
    def retry_after_ms(self) -> int:
        """``retry_after`` in whole milliseconds, rounded up (the wire unit)."""
        return math.ceil(self.retry_after * 1000)


ALLOWED = Decision(True)  # shared: an allowed hit allocates nothing


def _check_limits(limit: int, window: float) -> None:
    if limit < 1:
        raise ValueError(f"limit must be at least 1, got {limit!r}")
    if not (math.isfinite(window) and window > 0):
        raise ValueError(f"window must be a positive number of seconds, got {window!r}")


class SlidingWindow:
    """At most ``limit`` hits in any ``window`` seconds: an exact sliding-window log.

    A log rather than the two-bucket counter approximation because the log is
    exact (the counter assumes the previous bucket's hits were evenly spread
    and can let up to twice ``limit`` through in a burst at a bucket edge),
    gives an exact ``retry_after``, matches the Redis ZSET twin in
    ``presence.transport.ratelimits``, and stays cheap: only admitted hits are logged,
    and once ``limit`` of them are logged the log becomes a ring that
    overwrites its oldest entry, so a hit is O(1) and the log never holds
    more than ``limit`` timestamps (8 bytes each in an ``array``, grown only as
    hits arrive: an idle connection pays for none).

    Refused hits are not logged: a client that keeps knocking is let in again
    ``retry_after`` seconds later instead of being locked out for as long as
    it knocks.
    """

    __slots__ = ("_clock", "_log", "_oldest", "allowed", "blocked", "limit", "window")

    def __init__(self, limit: int, window: float, *, clock: Clock = time.monotonic) -> None:
        _check_limits(limit, window)
        self.limit = limit
        self.window = window
        self._clock = clock
        self._log = array("d")  # admitted hit times; a ring once it holds `limit`
        self._oldest = 0  # index of the oldest entry (0 until the ring is full)
        self.allowed = 0
        self.blocked = 0

    def hit(self) -> Decision:
        """One request arrived now: admit it (and log it) or refuse it."""
        return self.hit_at(self._clock())

    def hit_at(self, now: float) -> Decision:
        """One request arrived at ``now`` (a reading of this window's clock)."""
        log = self._log
        if len(log) < self.limit:
            log.append(now)
            self.allowed += 1
            return ALLOWED
        # The ring holds the last `limit` admitted hits: a slot is free once
        # the oldest of them has left the window.
        oldest = log[self._oldest]
        if oldest <= now - self.window:
            log[self._oldest] = now
            self._oldest = (self._oldest + 1) % self.limit
            self.allowed += 1
            return ALLOWED
        self.blocked += 1
        # Clamped: a clock that stepped back must not ask for more than a window.
        return Decision(False, min(oldest + self.window - now, self.window))

    def is_idle(self, now: float) -> bool:
        """True when no admitted hit is inside the window: the state can be dropped."""
        # The newest entry sits just before the oldest (index -1 when unwrapped).
        return not self._log or self._log[self._oldest - 1] <= now - self.window


@dataclass(frozen=True, slots=True)
class Verdict:
    """The answer for one inbound message.

    ``allowed``: process it; otherwise drop it. ``notify``: send one
    ``Error RATE_LIMITED`` with ``retry_after_ms``. ``close``: close with 4008.
    """

    allowed: bool
    notify: bool = False
    close: bool = False
    retry_after_ms: int = 0


PASS = Verdict(True)  # shared: the hot path allocates nothing


class MessageRateLimiter:
    """Messages per connection: ``limit`` per ``window`` s; persistent excess closes.

    Two notions of window, on purpose:

    * **Admission** uses a :class:`SlidingWindow`: a message is dropped when
      ``limit`` messages were already admitted in the last ``window`` seconds.
    * **Strikes** use fixed, consecutive windows ``[origin + k*window,
      origin + (k+1)*window)``, where ``origin`` is the clock reading when the
      limiter was made (the connection's join). A fixed window is *over* when
      at least one message in it was dropped. The first drop in a window sets
      ``notify`` (so at most one ``Error`` per window); the drop that makes
      ``strikes`` consecutive windows over sets ``close``. A window without a
      drop resets the count. Once ``close`` was answered, every later message
      is dropped with ``close`` set and no ``notify``.

    Memory: one :class:`SlidingWindow` (at most ``limit`` floats) and four
    numbers per connection.
    """

    __slots__ = (
        "_clock",
        "_closed",
        "_last_over",
        "_origin",
        "_sliding",
        "strike_limit",
        "strikes",
    )

    def __init__(
        self,
        limit: int = 100,
        window: float = 1.0,
        strikes: int = 3,
        *,
        clock: Clock = time.monotonic,
    ) -> None:
        if strikes < 1:
            raise ValueError(f"strikes must be at least 1, got {strikes!r}")
        self._sliding = SlidingWindow(limit, window, clock=clock)
        self._clock = clock
        self._origin = clock()
        self.strike_limit = strikes
        self.strikes = 0  # consecutive fixed windows over the limit, up to the current one
        self._last_over = -2  # index of the last fixed window with a drop
        self._closed = False

    @property
    def allowed(self) -> int:
        """Messages admitted so far."""
        return self._sliding.allowed

    @property
    def blocked(self) -> int:
        """Messages dropped so far."""
        return self._sliding.blocked

    def check(self) -> Verdict:
        """One inbound message arrived: admit, drop, drop and notify, or close."""
        sliding = self._sliding
        now = self._clock()
        decision = sliding.hit_at(now)
        if decision.allowed and not self._closed:
            return PASS
        retry_ms = decision.retry_after_ms
        if self._closed:
            return Verdict(False, close=True, retry_after_ms=retry_ms)
        index = math.floor((now - self._origin) / sliding.window)
        if index == self._last_over:
            return Verdict(False, retry_after_ms=retry_ms)
        self.strikes = self.strikes + 1 if index == self._last_over + 1 else 1
        self._last_over = index
        self._closed = self.strikes >= self.strike_limit
        return Verdict(False, notify=True, close=self._closed, retry_after_ms=retry_ms)


class ConnectionAttemptLimiter(Protocol):
    """Connection attempts keyed by client address (see :func:`attempt_key`)."""

    def hit(self, key: str) -> Decision:
        """One connection attempt from ``key`` arrived now."""
        ...


class InProcessAttemptLimiter:
    """``limit`` attempts per ``window`` s per key, for one process (no Redis).

    Keys come from clients, so the map is bounded: keys whose window holds no
    admitted attempt are dropped as the least recently used end of the map is
    reached, and past ``max_keys`` the least recently used key is evicted (its
    window forgotten). Cost: at most ``max_keys * limit`` floats, about 50 MB
    for 100,000 keys at the default 60 per window; an attacker needs
    ``max_keys`` distinct addresses inside one window to make it forget one.
    """

    __slots__ = (
        "_clock",
        "_windows",
        "allowed",
        "blocked",
        "evicted",
        "limit",
        "max_keys",
        "window",
    )

    def __init__(
        self,
        limit: int,
        window: float,
        *,
        clock: Clock = time.monotonic,
        max_keys: int = 100_000,
    ) -> None:
        _check_limits(limit, window)
        if max_keys < 1:
            raise ValueError(f"max_keys must be at least 1, got {max_keys!r}")
        self.limit = limit
        self.window = window
        self.max_keys = max_keys
        self._clock = clock
        self._windows: OrderedDict[str, SlidingWindow] = OrderedDict()  # oldest use first
        self.allowed = 0
        self.blocked = 0
        self.evicted = 0  # live windows dropped to stay under max_keys

    def __len__(self) -> int:
        return len(self._windows)

    def hit(self, key: str) -> Decision:
        """One connection attempt from ``key`` arrived now."""
        now = self._clock()
        windows = self._windows
        # Windows are in order of last use, so idle ones gather at the front;
        # each is dropped once, so this costs O(1) per hit amortised.
        while windows:
            first = next(iter(windows.values()))
            if not first.is_idle(now):
                break
            windows.popitem(last=False)
        window = windows.get(key)
        if window is None:
            if len(windows) >= self.max_keys:
                windows.popitem(last=False)
                self.evicted += 1
            window = windows[key] = SlidingWindow(self.limit, self.window, clock=self._clock)
        else:
            windows.move_to_end(key)
        decision = window.hit_at(now)
        if decision.allowed:
            self.allowed += 1
        else:
            self.blocked += 1
        return decision


def attempt_key(address: str) -> str:
    """The rate-limit key of a client address: IPv4 as is, IPv6 by its /64 network.

    Anything that is not an IP address (a unix socket path, ``"unknown"``) is
    returned as is; callers pass addresses from the server, not from clients.
    """
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:  # ::ffff:a.b.c.d is an IPv4 client
            return str(ip.ipv4_mapped)
        return str(ipaddress.ip_network(f"{ip}/{IPV6_PREFIX}", strict=False))
    return str(ip)
