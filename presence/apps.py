"""Django app configuration for presence."""

from django.apps import AppConfig


class PresenceConfig(AppConfig):
    """The presence app."""

    name = "presence"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        """Validate the presence settings at start-up, with a clear message."""
        from presence import checks  # noqa: F401  (registers the system checks)
        from presence.conf import presence_settings

        presence_settings()
