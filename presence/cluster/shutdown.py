"""Graceful shutdown on SIGTERM: close every socket with 4000; members resume elsewhere.

Servers install their own SIGTERM handler (twisted for daphne, uvicorn's
``handle_exit``). The first hub of the process wraps it: on SIGTERM every
local member is closed with 4000 (PROTOCOL.md section 7, "server going
away"). With another live instance on the same Redis, the members stay
present in their grace (PROTOCOL.md section 6): what they were sent is in the
session store, they resume on the other instance unseen by their rooms, and
the survivors sweep whoever does not come back. Alone (or without Redis) the
instance retires from the registry: the rooms hear the departures at once.
Only then the server's own handler runs and stops the server.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import threading
from types import FrameType

from presence.cluster.hub import Hub
from presence.cluster.registry import RegistryUnavailable
from presence.protocol.codes import CloseCode
from presence.storage.history import flush_at_shutdown

logger = logging.getLogger(__name__)

DRAIN_SECONDS = 5.0  # how long members get to close before the server stops anyway
CLOSED_POLL_SECONDS = 0.05  # sockets closing report no event to wait on
_installed = False


async def drain(hub: Hub, *, timeout: float = DRAIN_SECONDS) -> None:
    """Leave the registry, close every local member with 4000, wait for them to go.

    The instance retires first, in one step: the other instances hear every
    member leave and the host role moves once, to a member that stays.
    """
    hub.draining = True  # joins from now on are refused with 4000
    if hub.keeper is not None:
        await hub.keeper.stop()
    handing_over = await _others_alive(hub)
    if not handing_over:
        await _retire(hub)
    hub.abort_all(CloseCode.GOING_AWAY, "server going away")
    try:
        await asyncio.wait_for(
            _sockets_closed(hub) if handing_over else hub.emptied.wait(), timeout
        )
    except TimeoutError:
        logger.warning("%d connections still open after %.0f s", len(hub.local_members()), timeout)
    if handing_over:
        await hub.journal.flush()  # what the members were sent is in the store
    else:
        await _retire(hub)  # whatever joined while the first retire ran
    await flush_at_shutdown()


async def _others_alive(hub: Hub) -> bool:
    """Whether another live instance shares the registry (and can take the sessions)."""
    if not hub.registry.shared or not hub.sessions.shared:
        return False
    try:
        return await hub.registry.live_instances() > (1 if hub.registered else 0)
    except RegistryUnavailable:
        return False


async def _sockets_closed(hub: Hub) -> None:
    """Until no local member has an open socket (detached ones stay in their rooms)."""
    while any(getattr(m, "attached", True) for m in hub.local_members()):
        await asyncio.sleep(CLOSED_POLL_SECONDS)


async def _retire(hub: Hub) -> None:
    try:
        await hub.announce(await hub.registry.retire(hub.instance_id, set()), lost=False)
    except RegistryUnavailable:
        logger.warning("could not retire from the registry; the sweeper will")


def drain_on_sigterm(hub: Hub) -> None:
    """Drain ``hub`` on SIGTERM, then hand the signal to the server (main thread only)."""
    global _installed
    if _installed or threading.current_thread() is not threading.main_thread():
        return
    _installed = True
    loop = asyncio.get_running_loop()
    previous = signal.getsignal(signal.SIGTERM)
    draining: list[asyncio.Task[None]] = []

    def pass_on(signum: int, frame: FrameType | None) -> None:
        signal.signal(signal.SIGTERM, previous)
        if callable(previous):
            previous(signum, frame)
        elif previous == signal.SIG_DFL:
            os.kill(os.getpid(), signal.SIGTERM)

    def on_sigterm(signum: int, frame: FrameType | None) -> None:
        if draining or loop.is_closed():  # a second SIGTERM: stop now
            pass_on(signum, frame)
            return
        logger.info("SIGTERM: closing connections with 4000 before stopping")

        def start() -> None:
            task = loop.create_task(drain(hub), name="presence-drain")
            task.add_done_callback(lambda _: pass_on(signum, frame))
            draining.append(task)

        loop.call_soon_threadsafe(start)

    if previous is None or previous == signal.SIG_IGN:
        return  # not installed from Python, or ignored on purpose: leave it alone
    signal.signal(signal.SIGTERM, on_sigterm)
