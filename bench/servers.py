"""The benchmarked servers as child processes: baselines a and n, daphne, uvicorn.

Each gets a free port on 127.0.0.1, a log file in the output folder, its own
process group (so a stop reaches everything it started) and, for the service,
its own SQLite file migrated before start. A server is up when it accepts TCP
(the relay) or answers ``GET /health`` with 200 (the service). With
``--instances N`` a :class:`ServerGroup` holds N service processes sharing one
Redis prefix and one SQLite file.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from bench import procstat

PROJECT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent  # uvicorn of the running virtualenv
HOST = "127.0.0.1"  # the benchmark only ever targets this machine
MAX_WS_BYTES = 64 * 1024  # PROTOCOL.md section 8, as the Makefile passes it
START_SECONDS = 30.0
STOP_SECONDS = 5.0
MIGRATE_SECONDS = 120.0
LOG_TAIL_LINES = 30
# The parent's environment must not choose the child's database or channel layer.
SCRUBBED_ENV = ("REDIS_URL", "REDIS_CHANNEL_PREFIX", "DATABASE_URL", "SQLITE_PATH", "ALLOWED_HOSTS")
SERVERS = ("daphne", "uvicorn")
# DEBUG is off, so the service wants a real secret; one per run, shared by its instances.
SECRET_KEY = secrets.token_urlsafe(50)
# uvicorn's websockets-sansio protocol with the frame guard (presence/transport/uvicorn_ws.py).
UVICORN_WS_PROTOCOL = "presence.transport.uvicorn_ws:GuardedWebSocketProtocol"
# uvicorn's h11 protocol with a deadline for a request head (presence/transport/uvicorn_http.py).
UVICORN_HTTP_PROTOCOL = "presence.transport.uvicorn_http:GuardedH11Protocol"

# Baseline n: bench/node/relay.mjs with `ws` pinned by its package-lock.json.
NODE_DIR = PROJECT / "bench" / "node"
NODE_MAJOR = 20  # the oldest Node.js the relay is run on
NPM_SECONDS = 180.0

_http = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # no proxy for 127.0.0.1


class ServerError(Exception):
    """A server did not start, or died."""


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    return free_ports(1)[0]


def free_ports(count: int) -> list[int]:
    """``count`` distinct TCP ports nobody listens on right now."""
    with contextlib.ExitStack() as stack:  # all bound at once, so no port comes twice
        socks = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in socks:
            sock.bind((HOST, 0))
        return [int(sock.getsockname()[1]) for sock in socks]


def service_env(
    tmp: Path, *, redis_url: str = "", redis_prefix: str = "", extra: dict[str, str] | None = None
) -> dict[str, str]:
    """The service's environment: production-like settings, its own SQLite file."""
    env = {k: v for k, v in os.environ.items() if k not in SCRUBBED_ENV}
    env.update(
        DJANGO_SETTINGS_MODULE="graphwiz.settings",
        DEBUG="false",
        SECRET_KEY=SECRET_KEY,
        ALLOWED_HOSTS="127.0.0.1,localhost",
        SQLITE_PATH=str(tmp / "bench.sqlite3"),
        # The connection-rate limit protects production from one noisy IP; here
        # every client comes from 127.0.0.1 on purpose.
        RATE_LIMIT_MAX_REQUESTS="1000000",
        # Load-generator clients join with a bare user_id: development-mode identity.
        PRESENCE_DEV_AUTH="true",
        LOG_LEVEL="WARNING",  # one INFO line per join/leave would be measured too
        PYTHONUNBUFFERED="1",
    )
    if redis_url:
        env.update(REDIS_URL=redis_url, REDIS_CHANNEL_PREFIX=redis_prefix)
    env.update(extra or {})
    return env


