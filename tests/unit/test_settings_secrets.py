"""The environment's secret key, networks, choices and rates (graphwiz/envparse.py)."""

from __future__ import annotations

import ast
import ipaddress
import runpy
import secrets
from pathlib import Path
from typing import Any

import pytest

from graphwiz.envparse import (
    SECRET_KEY_MIN_LENGTH,
    EnvError,
    env_choice,
    env_networks,
    env_rate,
    env_secret_key,
    secret_key_weakness,
)
from presence.conf import DEFAULTS

DEV_KEY = "dev-only-insecure-secret-key-change-me-now"
STRONG = secrets.token_urlsafe(50)
SETTINGS_FILE = Path(__file__).resolve().parents[2] / "graphwiz" / "settings.py"


# --- SECRET_KEY ---------------------------------------------------------------


def test_debug_without_a_key_uses_the_development_key() -> None:
    assert env_secret_key({}, "SECRET_KEY", required=False, default=DEV_KEY) == DEV_KEY


def test_a_random_key_is_accepted_outside_debug() -> None:
    env = {"SECRET_KEY": STRONG}
    assert env_secret_key(env, "SECRET_KEY", required=True, default=DEV_KEY) == STRONG


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("", "is empty"),
        ("   ", "is empty"),
        ("change-me-in-production", "placeholder word 'change-me'"),
        (DEV_KEY, "placeholder word"),
        ("django-insecure-" + STRONG, "placeholder word 'insecure'"),
        ("CHANGEME" + STRONG, "placeholder word 'changeme'"),
        ("bench", f"shorter than {SECRET_KEY_MIN_LENGTH} characters"),
        ("x" * (SECRET_KEY_MIN_LENGTH - 1), f"shorter than {SECRET_KEY_MIN_LENGTH}"),
        ("abab" * 20, "fewer than 5 different characters"),
    ],
)
def test_a_weak_key_is_refused_outside_debug_saying_the_rule(value: str, reason: str) -> None:
    with pytest.raises(EnvError) as refused:
        env_secret_key({"SECRET_KEY": value}, "SECRET_KEY", required=True, default=DEV_KEY)

    text = str(refused.value)
    assert text.startswith("SECRET_KEY ") and reason in text
    assert f"at least {SECRET_KEY_MIN_LENGTH} characters" in text  # the rule
    assert "secrets.token_urlsafe" in text  # and how to make a good one
    if value.strip():
        assert value not in text  # never the secret itself


def test_the_strength_rule_accepts_what_it_tells_operators_to_generate() -> None:
    assert all(secret_key_weakness(secrets.token_urlsafe(50)) is None for _ in range(20))


# --- networks and choices -----------------------------------------------------------


@pytest.mark.parametrize("raw", ["10.0.0.0/8", "10.0.0.5, ::1", "2001:db8::/32,127.0.0.1"])
def test_env_networks_accepts_addresses_and_networks(raw: str) -> None:
    assert env_networks({"TRUSTED_PROXIES": raw}, "TRUSTED_PROXIES", []) == [
        part.strip() for part in raw.split(",")
    ]


@pytest.mark.parametrize("raw", ["nginx", "10.0.0.0/33", "10.0.0.1,proxy.local"])
def test_env_networks_refuses_a_name_or_a_bad_network_naming_the_variable(raw: str) -> None:
    with pytest.raises(EnvError, match=r"^TRUSTED_PROXIES must list IP addresses or networks"):
        env_networks({"TRUSTED_PROXIES": raw}, "TRUSTED_PROXIES", [])


def test_env_networks_may_treat_blank_as_the_default() -> None:
    env = {"PRESENCE_METRICS_ALLOWED_NETWORKS": " "}
    name = "PRESENCE_METRICS_ALLOWED_NETWORKS"

    assert env_networks(env, name, ["10.0.0.0/8"], blank_is_default=True) == ["10.0.0.0/8"]
    assert env_networks(env, name, ["10.0.0.0/8"]) == []


def test_env_choice_is_case_insensitive_and_names_the_choices() -> None:
    assert env_choice({"LOG_LEVEL": "debug"}, "LOG_LEVEL", "INFO", ("DEBUG", "INFO")) == "DEBUG"
    with pytest.raises(EnvError, match=r"^LOG_LEVEL must be one of DEBUG, INFO, got 'loud'$"):
        env_choice({"LOG_LEVEL": "loud"}, "LOG_LEVEL", "INFO", ("DEBUG", "INFO"))


# --- /metrics: internal networks by default ------------------------------------------------


def settings_internal_networks() -> list[str]:
    """``INTERNAL_NETWORKS`` as graphwiz/settings.py writes it."""
    tree = ast.parse(SETTINGS_FILE.read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "INTERNAL_NETWORKS" for t in node.targets
        ):
            value: list[str] = ast.literal_eval(node.value)
            return value
    raise AssertionError("graphwiz/settings.py has no INTERNAL_NETWORKS")


def test_metrics_default_to_loopback_and_the_private_ranges() -> None:
    networks = [ipaddress.ip_network(n) for n in settings_internal_networks()]

    assert all(net.is_private for net in networks)
    assert ipaddress.ip_network("127.0.0.1/32").subnet_of(networks[0])  # type: ignore[arg-type]
    assert tuple(settings_internal_networks()) == DEFAULTS["METRICS_ALLOWED_NETWORKS"]


# --- the token throttles: rates and where counts live --------------------------------


def load_settings(monkeypatch: pytest.MonkeyPatch, **env: str) -> dict[str, Any]:
    """graphwiz/settings.py run afresh with ``env`` as the environment."""
    for name in ("REDIS_URL", "API_TOKEN_RATE_PER_IP", "API_TOKEN_RATE_PER_USERNAME"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return runpy.run_path(str(SETTINGS_FILE))


def test_throttle_counts_live_in_redis_when_redis_url_is_set(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    loaded = load_settings(monkeypatch, REDIS_URL="redis://redis:6379/0", REDIS_CHANNEL_PREFIX="gw")

    throttle = loaded["CACHES"]["throttle"]
    assert throttle["BACKEND"] == "django.core.cache.backends.redis.RedisCache"
    assert (throttle["LOCATION"], throttle["KEY_PREFIX"]) == ("redis://redis:6379/0", "gw:throttle")


def test_throttle_counts_live_in_the_process_without_redis(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    loaded = load_settings(monkeypatch)

    assert loaded["CACHES"]["throttle"]["BACKEND"].endswith("LocMemCache")


def test_throttle_rates_are_named_settings_read_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    loaded = load_settings(
        monkeypatch,
        API_TOKEN_RATE_PER_IP="100 / Hour",
        API_TOKEN_RATE_PER_USERNAME="3/min",
        API_SESSION_TOKEN_RATE="7/minute",
    )

    rates = loaded["REST_FRAMEWORK"]["DEFAULT_THROTTLE_RATES"]
    assert rates == {
        "token_ip": "100/hour",
        "token_username": "3/min",
        "token_refresh_ip": "60/minute",
        "session_token_user": "7/minute",
        "public_rooms_ip": "30/minute",
    }


@pytest.mark.parametrize("raw", ["5", "five/minute", "0/minute", "5/fortnight", "-1/s"])
def test_a_bad_rate_is_refused_naming_the_variable_and_the_form(raw: str) -> None:
    with pytest.raises(EnvError, match=r"^API_TOKEN_RATE_PER_IP must be a rate like 5/minute"):
        env_rate({"API_TOKEN_RATE_PER_IP": raw}, "API_TOKEN_RATE_PER_IP", "30/minute")
