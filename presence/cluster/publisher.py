"""What this process hands to the others, sent by one task, in order.

Joins, leaves, client messages and ticks only *queue* their fan-out here; one
task per hub writes the queued registry changes (one round trip), then sends
each room's queued items as one group message, room by room, in the order
they were queued. Nothing a connection does waits for the channel layer:
channels_redis sends one message at a time per connection, and a leave or a
tick that waited its turn behind every other publish made a burst of
disconnects take tens of seconds (the churn of 5,000 connections that
motivated this module).
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from presence import metrics
from presence.cluster.bridge import LayerBridge, LayerFailed
from presence.cluster.registry import RegistryUnavailable
from presence.protocol.moderation import ModerationOrder
from presence.protocol.room import Broadcast, RoomChanges

logger = logging.getLogger(__name__)

# Queued fan-outs beyond which volatile-only ones (poses) are dropped: the
# channel layer is not keeping up, and newer poses will follow. Reliable
# ones are never dropped here; a layer that stays down closes every local
# connection with 4012 instead.
MAX_QUEUED = 10_000


@dataclass(slots=True)
class _Fanout:
    room_id: str
    broadcasts: list[Broadcast]
    host: str | None = None
    moderation: ModerationOrder | None = None
    changes: RoomChanges | None = None
    unsubscribe: bool = False  # leave the room's group (if still unused) after the above

    @property
    def volatile_only(self) -> bool:
        return not (
            self.moderation
            or self.changes
            or self.host is not None
            or self.unsubscribe
            or any(b.reliable for b in self.broadcasts)
        )


@dataclass(slots=True)
class _Batch:
    """One room's consecutive fan-outs, merged into one group message."""

    room_id: str
    broadcasts: list[Broadcast] = field(default_factory=list)
    host: str | None = None
    moderation: ModerationOrder | None = None


def _batches(queued: list[_Fanout]) -> list[_Batch]:
    """Merge fan-outs of one room that follow each other (none carrying an order)."""
    batches: list[_Batch] = []
    for fanout in queued:
        last = batches[-1] if batches else None
        if (
            last is None
            or last.room_id != fanout.room_id
            or last.moderation is not None
            or fanout.moderation is not None
        ):
            last = _Batch(fanout.room_id)
            batches.append(last)
        last.broadcasts.extend(fanout.broadcasts)
        if fanout.host is not None:
            last.host = fanout.host
        last.moderation = fanout.moderation
    return [b for b in batches if b.broadcasts or b.moderation or b.host is not None]


class Publisher:
    """The hub's outgoing queue and the task that empties it."""

    def __init__(
        self,
        bridge: LayerBridge,
        *,
        write: Callable[[dict[str, RoomChanges]], Awaitable[None]],
        on_failure: Callable[[str, Exception], object],
        still_needed: Callable[[str], bool],
        max_queued: int = MAX_QUEUED,
    ) -> None:
        self.bridge = bridge
        self.write = write
        self.on_failure = on_failure
        self.still_needed = still_needed
        self.max_queued = max_queued
        self._queue: list[_Fanout] = []
        self._task: asyncio.Task[None] | None = None
        self._idle = asyncio.Event()
        self._idle.set()
        self.dropped = 0

    def send(
        self,
        room_id: str,
        broadcasts: list[Broadcast],
        *,
        host: str | None = None,
        moderation: ModerationOrder | None = None,
        changes: RoomChanges | None = None,
    ) -> None:
        """Queue a fan-out of ``room_id`` (and the registry changes it announces)."""
        fanout = _Fanout(room_id, broadcasts, host, moderation, changes or None)
        if fanout.volatile_only:
            if not broadcasts or not self.bridge.remote:
                return
            if len(self._queue) >= self.max_queued:
                self.dropped += 1
                metrics.CHANNEL_LAYER_DROPS.labels(reason="publish_backlog").inc()
                return
        self._push(fanout)

    def unsubscribe(self, room_id: str) -> None:
        """Leave the room's group once what is queued for it has gone, unless it is in use."""
        self._push(_Fanout(room_id, [], unsubscribe=True))

    async def drained(self) -> None:
        """Wait until everything queued so far has been sent (or failed)."""
        await self._idle.wait()

    def _push(self, fanout: _Fanout) -> None:
        self._queue.append(fanout)
        self._idle.clear()
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="presence-publisher")

    async def _run(self) -> None:
        try:
            while self._queue:
                queued, self._queue = self._queue, []
                await self._send(queued)
        finally:
            if not self._queue:
                self._idle.set()

    async def _send(self, queued: list[_Fanout]) -> None:
        changes: dict[str, RoomChanges] = {}
        for fanout in queued:
            if fanout.changes:
                changes.setdefault(fanout.room_id, RoomChanges()).extend(fanout.changes)
        try:
            # State reaches the registry (and numbering the session journal)
            # before the messages announcing it.
            await self.write(changes)
            for batch in _batches(queued):
                await self.bridge.publish(
                    batch.room_id, batch.broadcasts, host=batch.host, moderation=batch.moderation
                )
        except RegistryUnavailable as exc:
            self.on_failure("registry", exc)
        except LayerFailed as failed:
            self.on_failure(failed.operation, failed.cause)
        for fanout in queued:
            if fanout.unsubscribe:
                await self.bridge.unsubscribe(
                    fanout.room_id,
                    still_needed=functools.partial(self.still_needed, fanout.room_id),
                )
