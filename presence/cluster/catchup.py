"""Catching up from the room log what the channel layer lost (issue 11, second report).

Redis pub/sub delivers at most once: a message published while an instance
was not subscribed (a Redis restart, a resubscription) never reaches it, yet
its sender got an ``Ack``. Every reliable message is in the room log before it
is published (:mod:`presence.cluster.redis_sessions`), so each instance reads,
once per ``period``, the entries of its rooms logged during the period before
last, and delivers those it has not seen. An entry gets a whole period to
arrive by pub/sub first; one that then arrives anyway is dropped as seen.

Cost: one pipelined round trip per period for all of the instance's rooms
(a second only when something was missed); memory: the ids of the messages
delivered during the last three periods, per room.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

CATCHUP_SECONDS = 1.0  # how often an instance reads its rooms' logs


@dataclass(slots=True)
class Cursor:
    """Where one room's catch-up stands: entries up to ``position`` are settled."""

    position: int = -1  # -1: not read yet
    upto: int = -1  # the log's end at the previous round: the next round settles up to it
    seen: dict[str, float] = field(default_factory=dict)  # message id -> when delivered


class CatchUp:
    """The seen messages and log cursors of one instance's rooms."""

    def __init__(
        self,
        *,
        origin: str,
        period: float = CATCHUP_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.origin_prefix = f"{origin}-"
        self.period = period
        self.clock = clock
        self.cursors: dict[str, Cursor] = {}
        self.caught_up = 0  # messages delivered from the log (they were lost on the way)

    def note(self, room_id: str, message_id: str) -> bool:
        """``message_id`` is being delivered in ``room_id``; ``False`` if it already was."""
        cursor = self.cursors.get(room_id)
        if cursor is None:
            cursor = self.cursors[room_id] = Cursor()
        if message_id in cursor.seen:
            return False
        cursor.seen[message_id] = self.clock()
        return True

    def forget(self, room_ids: set[str]) -> None:
        """Drop the cursors of rooms this instance no longer holds."""
        for room_id in set(self.cursors) - room_ids:
            del self.cursors[room_id]

    def ranges(self) -> dict[str, tuple[int, int]]:
        """Per room, the (after, up to] log numbers to read this round (-1: only the end)."""
        return {room_id: (c.position, c.upto) for room_id, c in self.cursors.items()}

    def missed(self, room_id: str, logged: list[str], log_end: int) -> list[str]:
        """The ids of ``logged`` (this round's range, in log order) to deliver; advance."""
        cursor = self.cursors[room_id]
        if cursor.upto < 0:  # first round: settle nothing before now
            cursor.position = cursor.upto = log_end
            return []
        missed = [
            message_id
            for message_id in logged
            if message_id not in cursor.seen and not message_id.startswith(self.origin_prefix)
        ]
        cursor.position, cursor.upto = cursor.upto, log_end
        horizon = self.clock() - 3 * self.period
        cursor.seen = {mid: at for mid, at in cursor.seen.items() if at >= horizon}
        return missed
