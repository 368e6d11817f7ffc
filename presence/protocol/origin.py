"""Which browser origins may open a socket (PROTOCOL.md section 4).

Browsers send ``Origin``; native XR apps and bots usually do not. A browser
origin is allowed when its host matches ``ALLOWED_HOSTS`` (Django's patterns:
``host``, ``.domain`` for the domain and its subdomains, ``*``) or when the
whole origin is listed in ``PRESENCE_ALLOWED_ORIGINS``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit


def _host_matches(host: str, pattern: str) -> bool:
    pattern = pattern.lower()
    if pattern == "*":
        return True
    if pattern.startswith("."):
        return host == pattern[1:] or host.endswith(pattern)
    return host == pattern.strip("[]") or host == pattern


@dataclass(frozen=True, slots=True)
class OriginPolicy:
    """Allowed hosts and origins, and whether a missing ``Origin`` is fine."""

    allowed_hosts: tuple[str, ...] = ()
    allowed_origins: tuple[str, ...] = ()
    allow_missing: bool = True

    @classmethod
    def of(
        cls, hosts: Iterable[str], origins: Iterable[str], *, allow_missing: bool = True
    ) -> OriginPolicy:
        """Build a policy, normalising listed origins (lower case, no trailing slash)."""
        return cls(
            tuple(h.lower() for h in hosts),
            tuple(o.lower().rstrip("/") for o in origins),
            allow_missing,
        )

    def allows(self, origin: str | None) -> bool:
        """Is a handshake carrying this ``Origin`` header (or none) allowed?"""
        if origin is None or origin == "":
            return self.allow_missing
        origin = origin.strip().lower().rstrip("/")
        if "*" in self.allowed_origins or origin in self.allowed_origins:
            return True
        try:
            parts = urlsplit(origin)
            host = parts.hostname
        except ValueError:
            return False
        if parts.scheme not in ("http", "https") or not host:
            return False
        return any(_host_matches(host, pattern) for pattern in self.allowed_hosts)
