"""``/api/rooms/``: rooms, chat history, announcements and moderation over HTTP.

Thin views over :mod:`presence.rooms`; who may call what is a Django
permission on :class:`~presence.models.Room` (README "Permissions"):

| endpoint | permission |
|---|---|
| ``GET /api/rooms/``, ``GET /api/rooms/{room_id}/``, ``GET .../chat/`` | ``presence.view_room`` |
| ``POST /api/rooms/{room_id}/messages/`` | ``presence.announce`` |
| ``POST .../kick/``, ``.../mute/``, ``.../lock/`` | ``presence.moderate_room`` |

Session or simplejwt Bearer token. No credentials (or a bad token): 401;
without the permission: 403; input the clients' rules refuse (a chat line
over 2,000 characters, ...): 400; nobody in the room or no such member: 404;
the room refused (an entity that exists): 409; Redis down: 503.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any, ClassVar

from asgiref.sync import async_to_sync
from django.core.validators import RegexValidator
from django.db.models import QuerySet
from drf_spectacular.utils import (
    OpenApiParameter,
    extend_schema,
    extend_schema_field,
    inline_serializer,
)
from rest_framework import serializers, status
from rest_framework.exceptions import APIException
from rest_framework.generics import ListAPIView
from rest_framework.pagination import CursorPagination
from rest_framework.parsers import JSONParser
from rest_framework.permissions import BasePermission
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from presence import rooms
from presence.models import ChatMessage
from presence.protocol.validation import FieldLimits

CHAT_PAGE_SIZE = 50
CHAT_PAGE_SIZE_MAX = 200  # ?page_size= beyond this is cut to it (README "HTTP API")
_LIMITS = FieldLimits()


# --- permissions -------------------------------------------------------------


class RoomPermission(BasePermission):
    """The view's ``required_permission`` (a Django permission such as ``presence.view_room``)."""

    message = "You lack the permission this endpoint needs."

    def has_permission(self, request: Request, view: APIView) -> bool:
        """True for an authenticated user holding the view's permission."""
        wanted: str = getattr(view, "required_permission", "")
        user = request.user
        if not (user and user.is_authenticated):
            return False
        self.message = f"This needs the permission {wanted}."
        return bool(user.has_perm(wanted))


# --- errors ------------------------------------------------------------------


class _Problem(APIException):
    def __init__(self, status_code: int, detail: str) -> None:
        self.status_code = status_code
        super().__init__(detail)


_STATUS = {
    rooms.InvalidRequest: status.HTTP_400_BAD_REQUEST,
    rooms.NotPresent: status.HTTP_404_NOT_FOUND,
    rooms.Refused: status.HTTP_409_CONFLICT,
    rooms.Unavailable: status.HTTP_503_SERVICE_UNAVAILABLE,
}


def _call(function: Any, *args: Any, **kwargs: Any) -> Any:
    """Run a presence.rooms coroutine function from this sync view; errors become statuses."""
    try:
        return async_to_sync(function)(*args, **kwargs)
    except rooms.RoomError as error:
        raise _Problem(_STATUS[type(error)], str(error)) from None


ErrorSerializer = inline_serializer("Error", {"detail": serializers.CharField()})
_ERRORS: dict[int, Any] = {code: ErrorSerializer for code in (400, 401, 403, 404, 409, 503)}


# --- serializers -------------------------------------------------------------


class RoomSummarySerializer(serializers.Serializer[Any]):
    room_id = serializers.CharField()
    member_count = serializers.IntegerField()
    host_client_id = serializers.CharField()


class MemberSerializer(serializers.Serializer[Any]):
    client_id = serializers.CharField()
    user_id = serializers.CharField()
    display_name = serializers.CharField(allow_blank=True)
    instance_id = serializers.CharField()
    muted = serializers.BooleanField()
    is_host = serializers.BooleanField()
    connected_at_ms = serializers.IntegerField(help_text="Milliseconds since the epoch.")