def migrate(env: dict[str, str]) -> None:
    """``manage.py migrate`` into the service's database."""
    done = subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput"],
        cwd=PROJECT,
        env=env,
        capture_output=True,
        text=True,
        timeout=MIGRATE_SECONDS,
        check=False,
    )
    if done.returncode != 0:
        raise ServerError(f"migrate failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")


def relay_command(port: int) -> list[str]:
    """Baseline a."""
    return [sys.executable, "-m", "bench.baseline_relay", "--host", HOST, "--port", str(port)]


def node_relay_command(port: int) -> list[str]:
    """Baseline n (call :func:`ensure_node_relay` first)."""
    node = shutil.which("node") or "node"
    return [node, str(NODE_DIR / "relay.mjs"), "--host", HOST, "--port", str(port)]


def ensure_node_relay() -> None:
    """Check Node.js and install ``ws`` with ``npm ci`` when ``node_modules`` is missing.

    Raises ``ServerError`` saying what to install when ``node`` or ``npm`` is
    absent or too old, or when ``npm ci`` fails (its output attached).
    """
    node = shutil.which("node")
    if node is None:
        raise ServerError(
            f"baseline n needs Node.js {NODE_MAJOR}+ on PATH (`node`); "
            "install it, or pass --baselines a"
        )
    version = subprocess.run(
        [node, "--version"], capture_output=True, text=True, timeout=10, check=False
    ).stdout.strip()
    major = re.match(r"v(\d+)\.", version)
    if major is None or int(major.group(1)) < NODE_MAJOR:
        raise ServerError(f"baseline n needs Node.js {NODE_MAJOR}+, found {version or 'nothing'}")
    if (NODE_DIR / "node_modules" / "ws" / "package.json").is_file():
        return
    npm = shutil.which("npm")
    if npm is None:
        raise ServerError("baseline n needs npm to install `ws` (bench/node/package-lock.json)")
    done = subprocess.run(
        [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
        cwd=NODE_DIR,
        capture_output=True,
        text=True,
        timeout=NPM_SECONDS,
        check=False,
    )
    if done.returncode != 0:
        raise ServerError(f"npm ci in {NODE_DIR} failed ({done.returncode}):\n{done.stderr}")


def service_command(server: str, port: int, *, quiet: bool = True) -> list[str]:
    """The service under ``daphne`` or ``uvicorn``, as the Makefile starts it, on ``port``.

    The same options as ``make run-daphne`` and ``make run`` (and the
    Dockerfile): 64 KiB frame limits, daphne through ``graphwiz.daphne_cli``
    (its access log redacted), no proxy headers believed by the server
    itself. ``quiet`` (the benchmark) turns uvicorn's access log and INFO
    lines off: they would be measured too.
    """
    if server == "daphne":
        return [
            sys.executable,
            "-m",
            "graphwiz.daphne_cli",
            "-b",
            HOST,
            "-p",
            str(port),
            "--websocket-max-message-size",
            str(MAX_WS_BYTES),
            "--websocket-max-frame-size",
            str(MAX_WS_BYTES),
            "graphwiz.asgi:application",
        ]
    if server == "uvicorn":
        command = [
            str(BIN / "uvicorn"),
            "graphwiz.asgi:application",
            "--host",
            HOST,
            "--port",
            str(port),
            # The same HTTP and WebSocket options as `make run` and the Dockerfile.
            "--http",
            UVICORN_HTTP_PROTOCOL,
            "--ws",
            UVICORN_WS_PROTOCOL,
            "--ws-max-size",
            str(MAX_WS_BYTES),
            "--ws-per-message-deflate",
            "false",
            # uvicorn believes X-Forwarded-For from 127.0.0.1 by default; only
            # TRUSTED_PROXIES may (presence/transport/ratelimits.py).
            "--no-proxy-headers",
            # uvloop: the event loop, transports and callbacks in C (pinned in requirements.txt).
            "--loop",
            "uvloop",
        ]
        if quiet:
            command += ["--no-access-log", "--log-level", "warning"]
        return command
    raise ValueError(f"unknown server {server!r}; choose from {', '.join(SERVERS)}")


@dataclass
class ServerProcess:
    """One running target."""

    name: str
    port: int
    command: list[str]
    env: dict[str, str]
    log_path: Path
    http_health: bool  # True: ready when GET /health is 200; False: when TCP accepts
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def launch(self) -> None:
        """Start the process (not waiting for it to be ready)."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                self.command,
                cwd=PROJECT,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # Ctrl-C goes to us; we stop it ourselves
            )

    def wait_ready(self, timeout: float = START_SECONDS) -> None:
        """Poll until the launched process is ready; ``ServerError`` if it dies or times out."""
        deadline = time.monotonic() + timeout
        while not self._ready():
            self.check_alive()
            if time.monotonic() > deadline:
                raise ServerError(f"{self.name} not ready in {timeout:.0f} s\n{self.tail()}")
            time.sleep(0.05)

    def _ready(self) -> bool:
        if not self.http_health:
            try:
                with socket.create_connection((HOST, self.port), timeout=0.5):
                    return True
            except OSError:
                return False
        try:
            with _http.open(f"http://{HOST}:{self.port}/health", timeout=2.0) as response:
                return int(response.status) == 200
        except (OSError, urllib.error.URLError):
            return False

    @property
    def pid(self) -> int:
        """The server's process id."""
        assert self.process is not None
        return self.process.pid

    def pids(self) -> list[int]:
        """The server process and its descendants."""
        return procstat.descendants(self.pid)

    def check_alive(self) -> None:
        """Raise ``ServerError`` (with the log) if the server has exited."""
        if self.process is not None and self.process.poll() is not None:
            raise ServerError(f"{self.name} exited with {self.process.returncode}\n{self.tail()}")

    def tail(self, lines: int = LOG_TAIL_LINES) -> str:
        """The last lines of the server's log."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def stop(self) -> None:
        """SIGTERM the process group, wait, then SIGKILL it."""
        if self.process is None or self.process.poll() is not None:
            return
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(self.process.pid, sig)
            except ProcessLookupError:
                return
            try:
                self.process.wait(timeout=STOP_SECONDS)
                return
            except subprocess.TimeoutExpired:
                continue


@dataclass
class ServerGroup:
    """One target: one server process, or N instances of the service on one Redis.

    CPU and memory are summed over every instance and its descendants.
    """

    name: str
    servers: list[ServerProcess]

    @property
    def ports(self) -> list[int]:
        """Where the instances listen, in instance order."""
        return [server.port for server in self.servers]

    def start(self) -> None:
        """Launch every instance, then wait until all are ready."""
        for server in self.servers:
            server.launch()
        deadline = time.monotonic() + START_SECONDS
        for server in self.servers:
            server.wait_ready(max(1.0, deadline - time.monotonic()))

    def stop(self) -> None:
        """Stop every instance."""
        for server in self.servers:
            server.stop()

    def check_alive(self) -> None:
        """Raise ``ServerError`` (with its log) if any instance has exited."""
        for server in self.servers:
            server.check_alive()

    def pids(self) -> list[int]:
        """Every instance and its descendants."""
        return [pid for server in self.servers for pid in server.pids()]

    def cpu_seconds(self) -> float:
        """CPU time all instances have used so far."""
        return procstat.cpu_seconds(self.pids())

    def rss_bytes(self) -> int:
        """Resident memory of all instances now."""
        return procstat.rss_bytes(self.pids())

    def wait_quiet(self, *, below: float = 0.10, timeout: float = 5.0, step: float = 0.2) -> float:
        """Wait until the instances together use less than ``below`` of a core; seconds waited."""
        begin = time.monotonic()
        last = self.cpu_seconds()
        while time.monotonic() - begin < timeout:
            time.sleep(step)
            now = self.cpu_seconds()
            if (now - last) / step < below:
                break
            last = now
        return time.monotonic() - begin
