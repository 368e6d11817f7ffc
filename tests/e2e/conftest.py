"""Real servers for the end-to-end tests: daphne (and ``runserver``) child processes.

Each server gets a free port, its own temp dir and SQLite file (migrated with
``manage.py migrate``), and a log file. A server is "up" when ``GET /health``
answers 200; start-up is polled against a deadline. When a test fails, the
tail of every server log it used is attached to its report.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable, Generator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple, TypeVar

import pytest
import redis
from google.protobuf import json_format

from bench.servers import service_command
from presence.protocol import pb
from tests.clients.live import AdminSession, ClientPool, http_get
from tests.conftest import REDIS_START_SECONDS, RedisServer, _answers, free_port

try:
    from playwright.async_api import async_playwright
except ImportError:  # reported by the `chromium` fixture, so other modules still run
    async_playwright = None  # type: ignore[assignment]

if TYPE_CHECKING:
    from playwright.async_api import Browser

PROJECT = Path(__file__).resolve().parents[2]
PYTHON = Path(sys.executable)
MAX_WS_BYTES = 64 * 1024  # PROTOCOL.md section 8; the Makefile passes the same numbers
START_SECONDS = 30.0  # Django start-up is ~1 s; generous for a loaded CI machine
STOP_SECONDS = 5.0
POLL_SECONDS = 0.05
LOG_TAIL_LINES = 60
# Debian's Chromium, which `make test` and .ci/run install (scripts/ensure-chromium).
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
# The parent's environment must not pick the child's database or channel layer.
SCRUBBED_ENV = ("REDIS_URL", "REDIS_CHANNEL_PREFIX", "DATABASE_URL", "SQLITE_PATH", "ALLOWED_HOSTS")


def server_env(tmp: Path, *, redis_url: str = "", redis_prefix: str = "") -> dict[str, str]:
    """The child's environment: its own SQLite file; Redis only when given."""
    env = {k: v for k, v in os.environ.items() if k not in SCRUBBED_ENV}
    env.update(
        DJANGO_SETTINGS_MODULE="graphwiz.settings",
        SQLITE_PATH=str(tmp / "db.sqlite3"),
        DEBUG="true",
        PYTHONUNBUFFERED="1",
        # Every test client comes from 127.0.0.1: the per-IP attempt limits
        # (sockets, token endpoint) are exercised by the integration tests.
        RATE_LIMIT_MAX_REQUESTS="100000",
        API_TOKEN_RATE_PER_IP="100000/minute",
        API_TOKEN_RATE_PER_USERNAME="100000/minute",
        API_SESSION_TOKEN_RATE="100000/minute",
        API_PUBLIC_ROOMS_RATE_PER_IP="100000/minute",
        PRESENCE_AUTH_TIMEOUT_SECONDS="1",
        # A socket dropped without a close frame stays present this long
        # (PROTOCOL.md section 6); the tests of departures wait for it.
        PRESENCE_LEAVE_GRACE_SECONDS="1",
    )
    if redis_url:
        env.update(REDIS_URL=redis_url, REDIS_CHANNEL_PREFIX=redis_prefix)
    return env


def daphne_command(port: int) -> list[str]:
    """The daphne command line the benchmark runs (as ``make run-daphne``) on ``port``."""
    return service_command("daphne", port)


def uvicorn_command(port: int) -> list[str]:
    """The uvicorn command line the benchmark runs (as ``make run``) on ``port``."""
    return service_command("uvicorn", port)


def runserver_command(port: int) -> list[str]:
    """Django's development server (daphne's, as 'daphne' leads INSTALLED_APPS)."""
    return [str(PYTHON), "manage.py", "runserver", f"127.0.0.1:{port}", "--noreload"]


def manage(*args: str, env: dict[str, str]) -> None:
    """Run ``manage.py *args`` with the child's environment; fail with its output."""
    done = subprocess.run(
        [str(PYTHON), "manage.py", *args],
        cwd=PROJECT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"{args[0]} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")


def migrate(env: dict[str, str]) -> None:
    """Create the child's database schema."""
    manage("migrate", "--noinput", env=env)


