"""Every Prometheus metric of presence, and nowhere else.

Labels take bounded values only: never a user, client or room id.
"""

from __future__ import annotations

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
