"""Reliable delivery of one session, both ways (PROTOCOL.md sections 5 and 6).

Pure: the caller passes the time (seconds, any monotonic origin) and does the
I/O. :class:`DeliveryWindow` numbers the reliable messages of one session,
keeps the last ``size`` of them for replay, tracks which ones the client
acknowledged and says which are due for a re-send; :class:`AnswerCache`
remembers the answer given to each of a session's last client message ids.

Like Zulip's event queues, a gap is never papered over: when a message that
is neither acknowledged nor (for a client without ``ack``) written would have
to be dropped to keep the bound, or when a client keeps a message unacked
past every re-send, the window answers :class:`SlowConsumer` and the
connection is closed with 4009; a resume that asks for something already
pruned gets ``None`` and the client resyncs.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Generic, TypeVar

Item = TypeVar("Item")

# The causes a 4009 close is counted by (presence_slow_consumer_closes_total).
CAUSE_OVERFLOW = "overflow"  # the kept window is full of undelivered or unacked messages
CAUSE_UNACKED = "unacked"  # a message stayed unacked after every re-send
CAUSE_OUTBOX = "outbox"  # the socket does not take frames as fast as they come


class SlowConsumer(Exception):
    """The session cannot keep its promise: close with 4009 (``cause`` says why)."""

    def __init__(self, cause: str) -> None:
        super().__init__(cause)
        self.cause = cause


@dataclass(slots=True)
class Kept(Generic[Item]):
    """One numbered reliable message, as the window keeps it."""

    seq: int
    item: Item
    sent_at: float | None = None  # when it was last written to the socket
    retries: int = 0  # re-sends so far


class DeliveryWindow(Generic[Item]):
    """Numbering, retention, acknowledgement and re-send schedule of one session.

    ``size``: messages kept for replay (``MESSAGE_QUEUE_SIZE``); the memory it
    costs is ``size`` references to already encoded messages.
    ``retry_interval`` (s) and ``max_retries``: the re-send schedule of a
    client with the ``ack`` capability (``acks``).
    """

    __slots__ = ("_kept", "acked", "acks", "last_seq", "max_retries", "retry_interval", "size")

    def __init__(
        self,
        *,
        size: int = 1000,
        retry_interval: float = 5.0,
        max_retries: int = 3,
        acks: bool = False,
        last_seq: int = 0,
    ) -> None:
        if size < 1 or retry_interval <= 0 or max_retries < 0:
            raise ValueError("size >= 1, retry_interval > 0 and max_retries >= 0 are required")
        self.size = size
        self.retry_interval = retry_interval
        self.max_retries = max_retries
        self.acks = acks
        self.last_seq = last_seq  # the seq of the newest numbered message
        self.acked = last_seq  # everything up to here needs no re-send
        self._kept: deque[Kept[Item]] = deque()

    def __len__(self) -> int:
        return len(self._kept)

    @property
    def first_seq(self) -> int:
        """The oldest seq still kept (``last_seq + 1`` when none is)."""
        return self._kept[0].seq if self._kept else self.last_seq + 1

    def number(self, item: Item) -> int:
        """Keep ``item`` as the next message; its seq. Raise :class:`SlowConsumer` if full.

        The oldest kept message makes room only once it is done with: acked,
        or written for a client without ``ack`` (which counts as acked).
        """
        if len(self._kept) >= self.size:
            if self._kept[0].seq > self.acked:
                raise SlowConsumer(CAUSE_OVERFLOW)
            self._kept.popleft()
        self.last_seq += 1
        self._kept.append(Kept(self.last_seq, item))
        return self.last_seq

    def keep(self, seq: int, item: Item) -> None:
        """Keep a message numbered elsewhere (a replay adopted on resume), unsent."""
        if seq != self.last_seq + 1:
            raise ValueError(f"seq {seq} does not follow {self.last_seq}")
        if len(self._kept) >= self.size:
            self._kept.popleft()
        self.last_seq = seq
        self._kept.append(Kept(seq, item))

    def sent(self, seq: int, now: float) -> None:
        """Message ``seq`` was written to the socket at ``now``."""
        kept = self._find(seq)
        if kept is not None:
            kept.sent_at = now
        if not self.acks and seq > self.acked:
            self.acked = seq  # written counts as acknowledged without ``ack``

    def ack(self, up_to_seq: int) -> int:
        """The client acknowledged everything up to ``up_to_seq``; how many newly.

        An ack beyond what was numbered acknowledges what was numbered.
        """
        up_to = min(up_to_seq, self.last_seq)
        if up_to <= self.acked:
            return 0
        newly = up_to - self.acked
        self.acked = up_to
        return newly

    def due(self, now: float) -> list[Kept[Item]]:
        """Messages to re-send now, each counted as one more retry.

        Raise :class:`SlowConsumer` when the oldest unacked message was re-sent
        ``max_retries`` times and ``retry_interval`` passed since the last one.
        Only clients with ``ack`` get re-sends; a message not yet written is
        not due (the writer has it).
        """
        if not self.acks:
            return []
        resend: list[Kept[Item]] = []
        for kept in self._kept:
            if kept.seq <= self.acked or kept.sent_at is None:
                continue
            if now - kept.sent_at < self.retry_interval:
                continue
            if kept.retries >= self.max_retries:
                raise SlowConsumer(CAUSE_UNACKED)
            kept.retries += 1
            kept.sent_at = None  # the writer stamps it again
            resend.append(kept)
        return resend

    def next_due_at(self) -> float | None:
        """When :meth:`due` may next have something to say (``None``: nothing pending)."""
        if not self.acks:
            return None
        times = [
            k.sent_at + self.retry_interval
            for k in self._kept
            if k.seq > self.acked and k.sent_at is not None
        ]
        return min(times) if times else None

    def after(self, last_seq: int) -> list[Kept[Item]] | None:
        """Every kept message after ``last_seq``, in order; ``None`` if that is not possible.

        Not possible: ``last_seq`` beyond what was numbered, or a message after
        it no longer kept (a resume must then resync, never replay partly).
        """
        if last_seq < 0 or last_seq > self.last_seq or last_seq + 1 < self.first_seq:
            return None
        return [k for k in self._kept if k.seq > last_seq]

    def resume_from(self, last_seq: int) -> list[Kept[Item]] | None:
        """Prepare a replay after ``last_seq`` for a new socket; ``None`` if not possible.

        The client processed ``last_seq``: that much is acknowledged. What
        follows is to be written again (and re-sent on schedule after that).
        """
        replay = self.after(last_seq)
        if replay is None:
            return None
        self.ack(last_seq)
        for kept in replay:
            kept.sent_at = None
            kept.retries = 0
        return replay

    def kept(self) -> Iterable[Kept[Item]]:
        """The kept messages, oldest first."""
        return iter(self._kept)

    def _find(self, seq: int) -> Kept[Item] | None:
        if not self._kept or not self._kept[0].seq <= seq <= self.last_seq:
            return None
        kept = self._kept[seq - self._kept[0].seq]
        return kept if kept.seq == seq else None


class AnswerCache(Generic[Item]):
    """The answers given to a session's last ``size`` client message ids.

    A repeated id gets the same answer again and is never applied again,
    whatever its content (PROTOCOL.md section 5, client to server).
    """

    __slots__ = ("_answers", "duplicates", "size")

    def __init__(self, *, size: int = 1000) -> None:
        self.size = size
        self._answers: OrderedDict[str, Item] = OrderedDict()
        self.duplicates = 0

    def __len__(self) -> int:
        return len(self._answers)

    def __contains__(self, message_id: object) -> bool:
        return message_id in self._answers

    def get(self, message_id: str) -> Item | None:
        """The answer given to ``message_id`` (counted as a duplicate), or ``None``."""
        answer = self._answers.get(message_id)
        if answer is not None:
            self.duplicates += 1
        return answer

    def put(self, message_id: str, answer: Item) -> None:
        """Remember ``answer`` to ``message_id``; the oldest id goes past ``size``."""
        self._answers[message_id] = answer
        self._answers.move_to_end(message_id)
        while len(self._answers) > self.size:
            self._answers.popitem(last=False)

    def items(self) -> list[tuple[str, Item]]:
        """Every remembered (id, answer), oldest first."""
        return list(self._answers.items())
