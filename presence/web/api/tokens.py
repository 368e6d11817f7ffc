"""``POST /api/token/`` and ``/api/token/refresh/``: simplejwt's views, throttled.

Wrong passwords are answered 401 until the address or the username runs out
of its rate, then 429 with ``Retry-After`` (presence/web/api/throttles.py).
A refresh token outlives no account change an access token would not: one
whose user was deleted or disabled, or whose password changed since it was
issued, is refused with 401 (simplejwt alone answers 500 for a deleted user
and mints access tokens from a stale password's refresh token).
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from rest_framework.exceptions import AuthenticationFailed
from rest_framework_simplejwt.exceptions import InvalidToken, TokenError
from rest_framework_simplejwt.serializers import TokenRefreshSerializer
from rest_framework_simplejwt.settings import api_settings
from rest_framework_simplejwt.tokens import RefreshToken
from rest_framework_simplejwt.views import TokenObtainPairView, TokenRefreshView

from presence.accounts import ACCOUNT_DELETED, password_stamp
from presence.auth import ACCOUNT_DISABLED, PASSWORD_CHANGED
from presence.web.api.throttles import (
    TokenPerIPThrottle,
    TokenPerUsernameThrottle,
    TokenRefreshPerIPThrottle,
)


class AccountAwareRefreshSerializer(TokenRefreshSerializer):
    """simplejwt's refresh, refused once the account changed under the token."""

    def validate(self, attrs: dict[str, Any]) -> dict[str, str]:
        """Check the refresh token's account, then refresh as simplejwt does."""
        try:
            payload = RefreshToken(attrs["refresh"]).payload
        except TokenError as exc:
            raise InvalidToken(exc.args[0]) from None
        user_id = payload.get(api_settings.USER_ID_CLAIM)
        user = get_user_model().objects.filter(**{api_settings.USER_ID_FIELD: user_id}).first()
        if user is None:
            raise AuthenticationFailed(ACCOUNT_DELETED, "account_deleted")
        if not user.is_active:
            raise AuthenticationFailed(ACCOUNT_DISABLED, "account_disabled")
        if api_settings.CHECK_REVOKE_TOKEN and payload.get(
            api_settings.REVOKE_TOKEN_CLAIM
        ) != password_stamp(user.password):
            raise AuthenticationFailed(PASSWORD_CHANGED, "password_changed")
        return super().validate(attrs)


class ThrottledTokenObtainPairView(TokenObtainPairView):
    """A token pair for a username and password, a limited number of times."""

    throttle_classes = (TokenPerIPThrottle, TokenPerUsernameThrottle)


class ThrottledTokenRefreshView(TokenRefreshView):
    """A new access token for an unchanged account's refresh token, a limited number of times."""

    throttle_classes = (TokenRefreshPerIPThrottle,)
    serializer_class = AccountAwareRefreshSerializer
