"""Sessions that outlive their sockets (PROTOCOL.md section 6): records, kept messages, answers.

One interface, two homes, like the registry. :class:`InProcessSessions` keeps
them in this process (no ``REDIS_URL``: one instance, resume on it only);
:class:`presence.cluster.redis_sessions.RedisSessions` keeps them in Redis so
a client resumes on any instance, including after its first one was killed.

A session is *held* by one connection at a time (its ``owner``: instance and
connection id). While held, the holder numbers the session's reliable
messages and journals them (:class:`Journal`) before they reach the socket;
after the socket drops, the holder keeps numbering for the resume window.
A resume *claims* the session: the claim answers with the exact replay or
says why it cannot (:class:`Refused`), and from then on only the claimant's
journal writes are accepted.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from presence.protocol.codec import EncodedMessage
from presence.protocol.delivery import AnswerCache, DeliveryWindow

# Why a resume was refused (the client resyncs): the label of the log line.
UNKNOWN = "unknown"  # no such session, expired, or another identity's
AHEAD = "ahead"  # last_seq beyond what was sent
GAP = "gap"  # a message after last_seq is no longer kept
OTHER_ROOM = "other_room"  # the session belongs to another room


@dataclass(slots=True)
class SessionRecord:
    """What a resume needs to know about a session."""

    session_id: str
    user_id: str
    room_id: str
    client_id: str
    instance_id: str  # the holder
    connection_id: str
    capabilities: tuple[str, ...] = ()


@dataclass(slots=True)
class Claimed:
    """A session claimed for a resume: replay ``replay`` (after the client's ``last_seq``)."""

    record: SessionRecord  # as it was before the claim: the previous holder
    last_seq: int  # the newest seq the session numbered
    replay: list[tuple[int, EncodedMessage]]
    answers: list[tuple[str, bytes]]
    # In process, the session's own window and answers, taken over as they are.
    window: DeliveryWindow[EncodedMessage] | None = None
    answer_cache: AnswerCache[bytes] | None = None


@dataclass(slots=True)
class Refused:
    """Not resumable (``reason``); ``ended`` is the session the same identity ended by asking."""

    reason: str
    ended: SessionRecord | None = None


@dataclass(slots=True)
class JournalEntry:
    """What one holder adds to one session's journal in one flush."""

    connection_id: str
    messages: list[tuple[int, EncodedMessage]] = field(default_factory=list)  # (seq, message)
    answers: list[tuple[str, bytes]] = field(default_factory=list)  # (client message id, answer)
    capabilities: tuple[str, ...] | None = None  # changed by a ClientHello


@dataclass(frozen=True, slots=True)
class LogEntry:
    """A reliable room message as the room log keeps it: id, sender (excluded), body."""

    message_id: str
    exclude: str
    body: bytes


class SessionStore(Protocol):
    """Where sessions live (every call may raise RegistryUnavailable)."""

    shared: bool  # True when other instances resume from the same store

    async def open(
        self,
        record: SessionRecord,
        window: DeliveryWindow[EncodedMessage],
        answers: AnswerCache[bytes],
    ) -> None:
        """Record a new session, held by its first connection."""

    async def claim(
        self,
        session_id: str,
        *,
        user_id: str,
        room_id: str,
        last_seq: int,
        instance_id: str,
        connection_id: str,
        catch_up: bool = True,
    ) -> Claimed | Refused:
        """Take the session over for a new connection, or say why not.

        ``catch_up``: number what the room log holds that the holder never
        recorded (its instance died); not when the holder is this process's.

        A refusal of the same identity ends the session (``Refused.ended``);
        of another identity it changes nothing.
        """

    async def journal(
        self, rooms: dict[str, dict[str, JournalEntry]], logs: dict[str, list[LogEntry]]
    ) -> set[str]:
        """Append the room logs, then numbered messages and answers per session: one round trip.

        Returns the sessions no longer held by the entry's connection (taken over).
        """

    async def detach(self, session_id: str, connection_id: str) -> None:
        """The holder's socket dropped: the session expires after the resume window."""

    async def renew(self, session_ids: list[str]) -> None:
        """The holders of ``session_ids`` are alive (attached): keep them."""

    async def end(self, session_id: str, connection_id: str) -> None:
        """Forget the session (a 1000 close, a refused resume, the window ran out)."""


@dataclass(slots=True)
class _Held:
    record: SessionRecord
    window: DeliveryWindow[EncodedMessage]
    answers: AnswerCache[bytes]
    detached_at: float | None = None


class InProcessSessions:
    """Sessions of a single process: the holder's own window is the store."""

    shared = False

    def __init__(
        self, *, window_seconds: float = 60.0, clock: Callable[[], float] = time.monotonic
    ):
        self.window_seconds = window_seconds
        self.clock = clock
        self._held: dict[str, _Held] = {}

    def __len__(self) -> int:
        return len(self._held)

    async def open(
        self,
        record: SessionRecord,
        window: DeliveryWindow[EncodedMessage],
        answers: AnswerCache[bytes],
    ) -> None:
        """Keep a reference to the session's window and answers."""
        self._expire()
        self._held[record.session_id] = _Held(record, window, answers)

    async def claim(
        self,
        session_id: str,
        *,
        user_id: str,
        room_id: str,
        last_seq: int,
        instance_id: str,
        connection_id: str,
        catch_up: bool = True,
    ) -> Claimed | Refused:
        """Hand the session's own window to the new connection, or refuse."""
        self._expire()
        held = self._held.get(session_id)
        if held is None or held.record.user_id != user_id:
            return Refused(UNKNOWN)
        previous = SessionRecord(**{f: getattr(held.record, f) for f in held.record.__slots__})
        reason = ""
        if held.record.room_id != room_id:
            reason = OTHER_ROOM
        elif last_seq > held.window.last_seq:
            reason = AHEAD
        replay = None if reason else held.window.resume_from(last_seq)
        if replay is None:
            del self._held[session_id]
            return Refused(reason or GAP, ended=previous)
        held.record.instance_id, held.record.connection_id = instance_id, connection_id
        held.detached_at = None
        return Claimed(
            record=previous,
            last_seq=held.window.last_seq,
            replay=[(k.seq, k.item) for k in replay],
            answers=held.answers.items(),
            window=held.window,
            answer_cache=held.answers,
        )

    async def journal(
        self, rooms: dict[str, dict[str, JournalEntry]], logs: dict[str, list[LogEntry]]
    ) -> set[str]:
        """Nothing to write (the windows are the store); the sessions no longer held."""
        return {
            sid
            for entries in rooms.values()
            for sid, entry in entries.items()
            if sid not in self._held or self._held[sid].record.connection_id != entry.connection_id
        }

    async def detach(self, session_id: str, connection_id: str) -> None:
        """Start the resume window."""
        held = self._held.get(session_id)
        if held is not None and held.record.connection_id == connection_id:
            held.detached_at = self.clock()

    async def renew(self, session_ids: list[str]) -> None:
        """Nothing expires while held."""

    async def end(self, session_id: str, connection_id: str) -> None:
        """Forget the session, if this connection still holds it."""
        held = self._held.get(session_id)
        if held is not None and held.record.connection_id == connection_id:
            del self._held[session_id]

    def _expire(self) -> None:
        now = self.clock()
        gone = [
            sid
            for sid, held in self._held.items()
            if held.detached_at is not None and now - held.detached_at > self.window_seconds
        ]
        for sid in gone:
            del self._held[sid]


class Journal:
    """What this process's holders numbered, written ahead of the frames that carry it.

    Members :meth:`add` their numbered messages and answers and get a mark;
    a writer awaits :meth:`durable` with its newest mark before it sends.
    One flush writes everything added so far, for every session and room,
    in one round trip.
    """

    def __init__(
        self,
        store: SessionStore,
        *,
        on_rejected: Callable[[str, str], None],
        on_failure: Callable[[Exception], object],
    ) -> None:
        self.store = store
        self.on_rejected = on_rejected
        self.on_failure = on_failure
        self._pending: dict[str, dict[str, JournalEntry]] = {}  # room -> session -> entry
        self._logs: dict[str, list[LogEntry]] = {}  # room -> its reliable messages, in order
        self._added = 0  # marks handed out
        self._durable = 0  # marks written
        self._failed = (0, 0)  # the marks of the last failed write: (after, up to]
        self._lock = asyncio.Lock()

    @property
    def added(self) -> int:
        """The newest mark handed out."""
        return self._added

    @property
    def needed(self) -> bool:
        """Only a shared store is written ahead; in process, the window is the store."""
        return self.store.shared

    def add(
        self,
        room_id: str,
        session_id: str,
        connection_id: str,
        *,
        message: tuple[int, EncodedMessage] | None = None,
        answer: tuple[str, bytes] | None = None,
        capabilities: tuple[str, ...] | None = None,
    ) -> int:
        """Queue one session's message, answer or capabilities; the mark to await."""
        if not self.store.shared:
            return 0
        sessions = self._pending.setdefault(room_id, {})
        entry = sessions.get(session_id)
        if entry is None or entry.connection_id != connection_id:
            entry = sessions[session_id] = JournalEntry(connection_id)
        if message is not None:
            entry.messages.append(message)
        if answer is not None:
            entry.answers.append(answer)
        if capabilities is not None:
            entry.capabilities = capabilities
        self._added += 1
        return self._added

    def log(self, room_id: str, entries: list[LogEntry]) -> int:
        """Queue reliable messages of this instance's origin for the room log; the mark."""
        if not self.store.shared or not entries:
            return self._added
        self._logs.setdefault(room_id, []).extend(entries)
        self._added += 1
        return self._added

    async def durable(self, mark: int) -> bool:
        """Wait until ``mark`` is written; ``False`` if the write failed."""
        while self._durable < mark:
            if not await self.flush():
                break
        after, upto = self._failed
        return not after < mark <= upto

    async def flush(self) -> bool:
        """Write everything added so far (one round trip per flush); ``False`` on failure.

        The write runs in a task of its own: the caller (a connection's writer)
        may be cancelled when its socket drops, and a write cut in half would
        lose what other sessions had numbered.
        """
        return await asyncio.shield(asyncio.ensure_future(self._flush()))

    async def _flush(self) -> bool:
        async with self._lock:
            if not self._pending and not self._logs:
                self._durable = self._added
                return True
            pending, self._pending = self._pending, {}
            logs, self._logs = self._logs, {}
            after, upto = self._durable, self._added
            try:
                rejected = await self.store.journal(pending, logs)
                for entries in pending.values():
                    for session_id, entry in entries.items():
                        if session_id in rejected:
                            self.on_rejected(session_id, entry.connection_id)
            except Exception as exc:
                self._failed = (after, upto)
                self._durable = upto
                self.on_failure(exc)
                return False
            self._durable = max(self._durable, upto)
            return True