class EntitySerializer(serializers.Serializer[Any]):
    entity_id = serializers.CharField()
    template_id = serializers.CharField(allow_blank=True)
    owner_id = serializers.CharField(help_text='A member\'s client id, or "server".')
    components = serializers.DictField(child=serializers.CharField(allow_blank=True))
    position = serializers.ListField(
        child=serializers.FloatField(), allow_null=True, help_text="[x, y, z]"
    )
    rotation = serializers.ListField(
        child=serializers.FloatField(), allow_null=True, help_text="[x, y, z, w]"
    )


class RoomSerializer(serializers.Serializer[Any]):
    room_id = serializers.CharField()
    host_client_id = serializers.CharField(allow_blank=True)
    members = MemberSerializer(many=True)
    entities = EntitySerializer(many=True)
    message_count = serializers.IntegerField()
    locked = serializers.BooleanField()


class ChatLineSerializer(serializers.Serializer[Any]):
    id = serializers.IntegerField()
    room_id = serializers.CharField()
    from_client_id = serializers.CharField()
    sender_name = serializers.CharField(allow_blank=True)
    text = serializers.CharField()
    timestamp = serializers.IntegerField(help_text="Milliseconds since the epoch.")


class ChatHistorySerializer(serializers.ModelSerializer[ChatMessage]):
    from_client_id = serializers.CharField(source="sender_client_id")

    class Meta:
        model = ChatMessage
        fields = ("id", "from_client_id", "sender_name", "text", "sent_at")


# The request bodies: limits as the clients' (presence.protocol.validation);
# presence.rooms checks the rest (control characters, blank text) and says so.
# The schema states those rules as patterns where a pattern can (no C0/C1
# control characters but tab and newlines; names of plain characters).
_CONTROLS = "\\x00-\\x08\\x0B\\x0C\\x0E-\\x1F\\x7F-\\x9F"
FREE_TEXT_PATTERN = f"^[^{_CONTROLS}]*$"
CHAT_TEXT_PATTERN = f"^[^{_CONTROLS}]*[^\\s{_CONTROLS}][^{_CONTROLS}]*$"
CLIENT_ID_PATTERN = r"^[A-Za-z0-9._:-]+$"
# Any printable name is accepted but a client id or "server"; the schema names
# a subset that can never be one (a capital first).
SENDER_PATTERN = r"^[A-Z][A-Za-z0-9 ._'-]*$"


def _documented(
    pattern: str, max_length: int, *, enforce: bool = False, **field: Any
) -> serializers.CharField:
    """A JSON string field whose schema carries ``pattern``.

    The content checks are presence.rooms' (the same as for clients), unless
    ``enforce``: then the pattern itself is the rule (400 naming it). A number
    or any other JSON type is 400, never turned into text.
    """

    @extend_schema_field({"type": "string", "pattern": pattern, "maxLength": max_length})
    class Documented(serializers.CharField):
        def to_internal_value(self, data: Any) -> str:
            if not isinstance(data, str):
                raise serializers.ValidationError(
                    f"must be a JSON string, got {type(data).__name__}"
                )
            return str(super().to_internal_value(data))

    validators = [RegexValidator(pattern, f"must match {pattern}")] if enforce else []
    return Documented(max_length=max_length, trim_whitespace=False, validators=validators, **field)


class AnnouncementSerializer(serializers.Serializer[Any]):
    text = _documented(CHAT_TEXT_PATTERN, _LIMITS.chat_chars)
    sender = _documented(
        SENDER_PATTERN,
        rooms.MAX_SENDER_CHARS,
        required=False,
        default=rooms.SYSTEM_SENDER,
        help_text='Stamped as from_client_id; "system" when left out. The pattern shows '
        "names that are always accepted; any printable name is, unless it is a client id "
        'or "server".',
    )


class KickSerializer(serializers.Serializer[Any]):
    client_id = _documented(CLIENT_ID_PATTERN, _LIMITS.identifier, enforce=True)
    reason = _documented(
        FREE_TEXT_PATTERN, _LIMITS.reason, required=False, default="", allow_blank=True
    )
    ban_seconds = serializers.IntegerField(
        min_value=0, max_value=rooms.MAX_BAN_SECONDS, required=False, default=0
    )


