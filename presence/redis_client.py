"""The one way presence opens a Redis client: a bounded pool that waits, not fails.

redis-py's default pool raises ``MaxConnectionsError`` as soon as 100
connections are in use; presence read that as "Redis is down" and closed
every local socket with 4012 — a burst of joins (a reconnect storm after an
instance died) did exactly that. A ``BlockingConnectionPool`` of the same
size makes the 101st caller wait for a free connection, up to the socket
timeout, instead.
"""

from __future__ import annotations

import redis.asyncio as aioredis
from redis.asyncio.connection import BlockingConnectionPool
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

POOL_SIZE = 100  # connections per client and event loop (redis-py's own default)


def redis_client(url: str, *, timeout: float, pool_size: int = POOL_SIZE) -> aioredis.Redis:
    """A client of ``url`` whose calls time out after ``timeout`` s, waiting for the pool too.

    One quick retry covers a pooled connection Redis dropped (a restart); more
    would hold a handshake for several timeouts.
    """
    pool = BlockingConnectionPool.from_url(
        url,
        max_connections=pool_size,
        timeout=timeout,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry=Retry(NoBackoff(), 1),
    )
    return aioredis.Redis(connection_pool=pool)
