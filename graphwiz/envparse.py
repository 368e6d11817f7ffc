"""Typed readers for environment values, failing with a clear message.

``settings.py`` hands its environment mapping to these functions; nothing
else in the project reads ``os.environ``. A bad value raises
:class:`EnvError`, whose text is one line naming the variable and the rule;
the entry points print it and exit (graphwiz/startup.py).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping

from django.core.exceptions import ImproperlyConfigured

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


class EnvError(ImproperlyConfigured):
    """An environment variable has a bad value; the text names it and the rule."""


def env_bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    """Read ``name`` as a boolean (1/0, true/false, yes/no, on/off)."""
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise EnvError(f"{name} must be a boolean (true/false), got {raw!r}")


def env_int(env: Mapping[str, str], name: str, default: int, *, minimum: int = 0) -> int:
    """Read ``name`` as an integer no smaller than ``minimum``."""
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw.strip())
    except ValueError:
        raise EnvError(f"{name} must be an integer, got {raw!r}") from None
    if value < minimum:
        raise EnvError(f"{name} must be at least {minimum}, got {value}")
    return value


def env_float(env: Mapping[str, str], name: str, default: float, *, minimum: float = 0.0) -> float:
    """Read ``name`` as a finite number no smaller than ``minimum``."""
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = float(raw.strip())
    except ValueError:
        raise EnvError(f"{name} must be a number, got {raw!r}") from None
    if value != value or value in (float("inf"), float("-inf")) or value < minimum:
        raise EnvError(f"{name} must be a finite number >= {minimum}, got {raw!r}")
    return value


def env_list(env: Mapping[str, str], name: str, default: list[str]) -> list[str]:
    """Read ``name`` as a comma-separated list."""
    raw = env.get(name)
    if raw is None:
        return list(default)
    return [item.strip() for item in raw.split(",") if item.strip()]


def env_choice(env: Mapping[str, str], name: str, default: str, choices: tuple[str, ...]) -> str:
    """Read ``name`` as one of ``choices`` (compared without regard to case)."""
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    value = raw.strip()
    for choice in choices:
        if value.lower() == choice.lower():
            return choice
    raise EnvError(f"{name} must be one of {', '.join(choices)}, got {raw!r}")


_RATE = re.compile(r"(\d+)/(s|sec|second|m|min|minute|h|hour|d|day)", re.IGNORECASE)


def env_rate(env: Mapping[str, str], name: str, default: str) -> str:
    """Read ``name`` as a request rate for Django REST framework: ``5/minute``, ``100/hour``."""
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    match = _RATE.fullmatch(raw.strip().replace(" ", ""))
    if match is None or int(match.group(1)) < 1:
        raise EnvError(
            f"{name} must be a rate like 5/minute (a number of at least 1, then "
            f"/second, /minute, /hour or /day), got {raw!r}"
        )
    return f"{int(match.group(1))}/{match.group(2).lower()}"


def env_networks(
    env: Mapping[str, str], name: str, default: list[str], *, blank_is_default: bool = False
) -> list[str]:
    """Read ``name`` as comma-separated addresses or networks (``10.0.0.0/8,::1``)."""
    raw = env.get(name)
    if blank_is_default and (raw is None or not raw.strip()):
        return list(default)
    values = env_list(env, name, default)
    for value in values:
        try:
            ipaddress.ip_network(value, strict=False)
        except ValueError:
            raise EnvError(
                f"{name} must list IP addresses or networks separated by commas "
                f"(e.g. 10.0.0.0/8,::1), got {value!r}"
            ) from None
    return values


# Django's own rule for a strong key (its security.W009 check), and words that
# mark a value copied from an example. Every key that fails is refused outside
# DEBUG: SECRET_KEY signs sessions and the access tokens that open sockets.
SECRET_KEY_MIN_LENGTH = 50
SECRET_KEY_MIN_UNIQUE_CHARACTERS = 5
SECRET_KEY_PLACEHOLDERS = (
    "change-me",
    "changeme",
    "change_me",
    "replace-me",
    "insecure",
    "placeholder",
    "example",
    "secret-key",
    "your-secret",
    "dev-only",
)
SECRET_KEY_RULE = (
    f"a random secret of at least {SECRET_KEY_MIN_LENGTH} characters, "
    f"{SECRET_KEY_MIN_UNIQUE_CHARACTERS} or more of them different, without a placeholder word "
    "such as 'change-me' or 'insecure' (make one with: "
    "python -c 'import secrets; print(secrets.token_urlsafe(50))')"
)


def secret_key_weakness(value: str) -> str | None:
    """Why ``value`` is not a strong secret key ("is empty", ...), or None when it is."""
    if not value.strip():
        return "is empty"
    lowered = value.lower()
    word = next((w for w in SECRET_KEY_PLACEHOLDERS if w in lowered), None)
    if word is not None:
        return f"contains the placeholder word {word!r}"
    if len(value) < SECRET_KEY_MIN_LENGTH:
        return f"is shorter than {SECRET_KEY_MIN_LENGTH} characters"
    if len(set(value)) < SECRET_KEY_MIN_UNIQUE_CHARACTERS:
        return f"has fewer than {SECRET_KEY_MIN_UNIQUE_CHARACTERS} different characters"
    return None


def env_secret_key(env: Mapping[str, str], name: str, *, required: bool, default: str) -> str:
    """Read the secret key ``name``: ``default`` when not ``required`` and unset.

    When ``required`` (``DEBUG`` off) an empty, short, repetitive or
    placeholder value is refused; the message never quotes the value.
    """
    raw = env.get(name, "")
    if not required:
        return raw or default
    weakness = secret_key_weakness(raw)
    if weakness is not None:
        raise EnvError(f"{name} {weakness}: with DEBUG off it must be {SECRET_KEY_RULE}")
    return raw
