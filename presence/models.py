"""Database records of presence: rooms, connection sessions and chat history."""

from __future__ import annotations

from django.conf import settings
from django.core.validators import RegexValidator
from django.db import models
from django.utils import timezone

ROOM_ID_MAX_LENGTH = 64
room_id_validator = RegexValidator(
    r"^[A-Za-z0-9._-]{1,64}\Z",
    "Room ids are 1-64 characters of letters, digits, '.', '_' and '-'.",
)


class Room(models.Model):
    """A room clients join; its id is the string the clients use."""

    id = models.CharField(
        primary_key=True, max_length=ROOM_ID_MAX_LENGTH, validators=[room_id_validator]
    )
    name = models.CharField(max_length=128, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    last_active_at = models.DateTimeField(null=True, blank=True)
    peak_occupancy = models.PositiveIntegerField(default=0)
    locked = models.BooleanField(default=False)
    max_occupancy = models.PositiveIntegerField(
        null=True, blank=True, help_text="Empty means unlimited."
    )

    class Meta:
        ordering = ["id"]
        # With Django's view_room: who may do what through presence.rooms'
        # HTTP API, the admin and clients' moderation messages (README "Permissions").
        permissions = [
            ("moderate_room", "Can kick, mute and lock in rooms"),
            ("announce", "Can post chat into rooms as the server"),
        ]

    def __str__(self) -> str:
        return self.id


class ConnectionSession(models.Model):
    """One WebSocket connection to a room, from connect to disconnect."""

    room = models.ForeignKey(Room, on_delete=models.CASCADE, related_name="sessions")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    external_user_id = models.CharField(
        max_length=128, help_text="The identity's user id as given by the client or token."
    )
    assigned_client_id = models.CharField(max_length=64, db_index=True)
    client_label = models.CharField(
        max_length=128, blank=True, help_text="The client's own client_id query parameter."
    )
    display_name = models.CharField(max_length=64, blank=True)
    ip_address = models.GenericIPAddressField(null=True, blank=True)
    user_agent = models.CharField(max_length=256, blank=True)
    connected_at = models.DateTimeField(default=timezone.now, db_index=True)
    disconnected_at = models.DateTimeField(null=True, blank=True, db_index=True)
    close_code = models.PositiveIntegerField(null=True, blank=True)
    close_reason = models.CharField(max_length=32, blank=True)
    messages_in = models.PositiveBigIntegerField(default=0)
    messages_out = models.PositiveBigIntegerField(default=0)
    bytes_in = models.PositiveBigIntegerField(default=0)
    bytes_out = models.PositiveBigIntegerField(default=0)

    class Meta:
        ordering = ["-connected_at"]

    def __str__(self) -> str:
        return f"{self.assigned_client_id} in {self.room_id}"

    @property
    def is_open(self) -> bool:
        """True while the connection has not been closed."""
        return self.disconnected_at is None


class ChatMessage(models.Model):
    """One chat line sent to a room (the database record, not the protobuf message)."""

    room = models.ForeignKey(Room, on_delete=models.CASCADE, related_name="chat_messages")
    session = models.ForeignKey(
        ConnectionSession,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="chat_messages",
    )
    sender_client_id = models.CharField(max_length=64)
    sender_name = models.CharField(max_length=64, blank=True)
    text = models.TextField()
    sent_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ["-sent_at"]

    def __str__(self) -> str:
        return f"{self.sender_name or self.sender_client_id} in {self.room_id}"


class ModerationAction(models.Model):
    """The audit record of one kick, mute, unmute, lock or unlock."""

    class Action(models.TextChoices):
        KICK = "kick", "kick"
        MUTE = "mute", "mute"
        UNMUTE = "unmute", "unmute"
        LOCK = "lock", "lock"
        UNLOCK = "unlock", "unlock"

    room = models.ForeignKey(Room, on_delete=models.CASCADE, related_name="moderation_actions")
    action = models.CharField(max_length=16, choices=Action.choices)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="moderation_actions",
        help_text="The staff user, in the admin or through a client.",
    )
    actor_client_id = models.CharField(
        max_length=64, blank=True, help_text="The moderating connection; empty from the admin."
    )
    target_client_id = models.CharField(max_length=64, blank=True)
    target_user_id = models.CharField(max_length=128, blank=True)
    reason = models.CharField(max_length=256, blank=True)
    banned_until = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        target = f" {self.target_client_id}" if self.target_client_id else ""
        return f"{self.action}{target} in {self.room_id}"


class RoomBan(models.Model):
    """A user kept out of a room until a time (set by a kick with a ban)."""

    room = models.ForeignKey(Room, on_delete=models.CASCADE, related_name="bans")
    user_id = models.CharField(max_length=128, help_text="The identity's user id.")
    until = models.DateTimeField(db_index=True)
    reason = models.CharField(max_length=256, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-until"]
        indexes = [models.Index(fields=["room", "user_id"])]

    def __str__(self) -> str:
        return f"{self.user_id} banned from {self.room_id}"