@dataclass
class Server:
    """A running server process and where to reach it."""

    name: str
    http_url: str
    ws_url: str
    sqlite_path: Path
    log_path: Path
    process: subprocess.Popen[bytes] = field(repr=False)

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        """The last ``lines`` lines the server wrote."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def wait_healthy(self, timeout: float = START_SECONDS) -> None:
        """Poll ``GET /health`` until it answers 200; fail with the log otherwise."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"{self.name} exited with {self.process.returncode}:\n{self.log_tail()}"
                )
            try:
                if http_get(f"{self.http_url}/health")[0] == 200:
                    return
            except OSError:
                pass  # not listening yet
            time.sleep(POLL_SECONDS)
        raise RuntimeError(f"{self.name} did not answer /health in {timeout} s:\n{self.log_tail()}")

    def stop(self) -> None:
        """SIGTERM, wait, then SIGKILL if it did not stop."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=STOP_SECONDS)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=STOP_SECONDS)


def start_server(
    name: str,
    tmp: Path,
    command_for: Callable[[int], list[str]],
    env: dict[str, str],
    *,
    migrate_first: bool = True,
) -> Server:
    """Migrate, start ``command_for(port)`` on a free port, and wait until it is healthy."""
    if migrate_first:
        migrate(env)
    port = free_port()
    command = command_for(port)
    log_path = tmp / f"{name}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command, cwd=PROJECT, env=env, stdout=log, stderr=subprocess.STDOUT
        )
    server = Server(
        name=name,
        http_url=f"http://127.0.0.1:{port}",
        ws_url=f"ws://127.0.0.1:{port}",
        sqlite_path=Path(env["SQLITE_PATH"]),
        log_path=log_path,
        process=process,
    )
    try:
        server.wait_healthy()
    except BaseException:
        server.stop()
        raise
    return server


@contextlib.contextmanager
def serving(
    tmp_path_factory: pytest.TempPathFactory,
    name: str,
    command_for: Callable[[int], list[str]] = uvicorn_command,
    *,
    redis_url: str = "",
    redis_prefix: str = "",
    **overrides: str,
) -> Iterator[Server]:
    """A server of a module's own: temp dir, SQLite file, log; stopped on exit.

    ``command_for`` defaults to ``make run``'s uvicorn command line; the
    environment is :func:`server_env`'s with ``overrides`` on top.
    """
    tmp = tmp_path_factory.mktemp(name)
    env = {**server_env(tmp, redis_url=redis_url, redis_prefix=redis_prefix), **overrides}
    server = start_server(name, tmp, command_for, env)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def daphne_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """daphne with the in-process channel layer (no REDIS_URL)."""
    with serving(tmp_path_factory, "daphne-memory", daphne_command) as server:
        yield server


@pytest.fixture(scope="module")
def redis_daphne_server(
    tmp_path_factory: pytest.TempPathFactory, redis_url: str
) -> Iterator[Server]:
    """daphne with the Redis channel layer, under a key prefix of its own."""
    prefix = f"gwe2e-{uuid.uuid4().hex[:8]}"
    with serving(
        tmp_path_factory, "daphne-redis", daphne_command, redis_url=redis_url, redis_prefix=prefix
    ) as server:
        yield server


@pytest.fixture(scope="module", params=["memory", "redis"])
def daphne_server_per_layer(request: pytest.FixtureRequest) -> Server:
    """The test runs against daphne with each channel layer in turn."""
    name = "daphne_server" if request.param == "memory" else "redis_daphne_server"
    server: Server = request.getfixturevalue(name)
    return server


@pytest.fixture(scope="module")
def redis_daphne_pair(
    tmp_path_factory: pytest.TempPathFactory, redis_url: str
) -> Iterator[tuple[Server, Server]]:
    """Two daphne instances sharing one Redis prefix and one database."""
    tmp = tmp_path_factory.mktemp("daphne-pair")
    env = server_env(tmp, redis_url=redis_url, redis_prefix=f"gwe2e-{uuid.uuid4().hex[:8]}")
    servers: list[Server] = []
    try:
        for name in ("daphne-a", "daphne-b"):
            servers.append(start_server(name, tmp, daphne_command, env, migrate_first=not servers))
        yield servers[0], servers[1]
    finally:
        for server in servers:
            server.stop()


@pytest.fixture(scope="module")
def runserver_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """``manage.py runserver --noreload``, as a developer starts it."""
    with serving(tmp_path_factory, "runserver", runserver_command) as server:
        yield server


@pytest.fixture
async def chromium() -> AsyncIterator[Browser]:
    """Headless Debian Chromium driven by Playwright; fails with the reason when it cannot run."""
    if async_playwright is None:
        pytest.fail("playwright is not installed: pip install -r requirements-dev.txt")
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: run scripts/ensure-chromium (make test does)")
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield browser
        finally:
            await browser.close()


@pytest.fixture
async def clients() -> AsyncIterator[ClientPool]:
    """Open WebSocket clients through this; they are closed after the test."""
    pool = ClientPool()
    yield pool
    await pool.aclose()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Attach the log tail of every server a failed test used to its report."""
    report = yield
    if report.failed:
        for value in getattr(item, "funcargs", {}).values():
            servers = value if isinstance(value, tuple) else (value,)
            for server in servers:
                if isinstance(server, Server):
                    report.sections.append((f"{server.name} log (tail)", server.log_tail()))
    return report


