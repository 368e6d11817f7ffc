"""Server-initiated round-trip probes (README "Metrics", proposed for PROTOCOL.md).

A client's own ``Ping`` gets a ``Pong``, which tells the client its RTT but
not the server. So every ``RTT_PROBE_SECONDS`` one task per process sends
each local member ``Ping{client_time_ms=<server ms>}``, encoded once for all.
A client that answers ``Pong{client_time_ms=<echoed>}`` yields one sample of
``presence_client_rtt_seconds``; a client that ignores it loses nothing. The
task runs only while the hub has members: an idle process keeps no timer.
"""

from __future__ import annotations

import asyncio

from presence.cluster.hub import Hub
from presence.conf import presence_settings
from presence.per_loop import per_event_loop
from presence.protocol import core_pb2 as pb
from presence.protocol.codec import EncodedMessage
from presence.protocol.envelope import stamp
from presence.transport.outbound import Outbound


def probes_on() -> bool:
    """Probes run when they have an interval and latency is tracked."""
    conf = presence_settings()
    return conf.RTT_PROBE_SECONDS > 0 and conf.LATENCY_TRACKING_ENABLED


def probe_members(hub: Hub) -> int:
    """Queue one server Ping for every local member; return how many got it."""
    now_ms = hub.now_ms()
    ping = EncodedMessage.of(stamp(pb.Message(ping=pb.Ping(client_time_ms=now_ms)), now_ms=now_ms))
    probed = 0
    for member in hub.local_members():
        if isinstance(member, Outbound) and member.send_rtt_probe(ping, now_ms):
            probed += 1
    return probed


class RttProber:
    """The probe task of one event loop's hub."""

    def __init__(self) -> None:
        self.task: asyncio.Task[None] | None = None

    def ensure(self, hub: Hub) -> None:
        """A member joined ``hub``: make sure the probes run (unless they are off)."""
        if probes_on() and (self.task is None or self.task.done()):
            self.task = asyncio.create_task(self._run(hub), name="presence-rtt-probes")

    async def _run(self, hub: Hub) -> None:
        while hub.rooms and probes_on():
            # Read each round: a changed setting applies from the next probe.
            await asyncio.sleep(presence_settings().RTT_PROBE_SECONDS)
            probe_members(hub)


get_prober = per_event_loop(RttProber)
