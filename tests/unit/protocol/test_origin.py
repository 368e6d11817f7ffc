"""Origin policy: ALLOWED_HOSTS patterns, listed origins, missing Origin."""

from __future__ import annotations

import pytest

from presence.protocol.origin import OriginPolicy

POLICY = OriginPolicy.of(
    ["localhost", "127.0.0.1", ".example.com", "[::1]"], ["https://partner.test:8443"]
)


@pytest.mark.parametrize(
    ("origin", "allowed"),
    [
        ("http://localhost:8083", True),
        ("http://127.0.0.1", True),
        ("http://[::1]:8083", True),
        ("https://example.com", True),
        ("https://app.example.com", True),
        ("https://APP.Example.com/", True),
        ("https://partner.test:8443", True),
        ("https://partner.test", False),  # a listed origin matches whole, port included
        ("https://evil.test", False),
        ("https://example.com.evil.test", False),
        ("https://notexample.com", False),
        ("null", False),
        ("file://", False),
        ("chrome-extension://abc", False),
        ("http://[bad", False),
    ],
)
def test_browser_origins(origin: str, allowed: bool) -> None:
    assert POLICY.allows(origin) is allowed


def test_a_client_without_origin_is_allowed_by_default() -> None:
    assert POLICY.allows(None) is True


def test_a_client_without_origin_can_be_refused() -> None:
    strict = OriginPolicy.of(["localhost"], [], allow_missing=False)

    assert strict.allows(None) is False
    assert strict.allows("http://localhost") is True


def test_star_in_allowed_hosts_allows_any_http_origin() -> None:
    assert OriginPolicy.of(["*"], []).allows("https://anything.test") is True


def test_star_in_allowed_origins_allows_any_origin() -> None:
    assert OriginPolicy.of([], ["*"]).allows("https://anything.test") is True
