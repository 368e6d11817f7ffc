"""Typed, validated view of the ``PRESENCE`` settings dict.

Like Django REST framework's settings: one namespaced dict, a ``DEFAULTS``
table, unknown keys rejected, the value cached and rebuilt on
``setting_changed`` (so tests can use ``override_settings``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from functools import cache
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.dispatch import receiver

from presence.protocol.frameguard import FrameLimits
from presence.protocol.validation import FieldLimits
from presence.transport.http_head import HEAD_TIMEOUT_SECONDS
from presence.transport.ratelimits import trusted_networks


@dataclass(frozen=True, slots=True)
class PresenceSettings:
    """Every presence limit and switch, with its default (PROTOCOL.md section 8)."""

    RATE_LIMIT_MAX_REQUESTS: int = 60
    RATE_LIMIT_WINDOW_SECONDS: float = 60.0
    MESSAGE_QUEUE_SIZE: int = 1000  # reliable messages kept per session (replay, unacked)
    MESSAGE_RETRY_INTERVAL: float = 5.0  # re-send an unacked reliable message after (s)
    MESSAGE_MAX_RETRIES: int = 3  # re-sends before close 4009
    # --- resume (PROTOCOL.md section 6)
    PRESENCE_RESUME_WINDOW_SECONDS: float = 60.0  # a session outlives its socket this long
    PRESENCE_LEAVE_GRACE_SECONDS: float = 10.0  # a dropped member stays present this long
    METRICS_SAMPLE_SIZE: int = 1000
    LATENCY_TRACKING_ENABLED: bool = True
    REDIS_CHANNEL_PREFIX: str = "graphwiz"
    BAD_FRAME_LIMIT: int = 10  # consecutive undecodable/invalid frames before 4007
    MAX_FRAME_BYTES: int = 64 * 1024
    VOLATILE_MERGE_LIMIT: int = 4096  # volatile messages kept for a reader that falls behind
    VOLATILE_MERGE_BYTES: int = 1 << 20  # ... and their size in bytes
    HEARTBEAT_INTERVAL_MS: int = 0  # advertised in ServerHello; 0 = no heartbeat asked
    TICK_HZ: float = 20.0  # pose fan-out ticks per second per room; 0 = send at once
    # Ticks per second while the process has CPU to spare (presence/cluster/tick_control.py):
    # the tick shortens toward this when idle and grows back to TICK_HZ under load;
    # at or below TICK_HZ the tick stays fixed.
    TICK_FAST_HZ: float = 80.0
    TICK_POSES_PER_ENTITY: int = 2  # newest poses of one entity kept per tick
    # --- at the door (PROTOCOL.md sections 4 and 8)
    DEV_AUTH: bool = False  # accept a bare user_id (development mode)
    AUTH_TIMEOUT_SECONDS: float = 5.0  # wait for a ClientHello token, then 4408
    ALLOWED_ORIGINS: tuple[str, ...] = ()  # browser origins beyond ALLOWED_HOSTS
    ALLOW_MISSING_ORIGIN: bool = True  # native apps and bots send no Origin
    TRUSTED_PROXIES: tuple[str, ...] = ()  # peers whose X-Forwarded-For is believed
    MESSAGE_RATE_LIMIT: int = 100  # messages per connection per window
    MESSAGE_RATE_WINDOW_SECONDS: float = 1.0
    MESSAGE_RATE_STRIKES: int = 3  # consecutive windows over the limit before 4008
    REDIS_URL: str = ""  # shared registry and rate-limit windows when set
    # Issue 14: a socket that negotiated nothing is joined once its first frame
    # says whether it is a legacy GraphWiz-XR client, or after this long; 0 = no
    # sniffing (only ?protocol=legacy picks the legacy wire).
    LEGACY_DETECT_SECONDS: float = 0.5
    # --- below the application: frames the server's WebSocket layer handles
    WS_CONTROL_FRAME_LIMIT: int = 30  # pings and pongs per window, then close 4008
    WS_CONTROL_FRAME_WINDOW_SECONDS: float = 10.0
    WS_MAX_FRAGMENTS: int = 128  # frames of one message, then close 1009
    # ... and the HTTP layer: a request head not whole in time is answered 408
    HTTP_HEAD_TIMEOUT_SECONDS: float = HEAD_TIMEOUT_SECONDS
    # --- many instances on one Redis (README "Scaling out")
    REGISTRY_LEASE_SECONDS: float = 15.0  # an instance silent this long is swept
    REGISTRY_HEARTBEAT_SECONDS: float = 5.0  # heartbeat and sweep period
    POSE_SYNC_HZ: float = 4.0  # pose writes to the registry per second, at most
    # --- accounts (presence/cluster/account_watch.py)
    ACCOUNT_CHECK_SECONDS: float = 5.0  # re-read the accounts of open sockets this often
    # --- the server-side API, signals, chat history (README "Your code and rooms")
    CHAT_HISTORY: int = 50  # chat lines a joiner gets in initial_state.recent_chat; 0 = off
    SIGNAL_QUEUE_SIZE: int = 10_000  # events waiting for receivers, then dropped (counted)
    SIGNAL_RECEIVER_TIMEOUT_SECONDS: float = 5.0  # a receiver slower than this is given up on
    API_COMMAND_TIMEOUT_SECONDS: float = 5.0  # wait for the instance hosting a room to answer
    # --- metrics (README "Metrics")
    RTT_PROBE_SECONDS: float = 30.0  # server Ping to every connection this often; 0 = off
    # Who may read /metrics: loopback and the private ranges (graphwiz/settings.py,
    # deploy/nginx.conf); "0.0.0.0/0,::/0" opens them to anyone, () to no one.
    METRICS_ALLOWED_NETWORKS: tuple[str, ...] = (
        "127.0.0.0/8",
        "::1/128",
        "10.0.0.0/8",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "fc00::/7",
    )

    @property
    def field_limits(self) -> FieldLimits:
        """Bounds on client-supplied fields."""
        return FieldLimits(frame_bytes=self.MAX_FRAME_BYTES)

    @property
    def frame_limits(self) -> FrameLimits:
        """Bounds on the frames the WebSocket layer handles below the consumer."""
        return FrameLimits(
            control_frames=self.WS_CONTROL_FRAME_LIMIT,
            control_window=self.WS_CONTROL_FRAME_WINDOW_SECONDS,
            fragments=self.WS_MAX_FRAGMENTS,
        )


DEFAULTS: dict[str, Any] = {f.name: f.default for f in fields(PresenceSettings)}


def build(overrides: dict[str, Any]) -> PresenceSettings:
    """Validate ``overrides`` against ``DEFAULTS`` and return the settings."""
    unknown = sorted(set(overrides) - set(DEFAULTS))
    if unknown:
        raise ImproperlyConfigured(f"Unknown PRESENCE setting(s): {', '.join(unknown)}")
    overrides = {
        name: tuple(value)
        if isinstance(DEFAULTS.get(name), tuple) and isinstance(value, list)
        else value
        for name, value in overrides.items()
    }
    for name, value in overrides.items():
        expected = type(DEFAULTS[name])
        ok = isinstance(value, expected) or (expected is float and isinstance(value, int))
        if not ok or isinstance(value, bool) != (expected is bool):
            raise ImproperlyConfigured(
                f"PRESENCE[{name!r}] must be {expected.__name__}, got {value!r}"
            )
        if expected in (int, float):
            _check_number(name, value)
    history = overrides.get("CHAT_HISTORY", DEFAULTS["CHAT_HISTORY"])
    if history > MAX_CHAT_HISTORY:
        raise ImproperlyConfigured(
            f"PRESENCE['CHAT_HISTORY'] must be 0 to {MAX_CHAT_HISTORY}, got {history!r}"
        )
    lease = overrides.get("REGISTRY_LEASE_SECONDS", DEFAULTS["REGISTRY_LEASE_SECONDS"])
    heartbeat = overrides.get("REGISTRY_HEARTBEAT_SECONDS", DEFAULTS["REGISTRY_HEARTBEAT_SECONDS"])
    if heartbeat >= lease:
        raise ImproperlyConfigured(
            f"PRESENCE['REGISTRY_HEARTBEAT_SECONDS'] ({heartbeat}) must be shorter than "
            f"PRESENCE['REGISTRY_LEASE_SECONDS'] ({lease})"
        )
    window = overrides.get(
        "PRESENCE_RESUME_WINDOW_SECONDS", DEFAULTS["PRESENCE_RESUME_WINDOW_SECONDS"]
    )
    grace = overrides.get("PRESENCE_LEAVE_GRACE_SECONDS", DEFAULTS["PRESENCE_LEAVE_GRACE_SECONDS"])
    if grace > window:
        raise ImproperlyConfigured(
            f"PRESENCE['PRESENCE_LEAVE_GRACE_SECONDS'] ({grace}) must not be longer than "
            f"PRESENCE['PRESENCE_RESUME_WINDOW_SECONDS'] ({window})"
        )
    try:
        trusted_networks(frozenset(overrides.get("TRUSTED_PROXIES", ())))
    except ValueError as bad:
        raise ImproperlyConfigured(f"PRESENCE['TRUSTED_PROXIES']: {bad}") from None
    try:
        trusted_networks(frozenset(overrides.get("METRICS_ALLOWED_NETWORKS", ())))
    except ValueError as bad:
        raise ImproperlyConfigured(f"PRESENCE['METRICS_ALLOWED_NETWORKS']: {bad}") from None
    return PresenceSettings(**overrides)


# 0 = off. MESSAGE_MAX_RETRIES 0: no re-sends, the first unacked interval closes with 4009.
_MAY_BE_ZERO = {
    "HEARTBEAT_INTERVAL_MS",
    "TICK_HZ",
    "TICK_FAST_HZ",
    "RTT_PROBE_SECONDS",
    "CHAT_HISTORY",
    "LEGACY_DETECT_SECONDS",
    "MESSAGE_MAX_RETRIES",
}
# A joiner's ServerHello carries the history: at 2,000 characters a line, 500
# lines are up to 4 MB, the most a hello should ever weigh.
MAX_CHAT_HISTORY = 500
_UINT32_MAX = 0xFFFFFFFF


def _check_number(name: str, value: float) -> None:
    if not math.isfinite(value):
        raise ImproperlyConfigured(f"PRESENCE[{name!r}] must be finite, got {value!r}")
    if name in _MAY_BE_ZERO:
        if not 0 <= value <= _UINT32_MAX:
            raise ImproperlyConfigured(
                f"PRESENCE[{name!r}] must be 0 to {_UINT32_MAX}, got {value!r}"
            )
    elif value <= 0:
        raise ImproperlyConfigured(f"PRESENCE[{name!r}] must be positive, got {value!r}")


@cache
def presence_settings() -> PresenceSettings:
    """The current presence settings (cached)."""
    return build(dict(getattr(settings, "PRESENCE", {})))


@receiver(setting_changed)
def _reload(setting: str, **kwargs: Any) -> None:
    if setting == "PRESENCE":
        presence_settings.cache_clear()