class MuteSerializer(serializers.Serializer[Any]):
    client_id = _documented(CLIENT_ID_PATTERN, _LIMITS.identifier, enforce=True)
    muted = serializers.BooleanField(required=False, default=True)
    reason = _documented(
        FREE_TEXT_PATTERN, _LIMITS.reason, required=False, default="", allow_blank=True
    )


class LockSerializer(serializers.Serializer[Any]):
    locked = serializers.BooleanField(required=False, default=True)
    reason = _documented(
        FREE_TEXT_PATTERN, _LIMITS.reason, required=False, default="", allow_blank=True
    )


ROOM_ID_PARAMETER = OpenApiParameter(
    "room_id",
    str,
    OpenApiParameter.PATH,
    pattern=r"^[A-Za-z0-9._-]{1,64}$",
    description="1-64 characters of letters, digits, '.', '_' and '-' (else 400).",
)
DoneSerializer = inline_serializer(
    "Done", {"room_id": serializers.CharField(), "action": serializers.CharField()}
)


def _valid(serializer_class: type[serializers.Serializer[Any]], data: Any) -> dict[str, Any]:
    """The request body checked; every problem in one 400 ``detail``, field by field."""
    serializer = serializer_class(data=data)
    if not serializer.is_valid():
        problems = "; ".join(
            f"{name}: {' '.join(str(m) for m in messages)}"
            for name, messages in serializer.errors.items()
        )
        raise _Problem(status.HTTP_400_BAD_REQUEST, problems)
    return dict(serializer.validated_data)


# --- views -------------------------------------------------------------------


class _RoomView(APIView):
    permission_classes = (RoomPermission,)
    parser_classes = (JSONParser,)
    required_permission: ClassVar[str] = "presence.view_room"


class RoomListView(_RoomView):
    """Rooms with members now, on every instance."""

    @extend_schema(responses={200: RoomSummarySerializer(many=True), **_ERRORS})
    def get(self, request: Request) -> Response:
        """Every room with members, sorted by id (``presence.view_room``)."""
        listed = _call(rooms.aroom_list)
        return Response([asdict(r) for r in listed])


class RoomDetailView(_RoomView):
    """One room now."""

    @extend_schema(
        parameters=[ROOM_ID_PARAMETER],
        responses={200: RoomSerializer, **_ERRORS},
    )
    def get(self, request: Request, room_id: str) -> Response:
        """Members, entities, counters and lock of the room (``presence.view_room``)."""
        return Response(asdict(_call(rooms.aroom_state, room_id)))


class ChatCursor(CursorPagination):
    """Newest first; ``?page_size=`` up to ``CHAT_PAGE_SIZE_MAX``."""

    ordering = ("-sent_at", "-id")
    page_size = CHAT_PAGE_SIZE
    page_size_query_param = "page_size"
    max_page_size = CHAT_PAGE_SIZE_MAX
    invalid_cursor_message = (
        "no such page: the cursor is not one this API gave out; follow a page's "
        "next or previous link as it is, or leave cursor out for the newest page"
    )

    def get_page_size(self, request: Request) -> int:
        """``?page_size=`` as asked (cut to the maximum); 400 unless a positive integer."""
        raw = request.query_params.get(self.page_size_query_param)
        if raw is None:
            return self.page_size
        if not raw.isdecimal() or int(raw) < 1:
            raise _Problem(
                400,
                f"page_size must be a whole number from 1 to {self.max_page_size} "
                f"(larger is cut to {self.max_page_size}), got {raw[:20]!r}",
            )
        return min(int(raw), self.max_page_size)


