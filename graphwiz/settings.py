"""Django settings for GraphWiz presence.

This is the only module that reads the environment. Every value is parsed
and validated here, so a bad value stops start-up with a clear message.
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path
from typing import Any

import dj_database_url

from graphwiz.envparse import (
    EnvError,
    env_bool,
    env_choice,
    env_float,
    env_int,
    env_list,
    env_networks,
    env_rate,
    env_secret_key,
)

# The one place the default lives; a module without Django imports.
from presence.transport.http_head import HEAD_TIMEOUT_SECONDS

BASE_DIR = Path(__file__).resolve().parent.parent
ENV = os.environ

DEBUG = env_bool(ENV, "DEBUG", True)
# Outside DEBUG a real secret is required: it signs sessions and access tokens.
SECRET_KEY = env_secret_key(
    ENV, "SECRET_KEY", required=not DEBUG, default="dev-only-insecure-secret-key-change-me-now"
)
ALLOWED_HOSTS = env_list(ENV, "ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"])

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_prometheus",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI's files, served from here (no CDN)
    "channels",
    "presence",
]

MIDDLEWARE = [
    "django_prometheus.middleware.PrometheusBeforeMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_prometheus.middleware.PrometheusAfterMiddleware",
]

ROOT_URLCONF = "graphwiz.urls"
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]
WSGI_APPLICATION = "graphwiz.wsgi.application"
ASGI_APPLICATION = "graphwiz.asgi.application"

# --- Database: DATABASE_URL (PostgreSQL in production), else a SQLite file.
DATABASE_URL = ENV.get("DATABASE_URL", "")
SQLITE_PATH = ENV.get("SQLITE_PATH", str(BASE_DIR / "db.sqlite3"))
if DATABASE_URL:
    try:
        # A persistent connection is checked before reuse, so one the server
        # dropped (restart, killed backend) is replaced instead of failing a write.
        DATABASES = {
            "default": dj_database_url.parse(DATABASE_URL, conn_max_age=60, conn_health_checks=True)
        }
    except ValueError as exc:
        raise EnvError(
            f"DATABASE_URL must be a database URL such as postgres://user:pass@host:5432/db "
            f"({type(exc).__name__}: {exc})"
        ) from None
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": SQLITE_PATH,
            # Keep the database worker thread's connection: opening one per
            # access (with its PRAGMAs) was most of a connect's cost.
            "CONN_MAX_AGE": 600,
            # WAL without an fsync per commit: connect and chat writes stay cheap.
            "OPTIONS": {
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
                "transaction_mode": "IMMEDIATE",
            },
        }
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Channel layer: Redis when REDIS_URL is set, else in-process (one instance).
REDIS_URL = ENV.get("REDIS_URL", "")
REDIS_CHANNEL_PREFIX = ENV.get("REDIS_CHANNEL_PREFIX", "graphwiz")
if REDIS_URL:
    if not REDIS_URL.startswith(("redis://", "rediss://", "unix://")):
        # Not quoted: the URL may carry Redis's password.
        raise EnvError("REDIS_URL must start with redis://, rediss:// or unix://")
    # pubsub measured cheaper: README
    REDIS_CHANNEL_LAYER = env_choice(ENV, "REDIS_CHANNEL_LAYER", "pubsub", ("pubsub", "core"))
    # redis-py 8 times reads out after 5 s, as long as channels_redis's blocking
    # receive waits: give idle receives room to finish.
    _hosts = [{"address": REDIS_URL, "socket_timeout": 10}]
    if REDIS_CHANNEL_LAYER == "core":
        CHANNEL_LAYERS = {
            "default": {
                "BACKEND": "channels_redis.core.RedisChannelLayer",
                "CONFIG": {
                    "hosts": _hosts,
                    "prefix": f"{REDIS_CHANNEL_PREFIX}:layer:",
                    "capacity": 10000,
                    "expiry": 10,
                },
            }
        }
    else:
        CHANNEL_LAYERS = {
            "default": {
                "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
                "CONFIG": {"hosts": _hosts, "prefix": f"{REDIS_CHANNEL_PREFIX}:layer:"},
            }
        }
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

# Who may read /metrics and /metrics/report unless PRESENCE_METRICS_ALLOWED_NETWORKS
# says otherwise: loopback and the private ranges (deploy/nginx.conf allows the same).
INTERNAL_NETWORKS = [
    "127.0.0.0/8",
    "::1/128",
    "10.0.0.0/8",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "fc00::/7",
]

# --- Presence limits (PROTOCOL.md section 8); presence.conf validates them.
PRESENCE: dict[str, Any] = {
    "RATE_LIMIT_MAX_REQUESTS": env_int(ENV, "RATE_LIMIT_MAX_REQUESTS", 60, minimum=1),
    "RATE_LIMIT_WINDOW_SECONDS": env_float(ENV, "RATE_LIMIT_WINDOW_SECONDS", 60.0, minimum=0.001),
    "MESSAGE_QUEUE_SIZE": env_int(ENV, "MESSAGE_QUEUE_SIZE", 1000, minimum=1),
    "MESSAGE_RETRY_INTERVAL": env_float(ENV, "MESSAGE_RETRY_INTERVAL", 5.0, minimum=0.001),
    "MESSAGE_MAX_RETRIES": env_int(ENV, "MESSAGE_MAX_RETRIES", 3, minimum=0),
    "PRESENCE_RESUME_WINDOW_SECONDS": env_float(
        ENV, "PRESENCE_RESUME_WINDOW_SECONDS", 60.0, minimum=0.001
    ),
    "PRESENCE_LEAVE_GRACE_SECONDS": env_float(
        ENV, "PRESENCE_LEAVE_GRACE_SECONDS", 10.0, minimum=0.001
    ),
    "METRICS_SAMPLE_SIZE": env_int(ENV, "METRICS_SAMPLE_SIZE", 1000, minimum=1),
    "LATENCY_TRACKING_ENABLED": env_bool(ENV, "LATENCY_TRACKING_ENABLED", True),
    "REDIS_CHANNEL_PREFIX": REDIS_CHANNEL_PREFIX,
    "TICK_HZ": env_float(ENV, "PRESENCE_TICK_HZ", 20.0, minimum=0.0),
    "TICK_FAST_HZ": env_float(ENV, "PRESENCE_TICK_FAST_HZ", 80.0, minimum=0.0),
    "DEV_AUTH": env_bool(ENV, "PRESENCE_DEV_AUTH", DEBUG),
    "AUTH_TIMEOUT_SECONDS": env_float(ENV, "PRESENCE_AUTH_TIMEOUT_SECONDS", 5.0, minimum=0.001),
    "ALLOWED_ORIGINS": env_list(ENV, "PRESENCE_ALLOWED_ORIGINS", []),
    "ALLOW_MISSING_ORIGIN": env_bool(ENV, "PRESENCE_ALLOW_MISSING_ORIGIN", True),
    "TRUSTED_PROXIES": env_networks(ENV, "TRUSTED_PROXIES", []),
    "MESSAGE_RATE_LIMIT": env_int(ENV, "MESSAGE_RATE_LIMIT", 100, minimum=1),
    "MESSAGE_RATE_WINDOW_SECONDS": env_float(
        ENV, "MESSAGE_RATE_WINDOW_SECONDS", 1.0, minimum=0.001
    ),
    "MESSAGE_RATE_STRIKES": env_int(ENV, "MESSAGE_RATE_STRIKES", 3, minimum=1),
    "REDIS_URL": REDIS_URL,
    "LEGACY_DETECT_SECONDS": env_float(ENV, "PRESENCE_LEGACY_DETECT_SECONDS", 0.5, minimum=0.0),
    "WS_CONTROL_FRAME_LIMIT": env_int(ENV, "PRESENCE_WS_CONTROL_FRAME_LIMIT", 30, minimum=1),
    "WS_CONTROL_FRAME_WINDOW_SECONDS": env_float(
        ENV, "PRESENCE_WS_CONTROL_FRAME_WINDOW_SECONDS", 10.0, minimum=0.001
    ),
    "WS_MAX_FRAGMENTS": env_int(ENV, "PRESENCE_WS_MAX_FRAGMENTS", 128, minimum=1),
    "HTTP_HEAD_TIMEOUT_SECONDS": env_float(
        ENV, "PRESENCE_HTTP_HEAD_TIMEOUT_SECONDS", HEAD_TIMEOUT_SECONDS, minimum=0.001
    ),
    "REGISTRY_LEASE_SECONDS": env_float(
        ENV, "PRESENCE_REGISTRY_LEASE_SECONDS", 15.0, minimum=0.001
    ),
    "REGISTRY_HEARTBEAT_SECONDS": env_float(
        ENV, "PRESENCE_REGISTRY_HEARTBEAT_SECONDS", 5.0, minimum=0.001
    ),
    "POSE_SYNC_HZ": env_float(ENV, "PRESENCE_POSE_SYNC_HZ", 4.0, minimum=0.001),
    "ACCOUNT_CHECK_SECONDS": env_float(ENV, "PRESENCE_ACCOUNT_CHECK_SECONDS", 5.0, minimum=0.001),
    "RTT_PROBE_SECONDS": env_float(ENV, "PRESENCE_RTT_PROBE_SECONDS", 30.0, minimum=0.0),
    "CHAT_HISTORY": env_int(ENV, "PRESENCE_CHAT_HISTORY", 50, minimum=0),
    "SIGNAL_QUEUE_SIZE": env_int(ENV, "PRESENCE_SIGNAL_QUEUE_SIZE", 10_000, minimum=1),
    "SIGNAL_RECEIVER_TIMEOUT_SECONDS": env_float(
        ENV, "PRESENCE_SIGNAL_RECEIVER_TIMEOUT_SECONDS", 5.0, minimum=0.001
    ),
    "API_COMMAND_TIMEOUT_SECONDS": env_float(
        ENV, "PRESENCE_API_COMMAND_TIMEOUT_SECONDS", 5.0, minimum=0.001
    ),
    "METRICS_ALLOWED_NETWORKS": env_networks(
        ENV, "PRESENCE_METRICS_ALLOWED_NETWORKS", INTERNAL_NETWORKS, blank_is_default=True
    ),
}
if PRESENCE["REGISTRY_HEARTBEAT_SECONDS"] >= PRESENCE["REGISTRY_LEASE_SECONDS"]:
    raise EnvError(
        "PRESENCE_REGISTRY_HEARTBEAT_SECONDS must be shorter than PRESENCE_REGISTRY_LEASE_SECONDS "
        f"(got {PRESENCE['REGISTRY_HEARTBEAT_SECONDS']} and {PRESENCE['REGISTRY_LEASE_SECONDS']})"
    )
if PRESENCE["PRESENCE_LEAVE_GRACE_SECONDS"] > PRESENCE["PRESENCE_RESUME_WINDOW_SECONDS"]:
    raise EnvError(
        "PRESENCE_LEAVE_GRACE_SECONDS must not be longer than PRESENCE_RESUME_WINDOW_SECONDS "
        f"(got {PRESENCE['PRESENCE_LEAVE_GRACE_SECONDS']} and "
        f"{PRESENCE['PRESENCE_RESUME_WINDOW_SECONDS']})"
    )
# prometheus_client reads it itself (every process on the host writes its
# metrics there); kept here for the code that needs to know (presence.metrics).
PROMETHEUS_MULTIPROC_DIR = ENV.get("PROMETHEUS_MULTIPROC_DIR", "")

# Daphne's own WebSocket limits, used by `manage.py runserver`; the Makefile
# passes the same numbers to the daphne command line.
DAPHNE_WEBSOCKET_MAX_MESSAGE_SIZE = 64 * 1024
DAPHNE_WEBSOCKET_MAX_FRAME_SIZE = 64 * 1024

# --- Tokens for the WebSocket handshake: POST /api/token/ (simplejwt).
REST_FRAMEWORK = {
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework_simplejwt.authentication.JWTAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    # presence/web/api/throttles.py: password guesses per client address and
    # per username, refreshes per client address.
    "DEFAULT_THROTTLE_RATES": {
        "token_ip": env_rate(ENV, "API_TOKEN_RATE_PER_IP", "30/minute"),
        "token_username": env_rate(ENV, "API_TOKEN_RATE_PER_USERNAME", "5/minute"),
        "token_refresh_ip": env_rate(ENV, "API_TOKEN_REFRESH_RATE_PER_IP", "60/minute"),
        # presence/web/api/page.py: the page's token for a signed-in user, and
        # the public room list.
        "session_token_user": env_rate(ENV, "API_SESSION_TOKEN_RATE", "30/minute"),
        "public_rooms_ip": env_rate(ENV, "API_PUBLIC_ROOMS_RATE_PER_IP", "30/minute"),
    },
}
# The throttles' counts: in Redis with REDIS_URL, so a limit holds however many
# instances the attempts are spread over; else in this process.
CACHES = {
    "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
    "throttle": (
        {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": f"{REDIS_CHANNEL_PREFIX}:throttle",
            # A stalled Redis answers the login in seconds (503), not never.
            "OPTIONS": {"socket_timeout": 2, "socket_connect_timeout": 2},
        }
        if REDIS_URL
        else {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "throttle"}
    ),
}
# GET /api/schema/ (OpenAPI 3) and /api/docs/ (Swagger UI): presence/web/api/urls.py.
SPECTACULAR_SETTINGS = {
    "TITLE": "GraphWiz presence API",
    "DESCRIPTION": (
        "Rooms, chat history, announcements and moderation (README, 'HTTP API'). "
        "Authenticate with a session or 'Authorization: Bearer <access token>' from "
        "POST /api/token/."
    ),
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}
SIMPLE_JWT = {
    "ACCESS_TOKEN_LIFETIME": timedelta(
        minutes=env_int(ENV, "JWT_ACCESS_TOKEN_MINUTES", 15, minimum=1)
    ),
    "REFRESH_TOKEN_LIFETIME": timedelta(days=env_int(ENV, "JWT_REFRESH_TOKEN_DAYS", 1, minimum=1)),
    "ALGORITHM": "HS256",
    "SIGNING_KEY": SECRET_KEY,
    "UPDATE_LAST_LOGIN": False,
    # Tokens carry a digest of the password hash: after a password change the
    # older ones stop opening sockets (presence/auth.py, presence/accounts.py).
    "CHECK_REVOKE_TOKEN": True,
}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"

LOG_LEVEL = env_choice(ENV, "LOG_LEVEL", "INFO", ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"))
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "loggers": {"presence": {"handlers": ["console"], "level": LOG_LEVEL, "propagate": False}},
}
