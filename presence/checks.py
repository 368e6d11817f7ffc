"""Django system checks for presence (``manage.py check``; run at every start-up)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.apps import AppConfig
from django.conf import settings
from django.core.checks import CheckMessage, Tags, Warning, register


@register(Tags.security)
def check_dev_auth(app_configs: Sequence[AppConfig] | None, **kwargs: Any) -> list[CheckMessage]:
    """Warn when development-mode auth (a bare ``user_id``) is on while DEBUG is off."""
    presence = getattr(settings, "PRESENCE", {}) or {}
    # settings.py derives DEV_AUTH from DEBUG by default; a missing key means the same.
    dev_auth = bool(presence.get("DEV_AUTH", settings.DEBUG))
    if dev_auth and not settings.DEBUG:
        return [
            Warning(
                "Development-mode auth is on while DEBUG is off: anyone can connect "
                "as any user_id without a token.",
                hint="Unset PRESENCE_DEV_AUTH (it defaults to DEBUG) or set it to false.",
                id="presence.W001",
            )
        ]
    return []
