"""What the browser page at ``/`` needs besides the WebSocket.

* ``POST /api/token/session/``: an access token for the user signed in to
  Django (session cookie), so the page joins with ``DEBUG`` off without asking
  for the password again. Session authentication only, so Django's CSRF check
  applies (the page sends ``X-CSRFToken``); a cross-site form cannot mint
  tokens. Throttled per user. Body (optional): ``{"room": ROOM_ID}`` binds the
  token to one room (the ``room`` claim of PROTOCOL.md section 4.1).
  Answer: ``{"access": JWT, "expires_in": seconds}``.
* ``GET /api/public/rooms/``: the rooms with members and how many, for a
  room list anyone may read; no names or ids of members. Throttled per client
  address; at most ``PUBLIC_ROOMS_LIMIT`` rooms, fullest first. Answer:
  ``{"rooms": [{"room_id": str, "members": int}], "timestamp": ISO 8601}``.
  Separate from the staff-only ``/ws/stats`` and ``/api/rooms/`` (whose ``rooms/<id>/``
  would clash with a room named ``public``).
"""

from __future__ import annotations

from typing import Any, NoReturn

from django.contrib.auth.models import AnonymousUser
from django.core.exceptions import ValidationError
from drf_spectacular.authentication import SessionScheme
from drf_spectacular.utils import OpenApiResponse, extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.authentication import SessionAuthentication
from rest_framework.exceptions import NotAuthenticated
from rest_framework.exceptions import ValidationError as BadInput
from rest_framework.permissions import AllowAny, IsAuthenticated
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView
from rest_framework_simplejwt.settings import api_settings
from rest_framework_simplejwt.tokens import AccessToken

from presence.models import room_id_validator
from presence.web.api.stats import _on_server_loop, stats_cluster
from presence.web.api.throttles import PresenceRateThrottle

PUBLIC_ROOMS_LIMIT = 100  # rooms in one answer: bounds the body whatever the cluster holds


class SessionTokenPerUserThrottle(PresenceRateThrottle):
    """``POST /api/token/session/`` per signed-in user (``API_SESSION_TOKEN_RATE``)."""

    scope = "session_token_user"

    def get_cache_key(self, request: Request, view: APIView) -> str:
        """One window per user."""
        return self.cache_key_for(str(request.user.pk))


class PublicRoomsPerIPThrottle(PresenceRateThrottle):
    """``GET /api/public/rooms/`` per client address (``API_PUBLIC_ROOMS_RATE_PER_IP``)."""

    scope = "public_rooms_ip"

    def get_cache_key(self, request: Request, view: APIView) -> str:
        """One window per client address."""
        return self.cache_key_for(self.get_ident(request))


class DjangoSessionAuthentication(SessionAuthentication):
    """The session cookie (CSRF-checked); without one the answer is 401, as elsewhere in the API."""

    def authenticate_header(self, request: Request) -> str:
        """``WWW-Authenticate`` of a 401: sign in to Django (DRF answers 403 without it)."""
        return 'Session realm="graphwiz"'


class DjangoSessionScheme(SessionScheme):  # type: ignore[no-untyped-call]  # drf-spectacular's registry
    """The OpenAPI schema describes it as Django's session cookie (drf-spectacular)."""

    target_class = "presence.web.api.page.DjangoSessionAuthentication"
    name = "djangoSession"  # DRF's own session authentication is "cookieAuth"


SIGN_IN_FIRST = (
    "sign in to Django first: this endpoint gives tokens to the user of the session "
    "cookie; without a session, POST username and password to /api/token/"
)


class SessionTokenView(APIView):
    """An access token for the session's user (CSRF-checked, same origin)."""

    authentication_classes = [DjangoSessionAuthentication]  # enforces CSRF
    permission_classes = [IsAuthenticated]
    throttle_classes = [SessionTokenPerUserThrottle]
    renderer_classes = [JSONRenderer]

    def permission_denied(
        self, request: Request, message: str | None = None, code: str | None = None
    ) -> NoReturn:
        """No session: 401 saying how to get one (a refused CSRF check stays 403)."""
        if not request.successful_authenticator:
            raise NotAuthenticated(SIGN_IN_FIRST)
        super().permission_denied(request, message, code)

    @extend_schema(
        request=inline_serializer(
            "SessionTokenRequest", {"room": serializers.CharField(required=False)}
        ),
        responses={
            200: inline_serializer(
                "SessionToken",
                {"access": serializers.CharField(), "expires_in": serializers.IntegerField()},
            ),
            400: OpenApiResponse(description="a room id that breaks the rule"),
            401: OpenApiResponse(description="no Django session"),
            403: OpenApiResponse(description="the CSRF check failed"),
            429: OpenApiResponse(description="throttled"),
        },
    )
    def post(self, request: Request) -> Response:
        """Answer ``{"access", "expires_in"}``; 400 for a room id that breaks the rule."""
        user = request.user
        assert not isinstance(user, AnonymousUser)  # IsAuthenticated let only users in
        token = AccessToken.for_user(user)
        room = request.data.get("room") if hasattr(request.data, "get") else None
        if room is not None:
            if not isinstance(room, str):
                raise BadInput({"room": "must be a room id string"})
            try:
                room_id_validator(room)
            except ValidationError as exc:
                raise BadInput({"room": exc.messages[0]}) from exc
            token["room"] = room
        lifetime = int(api_settings.ACCESS_TOKEN_LIFETIME.total_seconds())
        body: dict[str, Any] = {"access": str(token), "expires_in": lifetime}
        return Response(body, status=status.HTTP_200_OK)


class PublicRoomsView(APIView):
    """The rooms with members, fullest first, for anyone (no member names)."""

    authentication_classes: list[type] = []
    permission_classes = [AllowAny]
    throttle_classes = [PublicRoomsPerIPThrottle]
    renderer_classes = [JSONRenderer]

    @extend_schema(
        responses={
            200: inline_serializer(
                "PublicRooms",
                {
                    "rooms": inline_serializer(
                        "PublicRoom",
                        {"room_id": serializers.CharField(), "members": serializers.IntegerField()},
                        many=True,
                    ),
                    "timestamp": serializers.DateTimeField(),
                },
            ),
            429: OpenApiResponse(description="throttled"),
        },
    )
    def get(self, request: Request) -> Response:
        """Answer ``{"rooms": [{"room_id", "members"}], "timestamp"}``."""
        stats = _on_server_loop(stats_cluster)
        rooms = sorted(stats["rooms"], key=lambda r: (-r["connection_count"], r["room_id"]))
        return Response(
            {
                "rooms": [
                    {"room_id": r["room_id"], "members": r["connection_count"]}
                    for r in rooms[:PUBLIC_ROOMS_LIMIT]
                ],
                "timestamp": stats["timestamp"],
            }
        )
