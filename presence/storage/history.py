"""Connection history written behind the hot path, in batches.

A connect or disconnect only queues a record; a short-lived task writes what
has gathered in one transaction (``HISTORY_FLUSH_SECONDS`` after the first
record, or at once when chat needs its sender's row). The last records are
written on shutdown (ASGI lifespan). A crash loses at most one batch window
of history rows, never a chat line: chat is stored before it is acknowledged.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from channels.db import database_sync_to_async

from presence.per_loop import per_event_loop
from presence.storage import services

logger = logging.getLogger(__name__)

HISTORY_FLUSH_SECONDS = 0.05
MAX_PENDING_RECORDS = 100_000  # beyond this (database gone for long) records are dropped


class HistoryWriter:
    """Queues session opens and closes and writes them in batches."""

    def __init__(self, *, flush_seconds: float = HISTORY_FLUSH_SECONDS) -> None:
        self.flush_seconds = flush_seconds
        self._opens: list[dict[str, Any]] = []
        self._closes: list[dict[str, Any]] = []
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        self.dropped = 0

    def __len__(self) -> int:
        return len(self._opens) + len(self._closes)

    def opened(self, **record: Any) -> None:
        """Queue the open of a session (``services.connection_sessions_open`` fields)."""
        self._queue(self._opens, record)

    def closed(self, **record: Any) -> None:
        """Queue the close of a session (``services.connection_session_close`` fields)."""
        self._queue(self._closes, record)

    def _queue(self, records: list[dict[str, Any]], record: dict[str, Any]) -> None:
        if len(self) >= MAX_PENDING_RECORDS:
            self.dropped += 1
            logger.error("history backlog full; dropping a session record")
            return
        records.append(record)
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._flush_soon())

    async def _flush_soon(self) -> None:
        await asyncio.sleep(self.flush_seconds)
        while len(self):
            await self.flush()

    async def flush(self) -> None:
        """Write everything queued so far (opens before closes), in one transaction each."""
        async with self._lock:
            opens, self._opens = self._opens, []
            closes, self._closes = self._closes, []
            if not opens and not closes:
                return
            self.dropped += await database_sync_to_async(_write)(opens, closes)


def _write(opens: list[dict[str, Any]], closes: list[dict[str, Any]]) -> int:
    """Write a batch; if it fails, each record alone, so one bad record costs only itself."""
    dropped = 0
    try:
        services.connection_sessions_open(sessions=opens)
    except Exception:
        logger.exception("a batch of %d session opens failed; writing them one by one", len(opens))
        for record in opens:
            try:
                services.connection_sessions_open(sessions=[record])
            except Exception:
                logger.exception("dropping one session open")
                dropped += 1
    for close in closes:
        try:
            services.connection_session_close(**close)
        except Exception:
            logger.exception("dropping one session close")
            dropped += 1
    return dropped


get_history = per_event_loop(HistoryWriter)


async def flush_at_shutdown() -> None:
    """Write what is still queued; a failure is logged, never raised (the process is ending)."""
    try:
        await get_history().flush()
    except Exception:
        logger.exception("could not write the last connection history")


async def close_lost_sessions(client_ids: list[str]) -> None:
    """Close the history rows of connections lost with their instance (reason "lost")."""
    try:
        await database_sync_to_async(services.connection_sessions_lost)(
            assigned_client_ids=client_ids
        )
    except Exception:
        logger.exception("could not close the sessions of %d lost connections", len(client_ids))
