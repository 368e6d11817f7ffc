"""ASGI lifespan: on shutdown, write the history still queued."""

from __future__ import annotations

import logging
from typing import Any

from presence.history import get_history

logger = logging.getLogger(__name__)


async def lifespan_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Answer startup at once; on shutdown flush the history writer first."""
    while True:
        event = await receive()
        if event["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif event["type"] == "lifespan.shutdown":
            try:
                await get_history().flush()
            except Exception:
                logger.exception("could not write the last history records")
            await send({"type": "lifespan.shutdown.complete"})
            return
