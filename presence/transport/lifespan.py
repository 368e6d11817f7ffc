"""ASGI lifespan: on shutdown, write the history still queued."""

from __future__ import annotations

from typing import Any

from presence.storage.history import flush_at_shutdown


async def lifespan_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Answer startup at once; on shutdown flush the history writer first."""
    while True:
        event = await receive()
        if event["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif event["type"] == "lifespan.shutdown":
            await flush_at_shutdown()
            await send({"type": "lifespan.shutdown.complete"})
            return
