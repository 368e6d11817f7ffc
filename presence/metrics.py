"""Every Prometheus metric of presence, and nowhere else.

Labels take bounded values only: never a user, client or room id.
"""

from __future__ import annotations

import logging

from prometheus_client import Counter

DEV_AUTH_CONNECTIONS = Counter(
    "presence_dev_auth_connections",
    "Connections accepted on a bare user_id (development mode).",
)
RATE_LIMIT_DECISIONS = Counter(
    "presence_rate_limit_decisions",
    "Rate-limiter decisions, by limiter (connection, message) and outcome (allowed, blocked).",
    ["limiter", "outcome"],
)


# Label children resolved once: the message limiter counts on the hot path.
_DECISIONS = {
    (limiter, allowed): RATE_LIMIT_DECISIONS.labels(
        limiter=limiter, outcome="allowed" if allowed else "blocked"
    )
    for limiter in ("connection", "message")
    for allowed in (True, False)
}


def count_rate_decision(limiter: str, allowed: bool) -> None:
    """Count one decision of the ``connection`` or ``message`` limiter."""
    _DECISIONS[limiter, allowed].inc()


CHANNEL_LAYER_FAILURES = Counter(
    "presence_channel_layer_failures",
    "Failed channel-layer or registry operations (Redis), by operation.",
    ["operation"],
)
CHANNEL_LAYER_DROPS = Counter(
    "presence_channel_layer_drops",
    "Messages the channel layer dropped, by reason (over_capacity: the core layer's full queue).",
    ["reason"],
)


def count_layer_failure(operation: str) -> None:
    """Count one failed ``group_send``, ``group_add``, ``receive``, ``registry``, ... call."""
    CHANNEL_LAYER_FAILURES.labels(operation=operation).inc()


class OverCapacityCounter(logging.Filter):
    """Counts the core Redis layer's over-capacity drops, which it only logs at INFO."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Count the drops a record reports; let the record through."""
        if "over capacity" in str(record.msg) and record.args:
            dropped = record.args[0] if isinstance(record.args, tuple) else 0
            if isinstance(dropped, int) and dropped > 0:
                CHANNEL_LAYER_DROPS.labels(reason="over_capacity").inc(dropped)
        return True


def count_core_layer_drops() -> None:
    """Make the core layer's drop log line reach the counter (idempotent)."""
    layer_logger = logging.getLogger("channels_redis.core")
    if not any(isinstance(f, OverCapacityCounter) for f in layer_logger.filters):
        layer_logger.addFilter(OverCapacityCounter())
    if layer_logger.getEffectiveLevel() > logging.INFO:
        layer_logger.setLevel(logging.INFO)
