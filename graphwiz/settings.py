"""Django settings for GraphWiz presence.

This is the only module that reads the environment. Every value is parsed
and validated here, so a bad value stops start-up with a clear message.
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from graphwiz.envparse import env_bool, env_float, env_int, env_list

BASE_DIR = Path(__file__).resolve().parent.parent
ENV = os.environ

DEBUG = env_bool(ENV, "DEBUG", True)
SECRET_KEY = ENV.get("SECRET_KEY", "")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured("SECRET_KEY must be set when DEBUG is off")
    SECRET_KEY = "dev-only-insecure-secret-key-change-me-now"
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
        DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=60)}
    except ValueError as exc:
        raise ImproperlyConfigured(f"DATABASE_URL is not a valid database URL: {exc}") from None
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
        raise ImproperlyConfigured(f"REDIS_URL must be a redis:// URL, got {REDIS_URL!r}")
    REDIS_CHANNEL_LAYER = ENV.get("REDIS_CHANNEL_LAYER", "pubsub")  # measured cheaper: README
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
    elif REDIS_CHANNEL_LAYER == "pubsub":
        CHANNEL_LAYERS = {
            "default": {
                "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
                "CONFIG": {"hosts": _hosts, "prefix": f"{REDIS_CHANNEL_PREFIX}:layer:"},
            }
        }
    else:
        raise ImproperlyConfigured(
            f"REDIS_CHANNEL_LAYER must be 'core' or 'pubsub', got {REDIS_CHANNEL_LAYER!r}"
        )
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

# --- Presence limits (PROTOCOL.md section 8); presence.conf validates them.
PRESENCE = {
    "RATE_LIMIT_MAX_REQUESTS": env_int(ENV, "RATE_LIMIT_MAX_REQUESTS", 60, minimum=1),
    "RATE_LIMIT_WINDOW_SECONDS": env_float(ENV, "RATE_LIMIT_WINDOW_SECONDS", 60.0, minimum=0.001),
    "MESSAGE_QUEUE_SIZE": env_int(ENV, "MESSAGE_QUEUE_SIZE", 1000, minimum=1),
    "MESSAGE_RETRY_INTERVAL": env_float(ENV, "MESSAGE_RETRY_INTERVAL", 5.0, minimum=0.001),
    "METRICS_SAMPLE_SIZE": env_int(ENV, "METRICS_SAMPLE_SIZE", 1000, minimum=1),
    "LATENCY_TRACKING_ENABLED": env_bool(ENV, "LATENCY_TRACKING_ENABLED", True),
    "REDIS_CHANNEL_PREFIX": REDIS_CHANNEL_PREFIX,
    "TICK_HZ": env_float(ENV, "PRESENCE_TICK_HZ", 20.0, minimum=0.0),
    "DEV_AUTH": env_bool(ENV, "PRESENCE_DEV_AUTH", DEBUG),
    "AUTH_TIMEOUT_SECONDS": env_float(ENV, "PRESENCE_AUTH_TIMEOUT_SECONDS", 5.0, minimum=0.001),
    "ALLOWED_ORIGINS": env_list(ENV, "PRESENCE_ALLOWED_ORIGINS", []),
    "ALLOW_MISSING_ORIGIN": env_bool(ENV, "PRESENCE_ALLOW_MISSING_ORIGIN", True),
    "TRUSTED_PROXIES": env_list(ENV, "TRUSTED_PROXIES", []),
    "MESSAGE_RATE_LIMIT": env_int(ENV, "MESSAGE_RATE_LIMIT", 100, minimum=1),
    "MESSAGE_RATE_WINDOW_SECONDS": env_float(
        ENV, "MESSAGE_RATE_WINDOW_SECONDS", 1.0, minimum=0.001
    ),
    "MESSAGE_RATE_STRIKES": env_int(ENV, "MESSAGE_RATE_STRIKES", 3, minimum=1),
    "REDIS_URL": REDIS_URL,
    "WS_CONTROL_FRAME_LIMIT": env_int(ENV, "PRESENCE_WS_CONTROL_FRAME_LIMIT", 30, minimum=1),
    "WS_CONTROL_FRAME_WINDOW_SECONDS": env_float(
        ENV, "PRESENCE_WS_CONTROL_FRAME_WINDOW_SECONDS", 10.0, minimum=0.001
    ),
    "WS_MAX_FRAGMENTS": env_int(ENV, "PRESENCE_WS_MAX_FRAGMENTS", 128, minimum=1),
    "REGISTRY_LEASE_SECONDS": env_float(
        ENV, "PRESENCE_REGISTRY_LEASE_SECONDS", 15.0, minimum=0.001
    ),
    "REGISTRY_HEARTBEAT_SECONDS": env_float(
        ENV, "PRESENCE_REGISTRY_HEARTBEAT_SECONDS", 5.0, minimum=0.001
    ),
    "POSE_SYNC_HZ": env_float(ENV, "PRESENCE_POSE_SYNC_HZ", 4.0, minimum=0.001),
    "RTT_PROBE_SECONDS": env_float(ENV, "PRESENCE_RTT_PROBE_SECONDS", 30.0, minimum=0.0),
    "METRICS_ALLOWED_NETWORKS": env_list(ENV, "PRESENCE_METRICS_ALLOWED_NETWORKS", []),
}
# prometheus_client reads it itself (every process on the host writes its
# metrics there); kept here for the code that needs to know (presence.metrics).
PROMETHEUS_MULTIPROC_DIR = ENV.get("PROMETHEUS_MULTIPROC_DIR", "")

# Daphne's own WebSocket limits, used by `manage.py runserver`; the Makefile
# passes the same numbers to the daphne command line.
DAPHNE_WEBSOCKET_MAX_MESSAGE_SIZE = 64 * 1024
DAPHNE_WEBSOCKET_MAX_FRAME_SIZE = 64 * 1024

# --- Tokens for the WebSocket handshake: POST /api/token/ (simplejwt).
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework_simplejwt.authentication.JWTAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
}
SIMPLE_JWT = {
    "ACCESS_TOKEN_LIFETIME": timedelta(
        minutes=env_int(ENV, "JWT_ACCESS_TOKEN_MINUTES", 15, minimum=1)
    ),
    "REFRESH_TOKEN_LIFETIME": timedelta(days=env_int(ENV, "JWT_REFRESH_TOKEN_DAYS", 1, minimum=1)),
    "ALGORITHM": "HS256",
    "SIGNING_KEY": SECRET_KEY,
    "UPDATE_LAST_LOGIN": False,
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

LOG_LEVEL = ENV.get("LOG_LEVEL", "INFO").upper()
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "loggers": {"presence": {"handlers": ["console"], "level": LOG_LEVEL, "propagate": False}},
}
