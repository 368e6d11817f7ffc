"""Throttles of the token endpoints: password guesses per address and per username.

Django REST framework's sliding-window throttle (``SimpleRateThrottle``),
with three changes:

* the client address is :func:`~presence.transport.ratelimits.client_ip`:
  ``X-Forwarded-For`` counts only from ``TRUSTED_PROXIES``, whereas DRF's own
  ``get_ident`` believes the header from anyone when ``NUM_PROXIES`` is unset;
* counts live in the ``throttle`` cache, in Redis with ``REDIS_URL`` (every
  instance sees the same counts), in the process otherwise;
* the rate is read from ``REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"]`` on every
  request rather than once at import, so a changed setting applies at once.

A Redis that does not answer refuses the request with 503 rather than letting
unlimited guesses through. Like every DRF throttle the window is read, then
written: two requests landing on two instances at the same instant may both
pass, so a parallel burst can exceed the rate by the number of requests in
flight.
"""

from __future__ import annotations

import hashlib
from typing import Any

from django.contrib.auth import get_user_model
from django.core.cache import BaseCache, caches
from django.core.exceptions import ImproperlyConfigured
from redis.exceptions import RedisError
from rest_framework import status
from rest_framework.exceptions import APIException, ParseError
from rest_framework.request import Request
from rest_framework.settings import api_settings
from rest_framework.throttling import SimpleRateThrottle
from rest_framework.views import APIView

from presence.conf import presence_settings
from presence.transport.ratelimits import meta_client_ip

CACHE_ALIAS = "throttle"
MAX_USERNAME_CHARS = 256  # longer input is cut before hashing: it bounds the work


class ThrottleUnavailable(APIException):
    """The throttle's store (Redis) did not answer: no guess goes unlimited."""

    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    default_detail = "Sign-in is unavailable for a moment; try again shortly."
    default_code = "throttle_unavailable"


class PresenceRateThrottle(SimpleRateThrottle):
    """``SimpleRateThrottle`` keyed on our client address, in the ``throttle`` cache."""

    @property
    def cache(self) -> BaseCache:  # type: ignore[override]
        """The ``throttle`` cache as configured now (settings may change in tests)."""
        return caches[CACHE_ALIAS]

    def get_rate(self) -> str | None:
        """This scope's rate from the current ``REST_FRAMEWORK`` settings."""
        rates = api_settings.DEFAULT_THROTTLE_RATES
        if self.scope not in rates:
            raise ImproperlyConfigured(f"no throttle rate set for the {self.scope!r} scope")
        # The stubs type the rates as numbers; DRF's are strings such as "10/min".
        rate: str | None = rates[self.scope]  # type: ignore[assignment]
        return rate

    def get_ident(self, request: Request) -> str:
        """The client's address; ``X-Forwarded-For`` only from ``TRUSTED_PROXIES``."""
        trusted = frozenset(presence_settings().TRUSTED_PROXIES)
        return meta_client_ip(request.META, trusted)

    def allow_request(self, request: Request, view: APIView) -> bool:
        """DRF's check; 503 when the store does not answer."""
        try:
            return bool(super().allow_request(request, view))
        except (RedisError, OSError) as exc:
            raise ThrottleUnavailable from exc

    def cache_key_for(self, ident: str) -> str:
        """The cache key of ``ident`` in this scope."""
        return str(self.cache_format % {"scope": self.scope, "ident": ident})


class TokenPerIPThrottle(PresenceRateThrottle):
    """``POST /api/token/`` per client address (``API_TOKEN_RATE_PER_IP``)."""

    scope = "token_ip"

    def get_cache_key(self, request: Request, view: APIView) -> str:
        """One window per client address."""
        return self.cache_key_for(self.get_ident(request))


class TokenPerUsernameThrottle(PresenceRateThrottle):
    """``POST /api/token/`` per username asked for, from any address (``..._PER_USERNAME``)."""

    scope = "token_username"

    def get_cache_key(self, request: Request, view: APIView) -> str | None:
        """One window per username (hashed: keys stay short and hold no names)."""
        try:
            data: Any = request.data
        except ParseError:
            return None  # the view answers 400; the address throttle still counted it
        username = data.get(get_user_model().USERNAME_FIELD) if hasattr(data, "get") else None
        # As the serializer's CharField reads it: a JSON number names the same
        # user as its digits ({"username": 424242} signs in "424242").
        if isinstance(username, int | float) and not isinstance(username, bool):
            username = str(username)
        if not isinstance(username, str) or not username.strip():
            return None
        # Case and surrounding spaces do not make a new username to guess against.
        normalized = username.strip().lower()[:MAX_USERNAME_CHARS]
        return self.cache_key_for(hashlib.sha256(normalized.encode()).hexdigest()[:32])


class TokenRefreshPerIPThrottle(PresenceRateThrottle):
    """``POST /api/token/refresh/`` per client address (``API_TOKEN_REFRESH_RATE_PER_IP``)."""

    scope = "token_refresh_ip"

    def get_cache_key(self, request: Request, view: APIView) -> str:
        """One window per client address."""
        return self.cache_key_for(self.get_ident(request))
