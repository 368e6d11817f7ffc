"""SIGTERM to uvicorn (the server ``make run`` and the Dockerfile use): 4000, then gone.

The cluster tests cover daphne; uvicorn installs its own SIGTERM handler,
which the service must wrap the same way.
"""

from __future__ import annotations

import signal
import uuid
from pathlib import Path

import redis

from tests.clients.live import ClientPool, expect_close, wait_until
from tests.e2e.conftest import server_env, start_server, uvicorn_command

GOING_AWAY = 4000
STOP_SECONDS = 8.0


async def test_sigterm_closes_sockets_with_4000_and_leaves_the_registry(
    tmp_path: Path, redis_url: str, clients: ClientPool
) -> None:
    prefix = f"gwe2e-{uuid.uuid4().hex[:8]}"
    env = server_env(tmp_path, redis_url=redis_url, redis_prefix=prefix)
    server = start_server("uvicorn-redis", tmp_path, uvicorn_command, env)
    store = redis.Redis.from_url(redis_url)
    try:
        alice = await clients.join(server.ws_url, "drain", "alice")
        members = f"{prefix}:room:drain:members"
        assert store.zrange(members, 0, -1) == [alice.client_id.encode()]

        server.process.terminate()

        before = await expect_close(alice, GOING_AWAY, timeout=STOP_SECONDS)
        assert [m.WhichOneof("payload") for m in before] == []
        await wait_until(lambda: server.process.poll() is not None, timeout=STOP_SECONDS)
        # uvicorn re-raises the signal it shut down for once it is done: -SIGTERM.
        assert server.process.returncode in (0, -signal.SIGTERM), server.log_tail()
        assert "Traceback" not in server.log_path.read_text()
        assert store.zcard(members) == 0
        assert store.zcard(f"{prefix}:instances") == 0
        # The room log stays for the resume window (a client may resume on
        # the restarted instance); it expires on its own.
        room_log = (b":log", b":bodies", b":logseq")
        left = list(store.scan_iter(f"{prefix}:room:*"))
        assert [key for key in left if not key.endswith(room_log)] == []
        assert all(0 < store.pttl(key) <= 120_000 for key in left)
    finally:
        server.stop()
        for key in store.scan_iter(f"{prefix}:*"):
            store.delete(key)
        store.close()
