"""Django admin: rooms are editable, connection sessions and chat are read-only history."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.contrib.auth import get_user_model
from django.db.models import Count, Q, QuerySet
from django.http import HttpRequest
from django.template.defaultfilters import truncatechars

from presence.models import ChatMessage, ConnectionSession, Room


class _HistoryAdmin(admin.ModelAdmin):
    """Records written by the server: nobody adds or edits them, superusers may delete."""

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return request.user.is_superuser


class SessionStatusFilter(admin.SimpleListFilter):
    """Open (still connected) or closed sessions."""

    title = "status"
    parameter_name = "status"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("open", "Open"), ("closed", "Closed")]

    def queryset(
        self, request: HttpRequest, queryset: QuerySet[ConnectionSession]
    ) -> QuerySet[ConnectionSession]:
        if self.value() == "open":
            return queryset.filter(disconnected_at__isnull=True)
        if self.value() == "closed":
            return queryset.filter(disconnected_at__isnull=False)
        return queryset


class PresentSessionInline(admin.TabularInline):
    """Who is in the room now: its open sessions, oldest first, read-only."""

    model = ConnectionSession
    verbose_name = "present session"
    verbose_name_plural = "present now"
    fields = ("assigned_client_id", "display_name", "external_user_id", "user", "connected_at")
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = True

    def get_queryset(self, request: HttpRequest) -> QuerySet[ConnectionSession]:
        return (
            super()
            .get_queryset(request)
            .filter(disconnected_at__isnull=True)
            .select_related("user")
            .order_by("connected_at", "pk")
        )

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Room)
class RoomAdmin(admin.ModelAdmin):
    """Rooms: name, lock and capacity are editable; activity counters are not."""

    list_display = (
        "id",
        "name",
        "present_now",
        "peak_occupancy",
        "max_occupancy",
        "locked",
        "last_active_at",
        "created_at",
    )
    list_filter = ("locked", "last_active_at", "created_at")
    search_fields = ("id", "name")
    fields = (
        "id",
        "name",
        "locked",
        "max_occupancy",
        "peak_occupancy",
        "created_at",
        "last_active_at",
    )
    readonly_fields = ("created_at", "last_active_at", "peak_occupancy")
    inlines = (PresentSessionInline,)

    def get_queryset(self, request: HttpRequest) -> QuerySet[Room]:
        return (
            super()
            .get_queryset(request)
            .annotate(
                present_now=Count("sessions", filter=Q(sessions__disconnected_at__isnull=True))
            )
        )

    def get_readonly_fields(self, request: HttpRequest, obj: Room | None = None) -> Any:
        # The id is the primary key: editing it would save a copy under a new id.
        if obj is not None:
            return ("id", *self.readonly_fields)
        return self.readonly_fields

    @admin.display(description="present now", ordering="present_now")
    def present_now(self, obj: Room) -> int:
        return obj.present_now  # type: ignore[attr-defined]


@admin.register(ConnectionSession)
class ConnectionSessionAdmin(_HistoryAdmin):
    """Connection history, newest first."""

    list_display = (
        "assigned_client_id",
        "room",
        "display_name",
        "external_user_id",
        "user",
        "connected_at",
        "disconnected_at",
        "close_code",
        "close_reason",
        "messages_in",
        "messages_out",
    )
    list_filter = (SessionStatusFilter, ("room", admin.RelatedOnlyFieldListFilter), "close_reason")
    date_hierarchy = "connected_at"
    search_fields = (
        "=room__id",
        "external_user_id",
        f"user__{get_user_model().USERNAME_FIELD}",
        "assigned_client_id",
        "client_label",
        "display_name",
    )
    list_select_related = ("room", "user")


@admin.register(ChatMessage)
class ChatMessageAdmin(_HistoryAdmin):
    """Chat history, newest first."""

    list_display = ("sent_at", "room", "sender_name", "sender_client_id", "text_preview")
    list_filter = (("room", admin.RelatedOnlyFieldListFilter),)
    date_hierarchy = "sent_at"
    search_fields = ("=room__id", "sender_name", "sender_client_id", "text")
    list_select_related = ("room",)

    @admin.display(description="text")
    def text_preview(self, obj: ChatMessage) -> str:
        return truncatechars(obj.text, 80)