@pytest.fixture(scope="module")
def uvicorn_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """uvicorn (the server ``make run`` uses) with the in-process channel layer."""
    # The slow-reader test streams voice faster than the per-connection message
    # limit allows; that limit has its own tests.
    with serving(tmp_path_factory, "uvicorn-memory", MESSAGE_RATE_LIMIT="100000") as server:
        yield server


# --- A two-instance cluster on a private Redis (issue 5) ---------------------

# The registry timings the cluster tests run with: a dead instance's lease runs
# out in 3 s and the survivors sweep every 0.5 s, so a crash is cleaned up in
# about 3.5 s instead of the production default's 20 s.
CLUSTER_LEASE_SECONDS = 3.0
CLUSTER_HEARTBEAT_SECONDS = 0.5


class PrivateRedis(RedisServer):
    """A redis-server of the test's own, which the test may kill and start again.

    Never the machine's shared Redis: the failure tests kill this one. It keeps
    no data on disk (``--save ""``), so a restart comes back empty, as a
    replaced Redis would.
    """

    def kill(self) -> None:
        """SIGKILL, as a crash would: every client connection drops at once."""
        self.process.kill()
        self.process.wait(timeout=STOP_SECONDS)

    def restart(self) -> None:
        """Start redis-server again on the same port and wait until it answers."""
        assert self.process.poll() is not None, "redis-server is still running"
        self.process = subprocess.Popen(
            self.process.args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + REDIS_START_SECONDS
        while not _answers(self.url):
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise RuntimeError(f"redis-server did not start again on port {self.port}")
            time.sleep(POLL_SECONDS)


class Cluster(NamedTuple):
    """Two daphne instances sharing one private Redis, one key prefix and one SQLite file.

    A tuple, so the report hook above attaches both servers' logs to a failed test.
    """

    a: Server
    b: Server
    redis: PrivateRedis
    prefix: str
    # Raw bytes, not decoded: the conn hash's ``player`` field is a serialized protobuf.
    store: redis.Redis

    def key(self, *parts: str) -> str:
        """A registry key under the cluster's prefix: ``key("room", "r1", "host")``."""
        return ":".join((self.prefix, *parts))

    def instances(self) -> list[str]:
        """The live instance ids, from ``P:instances``."""
        return [m.decode() for m in self.store.zrange(self.key("instances"), 0, -1)]

    def members(self, room: str) -> list[str]:
        """The room's client ids in join order, from ``P:room:{room}:members``."""
        return [m.decode() for m in self.store.zrange(self.key("room", room, "members"), 0, -1)]

    def host(self, room: str) -> str | None:
        """The room's host, from ``P:room:{room}:host``."""
        value = self.store.get(self.key("room", room, "host"))
        return None if value is None else bytes(value).decode()

    def conn(self, room: str, client_id: str) -> dict[str, bytes]:
        """The conn hash of ``client_id`` (empty when there is none)."""
        raw = self.store.hgetall(self.key("room", room, "conn", client_id))
        return {bytes(k).decode(): bytes(v) for k, v in raw.items()}

    def instance_of(self, room: str, client_id: str) -> str:
        """The id of the instance ``client_id`` is connected to."""
        return self.conn(room, client_id)["instance"].decode()

    def player(self, room: str, client_id: str) -> pb.PlayerSnapshot | None:
        """The ``PlayerSnapshot`` of ``client_id`` as synced to Redis, if any."""
        raw = self.conn(room, client_id).get("player")
        return None if raw is None else parse_snapshot(raw, pb.PlayerSnapshot())

    def entities(self, room: str, owner_id: str) -> dict[str, pb.EntitySnapshot]:
        """The entities of ``owner_id`` in Redis, by entity id."""
        raw = self.store.hgetall(self.key("room", room, "entities", owner_id))
        return {
            bytes(k).decode(): parse_snapshot(bytes(v), pb.EntitySnapshot()) for k, v in raw.items()
        }

    def exists(self, *parts: str) -> bool:
        """Whether the registry key ``parts`` exists."""
        return bool(self.store.exists(self.key(*parts)))


SnapshotT = TypeVar("SnapshotT", pb.PlayerSnapshot, pb.EntitySnapshot)


def parse_snapshot(raw: bytes, message: SnapshotT) -> SnapshotT:
    """A snapshot from Redis: binary protobuf, or its proto3 JSON form.

    The issue says "serialized" without naming the encoding; binary never starts
    with ``{`` (that would be field 15, wire type "start group").
    """
    if raw.startswith(b"{"):
        json_format.Parse(raw.decode(), message)
    else:
        message.ParseFromString(raw)
    return message


def cluster_env(tmp: Path, redis_url: str, prefix: str) -> dict[str, str]:
    """``server_env`` with Redis and the short registry lease and heartbeat."""
    env = server_env(tmp, redis_url=redis_url, redis_prefix=prefix)
    env.update(
        PRESENCE_REGISTRY_LEASE_SECONDS=str(CLUSTER_LEASE_SECONDS),
        PRESENCE_REGISTRY_HEARTBEAT_SECONDS=str(CLUSTER_HEARTBEAT_SECONDS),
    )
    return env


@contextlib.contextmanager
def running_cluster(
    tmp: Path, private_redis: PrivateRedis, *, extra_env: dict[str, str] | None = None
) -> Iterator[Cluster]:
    """Start daphne A and B on ``private_redis``; stop both afterwards (a dead one is fine)."""
    prefix = f"gwcluster-{uuid.uuid4().hex[:8]}"
    env = {**cluster_env(tmp, private_redis.url, prefix), **(extra_env or {})}
    store = redis.Redis.from_url(private_redis.url, socket_timeout=5)
    servers: list[Server] = []
    try:
        for name in ("daphne-a", "daphne-b"):
            servers.append(start_server(name, tmp, daphne_command, env, migrate_first=not servers))
        yield Cluster(servers[0], servers[1], private_redis, prefix, store)
    finally:
        for server in servers:
            server.stop()
        store.close()


@pytest.fixture(scope="module")
def cluster_redis() -> Iterator[PrivateRedis]:
    """A private redis-server for a module whose tests do not kill it."""
    server = PrivateRedis()
    yield server
    server.stop()


@pytest.fixture
def own_redis() -> Iterator[PrivateRedis]:
    """A private redis-server for one test, which may kill and restart it."""
    server = PrivateRedis()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def cluster(
    tmp_path_factory: pytest.TempPathFactory, cluster_redis: PrivateRedis
) -> Iterator[Cluster]:
    """Two instances shared by a module's tests (each test uses rooms of its own)."""
    with running_cluster(tmp_path_factory.mktemp("cluster"), cluster_redis) as started:
        yield started


@pytest.fixture
def fresh_cluster(tmp_path: Path, own_redis: PrivateRedis) -> Iterator[Cluster]:
    """Two instances for one test, which may kill either of them or their Redis."""
    with running_cluster(tmp_path, own_redis) as started:
        yield started


# --- Staff for the moderation tests (issue 6) --------------------------------


@dataclass(frozen=True)
class StaffUser:
    """A Django superuser in a server's database, and how to sign in as it."""

    username: str
    password: str
    pk: int


def create_superuser(server: Server, username: str, password: str) -> StaffUser:
    """``manage.py createsuperuser --noinput`` in ``server``'s database (shared by a cluster)."""
    env = server_env(server.sqlite_path.parent)
    env.update(
        SQLITE_PATH=str(server.sqlite_path),
        DJANGO_SUPERUSER_USERNAME=username,
        DJANGO_SUPERUSER_PASSWORD=password,
        DJANGO_SUPERUSER_EMAIL=f"{username}@example.com",
    )
    manage("createsuperuser", "--noinput", env=env)
    with contextlib.closing(sqlite3.connect(server.sqlite_path, timeout=5)) as conn:
        (pk,) = conn.execute("SELECT id FROM auth_user WHERE username = ?", (username,)).fetchone()
    return StaffUser(username, password, int(pk))


@pytest.fixture(scope="module")
def cluster_staff(cluster: Cluster) -> StaffUser:
    """A superuser in the cluster's shared database."""
    return create_superuser(cluster.a, "moderator", f"mod-{uuid.uuid4().hex}")


@pytest.fixture(scope="module")
def cluster_admin(cluster: Cluster, cluster_staff: StaffUser) -> AdminSession:
    """``cluster_staff`` signed in to the admin of instance A."""
    session = AdminSession(cluster.a.http_url)
    session.login(cluster_staff.username, cluster_staff.password)
    return session
