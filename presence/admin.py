"""Django admin: rooms are editable and moderated live; sessions, chat and moderation
are read-only history.

A room's page shows one live presence panel, read from the presence registry
(every instance's connections, who is host, who is muted) and refreshed by the
page from ``<room>/live/`` (JSON, staff only) every ``LIVE_REFRESH_MS``.
"""

from __future__ import annotations

import logging
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied
from django.db.models import Count, Q, QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.shortcuts import get_object_or_404
from django.template.defaultfilters import truncatechars
from django.urls import URLPattern, path, reverse
from django.views.decorators.http import require_POST

from presence import moderation
from presence.auth import MODERATE_PERMISSION
from presence.cluster.hub import BackendUnavailable
from presence.cluster.registry import RegistryUnavailable, RoomView
from presence.models import ChatMessage, ConnectionSession, ModerationAction, Room, RoomBan
from presence.protocol.moderation import Action

logger = logging.getLogger(__name__)
MAX_BAN_MINUTES = 60 * 24 * 365
# The panel asks again this often: one registry read (one Redis script) per open page.
LIVE_REFRESH_MS = 2000
REGISTRY_DOWN = "The presence registry (Redis) does not answer."


def live_rows(view: RoomView) -> dict[str, Any]:
    """The room's live presence as the panel shows it (the page and its JSON alike)."""
    return {
        "room_id": view.room_id,
        "host_client_id": view.host_client_id,
        "entity_count": view.entity_count,
        "message_count": view.message_count,
        "connections": [
            {
                "client_id": c.client_id,
                "client_label": c.client_label,
                "user_id": c.user_id,
                "display_name": c.display_name,
                "instance_id": c.instance_id,
                "host": c.client_id == view.host_client_id,
                "muted": c.muted,
            }
            for c in view.connections
        ],
    }


class ModerationForm(forms.Form):
    """One order from the room's admin page."""

    action = forms.ChoiceField(choices=[(a.value, a.value) for a in Action])
    target_client_id = forms.CharField(max_length=64, required=False)
    reason = forms.CharField(max_length=256, required=False)
    ban_minutes = forms.IntegerField(min_value=0, max_value=MAX_BAN_MINUTES, required=False)

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        action = data.get("action")
        targeted = action in (Action.KICK, Action.MUTE, Action.UNMUTE)
        if targeted and not data.get("target_client_id"):
            raise forms.ValidationError("Kick, mute and unmute need a target connection.")
        return data


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
    change_form_template = "admin/presence/room/change_form.html"

    def get_urls(self) -> list[URLPattern]:
        moderate = path(
            "<path:object_id>/moderate/",
            self.admin_site.admin_view(require_POST(self.moderate_view)),
            name="presence_room_moderate",
        )
        live = path(
            "<path:object_id>/live/",
            self.admin_site.admin_view(self.live_view),
            name="presence_room_live",
        )
        return [moderate, live, *super().get_urls()]

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        """The room's page, with who is connected now on every instance."""
        context = dict(extra_context or {})
        try:
            context["live"] = live_rows(moderation.live_view(object_id))
        except RegistryUnavailable:
            context["live_error"] = REGISTRY_DOWN
        context["live_refresh_ms"] = LIVE_REFRESH_MS
        context["moderation_actions"] = [a.value for a in Action]
        context["may_moderate"] = request.user.has_perm(MODERATE_PERMISSION)
        return super().change_view(request, object_id, form_url, context)

    def live_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """The room's live presence as JSON, for the panel's refresh (staff only)."""
        room = get_object_or_404(Room, pk=object_id)
        if not self.has_view_or_change_permission(request, room):
            raise PermissionDenied
        try:  # admin_view marks it never to be cached
            return JsonResponse(live_rows(moderation.live_view(room.pk)))
        except RegistryUnavailable:
            return JsonResponse({"error": REGISTRY_DOWN}, status=503)

    def moderate_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """Kick (optionally ban), mute, unmute, lock or unlock, from the room's page."""
        room = get_object_or_404(Room, pk=object_id)
        if not request.user.has_perm(MODERATE_PERMISSION):  # the same rule as clients and the API
            raise PermissionDenied
        back = reverse("admin:presence_room_change", args=[room.pk])
        form = ModerationForm(request.POST)
        if not form.is_valid():
            for error in form.errors.values():
                messages.error(request, " ".join(str(message) for message in error))
            return HttpResponseRedirect(back)
        data = form.cleaned_data
        action = Action(data["action"])
        try:
            moderation.moderate_from_admin(
                room_id=room.pk,
                action=action,
                user=request.user,
                target_client_id=data.get("target_client_id") or "",
                reason=data.get("reason") or "",
                ban_seconds=60 * (data.get("ban_minutes") or 0),
            )
        except (RegistryUnavailable, BackendUnavailable):
            messages.error(request, "Recorded, but the room could not be told: Redis is down.")
            return HttpResponseRedirect(back)
        target = data.get("target_client_id")
        messages.success(request, f"{action.value}{' ' + target if target else ''}: done.")
        return HttpResponseRedirect(back)

    def save_model(self, request: HttpRequest, obj: Room, form: Any, change: bool) -> None:
        """A lock or unlock made by editing the room reaches its members too."""
        super().save_model(request, obj, form, change)
        if change and "locked" in form.changed_data:
            action = Action.LOCK if obj.locked else Action.UNLOCK
            try:
                moderation.moderate_from_admin(room_id=obj.pk, action=action, user=request.user)
            except (RegistryUnavailable, BackendUnavailable):
                logger.warning("room %s %sed, but its members could not be told", obj.pk, action)

    def get_queryset(self, request: HttpRequest) -> QuerySet[Room]:
        rooms: QuerySet[Room] = (
            super()
            .get_queryset(request)
            .annotate(
                present_now=Count("sessions", filter=Q(sessions__disconnected_at__isnull=True))
            )
        )
        return rooms

    def get_readonly_fields(self, request: HttpRequest, obj: Room | None = None) -> Any:
        # The id is the primary key: editing it would save a copy under a new id.
        fields = ("id", *self.readonly_fields) if obj is not None else self.readonly_fields
        # Locking is moderation: only with presence.moderate_room.
        if not request.user.has_perm(MODERATE_PERMISSION):
            fields = (*fields, "locked")
        return fields

    @admin.display(description="present now", ordering="present_now")
    def present_now(self, obj: Room) -> int:
        present: int = obj.present_now  # type: ignore[attr-defined]  # get_queryset's annotation
        return present


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


@admin.register(ModerationAction)
class ModerationActionAdmin(_HistoryAdmin):
    """Who moderated whom, where, when and why; newest first."""

    list_display = (
        "created_at",
        "room",
        "action",
        "target_client_id",
        "target_user_id",
        "actor",
        "actor_client_id",
        "reason",
        "banned_until",
    )
    list_filter = ("action", ("room", admin.RelatedOnlyFieldListFilter))
    date_hierarchy = "created_at"
    search_fields = ("=room__id", "target_client_id", "target_user_id", "actor_client_id")
    list_select_related = ("room", "actor")


@admin.register(RoomBan)
class RoomBanAdmin(admin.ModelAdmin):
    """Users kept out of rooms; delete a ban to lift it early."""

    list_display = ("room", "user_id", "until", "reason", "created_at")
    list_filter = (("room", admin.RelatedOnlyFieldListFilter),)
    search_fields = ("=room__id", "user_id")
    readonly_fields = ("created_at",)
