"""Django app configuration for presence."""

from django.apps import AppConfig


class PresenceConfig(AppConfig):
    """The presence app."""

    name = "presence"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        """Redact credentials from every log record; validate the presence settings."""
        from presence.redact import install_log_redaction

        # First: the server logs its first request line after this returns.
        install_log_redaction()

        from presence import checks  # noqa: F401  (registers the system checks)
        from presence.accounts import connect_signals
        from presence.conf import presence_settings

        presence_settings()
        connect_signals()  # a disabled account or a new password ends the user's sockets
