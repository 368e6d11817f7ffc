"""Keeps this instance's part of the shared registry true (with ``REDIS_URL``).

One task per process: every ``POSE_SYNC_HZ``-th of a second it writes the
poses that changed; once a second it catches up from the room logs what the
channel layer lost (:mod:`presence.cluster.catchup`); every
``REGISTRY_HEARTBEAT_SECONDS`` it renews the instance's heartbeat (and its
connections' leases and sessions), sweeps instances whose lease and grace
expired and announces their members' departures. After Redis failed
(the hub closed its members with 4012) the first heartbeat that succeeds
removes what this instance left behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from presence.cluster.hub import BackendUnavailable, Hub
from presence.cluster.registry import RegistryUnavailable
from presence.conf import PresenceSettings
from presence.protocol.codes import CloseCode

logger = logging.getLogger(__name__)


class Keeper:
    """Heartbeat, sweep and pose sync of one hub."""

    def __init__(self, hub: Hub, *, heartbeat_seconds: float, pose_sync_hz: float) -> None:
        self.hub = hub
        self.heartbeat_seconds = heartbeat_seconds
        self.sync_seconds = 1.0 / pose_sync_hz
        self.task: asyncio.Task[None] | None = None
        self._stopping = False

    def start(self) -> None:
        """Run in the background until :meth:`stop`."""
        if self.task is None or self.task.done():
            self._stopping = False
            self.task = asyncio.create_task(self.run(), name="presence-keeper")

    async def stop(self) -> None:
        """Stop the background task."""
        if self.task is not None:
            # Python 3.11's wait_for inside redis-py can swallow a cancellation;
            # the flag ends the loop even then.
            self._stopping = True
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
            self.task = None

    async def run(self) -> None:
        """Sync poses often, heartbeat and sweep less often; never stop on failure."""
        loop = asyncio.get_running_loop()
        this_task = asyncio.current_task()
        next_heartbeat = next_catch_up = loop.time()
        # Python 3.11's wait_for inside redis-py can swallow a cancellation that
        # races with a reply: check for one on every round, or never stop.
        while not self._stopping and not (this_task and this_task.cancelling()):
            try:
                if loop.time() >= next_heartbeat:
                    next_heartbeat = loop.time() + self.heartbeat_seconds
                    await self.heartbeat()
                elif not self.hub.degraded:
                    await self.hub.sync()
                    if loop.time() >= next_catch_up:
                        next_catch_up = loop.time() + self.hub.catchup.period
                        await self.hub.catch_up()
            except BackendUnavailable:
                pass  # the hub has counted it and closed its members
            except Exception:  # a failed round must not end the keeper
                logger.exception("registry upkeep failed; retrying")
            await asyncio.sleep(min(self.sync_seconds, self.heartbeat_seconds))

    async def heartbeat(self) -> None:
        """Renew, reconcile after a failure, then sweep dead instances."""
        hub = self.hub
        try:
            beat = await hub.registry.heartbeat(hub.instance_id)
            hub.check_registered(beat.was_unknown)
            if beat.expired:  # this instance stalled past its own leases
                gone = {d.client_id for d in beat.expired}
                hub.abort_clients(gone, CloseCode.BACKEND_UNAVAILABLE, "backend unavailable")
                await hub.announce(beat.expired)
            if hub.degraded:
                keep = {
                    (room_id, cid) for room_id, room in hub.rooms.items() for cid in room.members
                }
                await hub.announce(await hub.registry.retire(hub.instance_id, keep))
                hub.degraded = False
                logger.warning("Redis answers again; registry reconciled")
            await hub.announce(await hub.registry.sweep())
            await hub.renew_sessions()
        except RegistryUnavailable as exc:
            hub.backend_failed("heartbeat", exc)


def start_keeper(hub: Hub, conf: PresenceSettings) -> Keeper | None:
    """Start the keeper of ``hub`` when its registry is shared with other instances."""
    if not hub.registry.shared:
        return None
    keeper = Keeper(
        hub,
        heartbeat_seconds=conf.REGISTRY_HEARTBEAT_SECONDS,
        pose_sync_hz=conf.POSE_SYNC_HZ,
    )
    hub.keeper = keeper
    keeper.start()
    return keeper