class ChatHistoryView(ListAPIView[ChatMessage]):
    """A room's stored chat, newest first, cursor-paginated (``presence.view_room``)."""

    permission_classes = (RoomPermission,)
    required_permission = "presence.view_room"
    serializer_class = ChatHistorySerializer
    pagination_class = ChatCursor

    def get_queryset(self) -> QuerySet[ChatMessage]:
        """The room's lines; an invalid room id is 400."""
        room_id = self.kwargs["room_id"]
        if not rooms.ROOM_ID.fullmatch(room_id):
            raise _Problem(400, "invalid room id: use 1-64 characters of [A-Za-z0-9._-]")
        return ChatMessage.objects.filter(room_id=room_id)

    @extend_schema(
        parameters=[
            ROOM_ID_PARAMETER,
            OpenApiParameter(
                "page_size",
                {"type": "integer", "minimum": 1},
                description=f"Lines per page, {CHAT_PAGE_SIZE} by default, at most "
                f"{CHAT_PAGE_SIZE_MAX} (larger is cut to it); 400 unless a whole number "
                "of at least 1.",
            ),
        ],
        responses={200: ChatHistorySerializer(many=True), **_ERRORS},
    )
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """One page of the room's chat, newest first; ``next`` and ``previous`` are cursors."""
        return super().get(request, *args, **kwargs)


class AnnounceView(_RoomView):
    """Chat into the room as the server."""

    required_permission = "presence.announce"

    @extend_schema(
        parameters=[ROOM_ID_PARAMETER],
        request=AnnouncementSerializer,
        responses={201: ChatLineSerializer, **_ERRORS},
    )
    def post(self, request: Request, room_id: str) -> Response:
        """Post ``text`` as ``sender``, stored even with nobody there (``presence.announce``)."""
        data = _valid(AnnouncementSerializer, request.data)
        line = _call(rooms.asend_chat, room_id, data["text"], sender=data["sender"])
        return Response(asdict(line), status=status.HTTP_201_CREATED)


class _ModerateView(_RoomView):
    required_permission = "presence.moderate_room"

    def _done(self, room_id: str, action: str) -> Response:
        return Response({"room_id": room_id, "action": action})


class KickView(_ModerateView):
    """Kick a member (``presence.moderate_room``)."""

    @extend_schema(
        parameters=[ROOM_ID_PARAMETER],
        request=KickSerializer,
        responses={200: DoneSerializer, **_ERRORS},
    )
    def post(self, request: Request, room_id: str) -> Response:
        """Close the member with 4403; ``ban_seconds`` keeps its user out that long."""
        data = _valid(KickSerializer, request.data)
        _call(
            rooms.akick,
            room_id,
            data["client_id"],
            reason=data["reason"],
            ban_seconds=data["ban_seconds"],
            actor=request.user,
        )
        return self._done(room_id, "kick")


class MuteView(_ModerateView):
    """Mute or unmute a member (``presence.moderate_room``)."""

    @extend_schema(
        parameters=[ROOM_ID_PARAMETER],
        request=MuteSerializer,
        responses={200: DoneSerializer, **_ERRORS},
    )
    def post(self, request: Request, room_id: str) -> Response:
        """Drop the member's chat and voice (``muted: false`` lifts it)."""
        data = _valid(MuteSerializer, request.data)
        _call(
            rooms.amute,
            room_id,
            data["client_id"],
            muted=data["muted"],
            reason=data["reason"],
            actor=request.user,
        )
        return self._done(room_id, "mute" if data["muted"] else "unmute")


class LockView(_ModerateView):
    """Lock or unlock the room (``presence.moderate_room``)."""

    @extend_schema(
        parameters=[ROOM_ID_PARAMETER],
        request=LockSerializer,
        responses={200: DoneSerializer, **_ERRORS},
    )
    def post(self, request: Request, room_id: str) -> Response:
        """Refuse new joiners with 4423 (``locked: false`` lets them in again)."""
        data = _valid(LockSerializer, request.data)
        _call(
            rooms.alock, room_id, locked=data["locked"], reason=data["reason"], actor=request.user
        )
        return self._done(room_id, "lock" if data["locked"] else "unlock")
