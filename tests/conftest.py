"""Shared fixtures: a real Redis for the suite, channel layers, test clients.

Redis: the machine's server on 127.0.0.1:6379 when it answers (the suite uses
its own database number and key prefix and flushes it afterwards); otherwise
a private ``redis-server`` on a free port when the binary exists. No Redis at
all is an error, not a skip.
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator

import pytest
import redis

# Issue 14: a socket that negotiates nothing gets its first frame sniffed for the
# legacy wire for up to PRESENCE_LEGACY_DETECT_SECONDS (0.5 s in production)
# before the server speaks. Most of the suite's protobuf clients negotiate
# nothing and wait for the ServerHello, so they would each wait that long
# (transport and cluster tests: 43 s -> 250 s). The suite sniffs for 10 ms, in
# process and in the servers the e2e tests start (they copy this environment);
# the legacy tests set a real window themselves.
TEST_LEGACY_DETECT_SECONDS = 0.01
os.environ.setdefault("PRESENCE_LEGACY_DETECT_SECONDS", str(TEST_LEGACY_DETECT_SECONDS))

# Its own database number; TEST_REDIS_DB picks another, so two checkouts can run
# their suites side by side on one server.
TEST_REDIS_DB = int(os.environ.get("TEST_REDIS_DB", "13"))
REDIS_START_SECONDS = 10.0


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Deselect PostgreSQL-only tests when the suite runs on another database."""
    from django.db import connection

    if connection.vendor == "postgresql":
        return
    kept = [item for item in items if item.get_closest_marker("postgres") is None]
    if len(kept) != len(items):
        config.hook.pytest_deselected(items=[i for i in items if i not in kept])
        items[:] = kept


def free_port() -> int:
    """A local TCP port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _answers(url: str) -> bool:
    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=0.5).ping())
    except redis.RedisError:
        return False


class RedisServer:
    """A redis-server process the test session owns."""

    def __init__(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError(
                "no Redis answers on 127.0.0.1:6379 and redis-server is not installed"
            )
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="graphwiz-redis-")
        self.process = subprocess.Popen(
            [
                binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                self.dir,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.url = f"redis://127.0.0.1:{self.port}"
        deadline = time.monotonic() + REDIS_START_SECONDS
        while not _answers(self.url):
            if time.monotonic() > deadline or self.process.poll() is not None:
                self.stop()
                raise RuntimeError("redis-server did not start")
            time.sleep(0.05)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="session")
def redis_base_url() -> Iterator[str]:
    """A reachable Redis server (``redis://host:port``), started if needed."""
    configured = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379")
    if _answers(configured):
        yield configured.rstrip("/")
        return
    server = RedisServer()
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture(scope="session")
def redis_url(redis_base_url: str) -> Iterator[str]:
    """The suite's own Redis database, flushed after the session."""
    url = f"{redis_base_url}/{TEST_REDIS_DB}"
    client = redis.Redis.from_url(url)
    client.flushdb()
    yield url
    client.flushdb()
    client.close()


@pytest.fixture
def redis_prefix() -> str:
    """A key prefix unique to one test."""
    return f"gwtest-{uuid.uuid4().hex[:8]}"


def closed_redis_url() -> str:
    """A Redis URL nothing answers on: the real client's real connection error."""
    return f"redis://127.0.0.1:{free_port()}"


@pytest.fixture
def redis_keys(redis_url: str, redis_prefix: str) -> Iterator[redis.Redis]:
    """A plain client to look at the test's keys; deletes them afterwards."""
    client = redis.Redis.from_url(redis_url)
    yield client
    keys = list(client.scan_iter(match=f"{redis_prefix}:*"))
    if keys:
        client.delete(*keys)
    client.close()


def layer_config(kind: str, redis_url: str, prefix: str) -> dict[str, object]:
    """CHANNEL_LAYERS: ``memory``, ``redis`` (the pub/sub layer, the default with
    REDIS_URL) or ``core`` (the core Redis layer)."""
    if kind == "memory":
        return {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    hosts = [{"address": redis_url, "socket_timeout": 10}]
    if kind == "core":
        config = {"hosts": hosts, "prefix": f"{prefix}:layer:", "expiry": 10}
        return {"default": {"BACKEND": "channels_redis.core.RedisChannelLayer", "CONFIG": config}}
    pubsub = "channels_redis.pubsub.RedisPubSubChannelLayer"
    return {
        "default": {"BACKEND": pubsub, "CONFIG": {"hosts": hosts, "prefix": f"{prefix}:layer:"}}
    }


@pytest.fixture(params=["memory", "redis"])
def channel_layer_kind(
    request: pytest.FixtureRequest, settings, redis_url: str, redis_prefix: str
) -> str:
    """Run the test once in process (layer and registry) and once on Redis."""
    settings.CHANNEL_LAYERS = layer_config(request.param, redis_url, redis_prefix)
    if request.param == "redis":
        settings.PRESENCE = {
            **settings.PRESENCE,
            "REDIS_URL": redis_url,
            "REDIS_CHANNEL_PREFIX": redis_prefix,
        }
    return str(request.param)


@pytest.fixture(autouse=True)
def _close_worker_thread_connections(request: pytest.FixtureRequest) -> Iterator[None]:
    """Close the connection ``database_sync_to_async``'s thread opened, after each test.

    Otherwise PostgreSQL refuses to drop the test database at the end: "being
    accessed by other users".
    """
    yield
    if request.node.get_closest_marker("django_db") is None:
        return
    import asyncio

    from channels.db import database_sync_to_async
    from django.db import connections

    # Outside any async_to_sync, thread-sensitive calls share one worker thread:
    # the one the consumers' database calls used.
    asyncio.run(database_sync_to_async(connections.close_all)())


@pytest.fixture
def auth_log(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """Capture presence's logs: the ``presence`` logger does not propagate to root."""
    presence_logger = logging.getLogger("presence")
    presence_logger.addHandler(caplog.handler)
    caplog.handler.setLevel(logging.DEBUG)
    previous = presence_logger.level
    presence_logger.setLevel(logging.DEBUG)
    try:
        yield caplog
    finally:
        presence_logger.setLevel(previous)
        presence_logger.removeHandler(caplog.handler)


@pytest.fixture(autouse=True)
def _short_legacy_sniffing(settings) -> None:
    """The suite's sniffing window (see TEST_LEGACY_DETECT_SECONDS), whatever the settings say."""
    settings.PRESENCE = {**settings.PRESENCE, "LEGACY_DETECT_SECONDS": TEST_LEGACY_DETECT_SECONDS}


@pytest.fixture(autouse=True)
def _fresh_throttle_counts() -> None:
    """Each test starts with no token-endpoint attempts counted (all come from 127.0.0.1)."""
    from django.core.cache import caches
    from django.core.cache.backends.locmem import LocMemCache

    cache = caches["throttle"]
    if isinstance(cache, LocMemCache):  # a Redis-backed one is the test's own business
        cache.clear()
