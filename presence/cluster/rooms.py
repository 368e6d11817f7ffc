"""A room as one process holds it: its state, its local members, its unsent poses.

Local delivery lives here: a reliable message goes to every local member but
its sender at once; the poses of a tick go to every local member as one
:class:`TickBatch`, encoded once.
"""

from __future__ import annotations

import itertools
from typing import Any, Protocol

from presence.protocol.batch import Entry, TickBatch
from presence.protocol.codec import EncodedMessage
from presence.protocol.codes import CloseCode
from presence.protocol.room import Broadcast, RoomState


class Member(Protocol):
    """A local connection the hub delivers to; both calls only queue, never block."""

    client_id: str

    def deliver_reliable(self, encoded: EncodedMessage) -> None:
        """Queue one reliable message (the member numbers it)."""

    def deliver_volatile(self, batch: TickBatch) -> None:
        """Queue one tick's volatile messages (the member skips its own)."""

    def abort(self, close_code: CloseCode, text: str) -> None:
        """Close the connection with ``close_code`` (it then leaves as usual)."""


class HeldMember(Member, Protocol):
    """A member holding a resumable session (presence.transport.reliable.ReliableSession)."""

    room_id: str
    session_id: str
    connection_id: str
    released: bool

    @property
    def attached(self) -> bool:
        """The socket is open and not closing."""

    def adopt(self, old: Any) -> None:
        """Take over the replay and answers of ``old``, the session's previous holder."""

    def taken_over(self) -> None:
        """Another connection took the session: stop silently."""

    def session_over(self) -> None:
        """The resume window passed: the session is forgotten."""


class LocalRoom:
    """A room's state, this process's members of it, and its unsent poses."""

    __slots__ = ("members", "pending", "pending_per_key", "state")

    def __init__(self, state: RoomState) -> None:
        self.state = state
        self.members: dict[str, Member] = {}
        self.pending: list[Broadcast] = []  # volatile, waiting for the next tick
        self.pending_per_key: dict[str, int] = {}

    def queue_volatile(self, broadcast: Broadcast, per_key: int) -> None:
        """Queue a pose for the tick, keeping the newest ``per_key`` of its entity."""
        self.pending.append(broadcast)
        key = broadcast.volatile_key
        if not key:
            return
        count = self.pending_per_key.get(key, 0) + 1
        if count > per_key:
            oldest = next(i for i, b in enumerate(self.pending) if b.volatile_key == key)
            del self.pending[oldest]
            count -= 1
        self.pending_per_key[key] = count

    def take_pending(self) -> list[Broadcast]:
        """The queued poses, oldest first; the queue is left empty."""
        pending, self.pending = self.pending, []
        self.pending_per_key.clear()
        return pending

    def deliver_volatile(self, broadcasts: list[Broadcast]) -> None:
        """One tick batch of ``broadcasts`` to every local member (each skips its own)."""
        if not broadcasts:
            return
        sender: str | None = broadcasts[0].exclude
        if any(b.exclude != sender for b in broadcasts):
            sender = None  # several senders: everyone gets something
        elif len(self.members) == 1 and sender in self.members:
            return  # only the sender is here
        batch = TickBatch(_entries(broadcasts), newest_only=False)
        # A tick holding one member's poses only has nothing for that member
        # (short ticks in small rooms: most of them): no frame, no writer.
        for client_id, member in list(self.members.items()):
            if client_id != sender:
                member.deliver_volatile(batch)

    def deliver_reliable(self, broadcast: Broadcast) -> None:
        """``broadcast`` to every local member but its sender."""
        encoded = broadcast.encoded()
        for client_id, member in list(self.members.items()):
            if client_id != broadcast.exclude:
                member.deliver_reliable(encoded)

    def flush(self) -> list[Broadcast]:
        """Deliver the pending poses as one tick batch; return them."""
        pending = self.take_pending()
        self.deliver_volatile(pending)
        return pending


def _entries(broadcasts: list[Broadcast]) -> list[Entry]:
    # Unkeyed messages (voice) are never coalesced: each gets a key of its own.
    unkeyed = itertools.count()
    return [
        Entry(b.exclude, b.volatile_key or f"#{next(unkeyed)}", b.encoded()) for b in broadcasts
    ]
