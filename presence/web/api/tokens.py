"""``POST /api/token/`` and ``/api/token/refresh/``: simplejwt's views, throttled.

Wrong passwords are answered 401 until the address or the username runs out
of its rate, then 429 with ``Retry-After`` (presence/web/api/throttles.py).
"""

from __future__ import annotations

from rest_framework_simplejwt.views import TokenObtainPairView, TokenRefreshView

from presence.web.api.throttles import (
    TokenPerIPThrottle,
    TokenPerUsernameThrottle,
    TokenRefreshPerIPThrottle,
)


class ThrottledTokenObtainPairView(TokenObtainPairView):
    """A token pair for a username and password, a limited number of times."""

    throttle_classes = (TokenPerIPThrottle, TokenPerUsernameThrottle)


class ThrottledTokenRefreshView(TokenRefreshView):
    """A new access token for a refresh token, a limited number of times per address."""

    throttle_classes = (TokenRefreshPerIPThrottle,)
