"""A connection's session: numbering, acks, re-sends, answers (PROTOCOL.md sections 5, 6).

Mixed into the consumer. The pure decisions are :class:`DeliveryWindow` and
:class:`AnswerCache`; this part does the I/O around them: numbered messages
are journaled (with ``REDIS_URL``) before the writer may send them, re-sends
run on a timer only while something is unacked, a client message id already
answered gets its answer again. A session outlives its socket: after a drop
the connection object stays in its room as the session's holder (detached),
numbering what the room says until a resume takes it over, the grace ends
the presence and the resume window ends the session.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from presence import metrics
from presence.cluster.hub import Hub
from presence.cluster.sessions import Claimed
from presence.conf import PresenceSettings
from presence.protocol import core_pb2 as pb
from presence.protocol.batch import TickBatch
from presence.protocol.codec import EncodedMessage, leading_message_id
from presence.protocol.codes import CloseCode
from presence.protocol.delivery import CAUSE_OVERFLOW, AnswerCache, DeliveryWindow, SlowConsumer
from presence.protocol.outbox import Outbox

logger = logging.getLogger(__name__)

ACK_CAPABILITY = "ack"
# Client messages a message_id makes idempotent (PROTOCOL.md section 5).
RELIABLE_CLIENT_KINDS = frozenset(
    {
        "chat_message",
        "entity_spawn",
        "entity_update",
        "entity_despawn",
        "presence_event",
        "kick_player",
        "mute_player",
        "lock_room",
    }
)
REPLAYED_IDS_SECONDS = 5.0  # how long a resumed connection skips what its replay held
# Ends that end the session at once (PROTOCOL.md section 6, grace); any other keeps it.
ENDS_SESSION = frozenset({1000, 1001, 4003, 4007, 4401, 4403, 4423})


class ReliableSession:
    """The session half of a connection (state set by :meth:`_init_session`)."""

    conf: PresenceSettings
    client_id: str
    room_id: str
    outbox: Outbox[Any] | None
    _close_code: CloseCode | None
    _peer_gone: bool
    session_id: str
    connection_id: str
    window: DeliveryWindow[EncodedMessage] | None
    answers: AnswerCache[bytes] | None
    released: bool  # another connection took the session (or it ended): silent from now on
    lost: bool  # the session can no longer be resumed exactly (its window overflowed)
    _hub_ref: Hub | None
    _journal_mark: int
    _live: bool  # the hello is queued: numbered messages go to the outbox
    _replayed_ids: set[str]
    _retry_timer: asyncio.TimerHandle | None
    _store_last_seq: int  # the newest seq the store held when this connection claimed
    _resume_after: int  # the client's last_seq, when resuming

    if TYPE_CHECKING:  # provided by Outbound

        def _close(self, code: CloseCode) -> None: ...

        def _kick(self) -> None: ...

        def deliver_volatile(self, batch: TickBatch) -> None: ...

        # provided by the consumer
        def abort(self, close_code: CloseCode, text: str) -> None: ...

    def _init_session(self) -> None:
        self.session_id = ""
        self.connection_id = ""
        self.window = None
        self.answers = None
        self.released = False
        self.lost = False
        self._hub_ref = None
        self._journal_mark = 0
        self._live = False
        self._replayed_ids = set()
        self._retry_timer = None
        self._store_last_seq = 0
        self._resume_after = 0

    @property
    def attached(self) -> bool:
        """The socket is open and not closing."""
        return self._close_code is None and not self._peer_gone and not self.released

    def _new_window(self, *, last_seq: int = 0, acks: bool = False) -> None:
        conf = self.conf
        self.window = DeliveryWindow(
            size=conf.MESSAGE_QUEUE_SIZE,
            retry_interval=conf.MESSAGE_RETRY_INTERVAL,
            max_retries=conf.MESSAGE_MAX_RETRIES,
            acks=acks,
            last_seq=last_seq,
        )
        self.answers = AnswerCache(size=conf.MESSAGE_QUEUE_SIZE)

    def _adopt_claim(self, claimed: Claimed, last_seq: int, acks: bool) -> None:
        """Take over a claimed session's replay and answers (called before any delivery)."""
        if claimed.window is not None and claimed.answer_cache is not None:
            self.window, self.answers = claimed.window, claimed.answer_cache
            self.window.acks = acks
        else:
            self._new_window(last_seq=last_seq, acks=acks)
            assert self.window is not None and self.answers is not None
            for seq, encoded in claimed.replay:
                self.window.keep(seq, encoded)
            for message_id, answer in claimed.answers:
                self.answers.put(message_id, answer)
        self._replayed_ids = {leading_message_id(e.proto) for _, e in claimed.replay}
        self._store_last_seq = claimed.last_seq
        self._resume_after = last_seq

    def adopt(self, old: ReliableSession) -> None:
        """The local holder ``old`` hands its window and answers over (the hub's resume)."""
        if old.window is None or old.answers is None or self.window is None:
            return
        acks = self.window.acks
        # Everything after the claim's last seq is in old's window too.
        self.window, self.answers = old.window, old.answers
        self.window.acks = acks
        # What old wrote after the client's last_seq may never have arrived: again.
        self.window.resume_from(self._resume_after)
        self._replayed_ids = set()
        hub = self._hub_ref
        if hub is None:
            return
        # What old numbered after the store's copy was claimed: journaled again, as ours.
        for kept in self.window.kept():
            if kept.seq > self._store_last_seq:
                mark = hub.journal.add(
                    self.room_id,
                    self.session_id,
                    self.connection_id,
                    message=(kept.seq, kept.item),
                )
                self._journal_mark = max(self._journal_mark, mark)

    def taken_over(self) -> None:
        """Another connection resumed this session: stop; close an open socket with 4010."""
        if self.released:
            return
        open_socket = self.attached
        self.released = True
        self._cancel_retry()
        if open_socket and self.outbox is not None:
            self._close(CloseCode.SESSION_TAKEN_OVER)

    def session_over(self) -> None:
        """The resume window ran out (the hub forgot the member): forget the session."""
        self.released = True
        hub = self._hub_ref
        if hub is not None and self.session_id:
            asyncio.get_running_loop().create_task(self._end_in_store(hub))

    async def _end_in_store(self, hub: Hub) -> None:
        try:
            await hub.sessions.end(self.session_id, self.connection_id)
        except Exception:
            logger.warning("could not forget an expired session")

    # --- server to client -----------------------------------------------------

    def deliver_reliable(self, encoded: EncodedMessage) -> None:
        """Number a reliable room message, journal it, queue it if the socket is open."""
        window = self.window
        if window is None or self.released or self.lost:
            return
        if self._replayed_ids and leading_message_id(encoded.proto) in self._replayed_ids:
            return  # heard while resuming, and already in the replay
        try:
            seq = window.number(encoded)
        except SlowConsumer as slow:
            self._slow(slow.cause)
            return
        hub = self._hub_ref
        if hub is not None:
            mark = hub.journal.add(
                self.room_id, self.session_id, self.connection_id, message=(seq, encoded)
            )
            self._journal_mark = max(self._journal_mark, mark)
        if self._live and self.attached and self.outbox is not None:
            if not self.outbox.push((encoded, seq), reliable=True):
                self._slow("outbox")
                return
            self._kick()

    def _go_live(self, after_seq: int) -> int:
        """The hello is queued: queue every kept message after ``after_seq``; how many."""
        self._live = True
        if self._replayed_ids:
            # A caught-up message may still come by the channel layer: skip it a while.
            asyncio.get_running_loop().call_later(REPLAYED_IDS_SECONDS, self._replayed_ids.clear)
        if self.window is None or self.outbox is None:
            return 0
        queued = 0
        for kept in self.window.kept():
            if kept.seq > after_seq and kept.sent_at is None:
                if not self.outbox.push((kept.item, kept.seq), reliable=True):
                    self._slow("outbox")
                    break
                queued += 1
        self._kick()
        return queued

    def _slow(self, cause: str) -> None:
        """Close with 4009 (``cause``); an overflowed window cannot be resumed exactly."""
        if cause == CAUSE_OVERFLOW:
            self.lost = True
        if not self.attached:
            if self.lost and self._hub_ref is not None and not self.released:
                self.released = True
                asyncio.get_running_loop().create_task(self._abandon(self._hub_ref))
            return
        metrics.count_slow_consumer(cause)
        logger.warning("client %s is too slow (%s); closing 4009", self.client_id, cause)
        self._close(CloseCode.SLOW_CONSUMER)

    def _end_detached(self) -> None:
        """End a detached session now (kicked, account gone): the room hears LEAVE."""
        if self.attached or self.released or self._hub_ref is None or not self.session_id:
            return
        self.lost = True
        self.released = True
        asyncio.get_running_loop().create_task(self._abandon(self._hub_ref))

    async def _abandon(self, hub: Hub) -> None:
        try:
            await hub.abandon(self.room_id, self)
            await hub.sessions.end(self.session_id, self.connection_id)
        except Exception:
            logger.warning("could not end an overflowed session")

    def _written(self, seq: int) -> None:
        """The writer sent numbered message ``seq``."""
        if self.window is None:
            return
        self.window.sent(seq, asyncio.get_running_loop().time())
        if self.window.acks:
            self._schedule_retry()

    def _acked(self, up_to_seq: int) -> None:
        """``Ack{up_to_seq}`` from the client."""
        if self.window is not None:
            self.window.ack(up_to_seq)

    def _capabilities_changed(self, capabilities: frozenset[str]) -> None:
        if self.window is None:
            return
        self.window.acks = ACK_CAPABILITY in capabilities
        hub = self._hub_ref
        if hub is not None and self.session_id:
            mark = hub.journal.add(
                self.room_id,
                self.session_id,
                self.connection_id,
                capabilities=tuple(sorted(capabilities)),
            )
            self._journal_mark = max(self._journal_mark, mark)

    def _schedule_retry(self) -> None:
        if self._retry_timer is not None or self.window is None:
            return
        due_at = self.window.next_due_at()
        if due_at is None:
            return
        loop = asyncio.get_running_loop()
        self._retry_timer = loop.call_at(due_at, self._retry)

    def _cancel_retry(self) -> None:
        if self._retry_timer is not None:
            self._retry_timer.cancel()
            self._retry_timer = None

    def _retry(self) -> None:
        """Re-send what is due (same seq), or close with 4009 after the last retry."""
        self._retry_timer = None
        if self.window is None or not self.attached or self.outbox is None:
            return
        try:
            due = self.window.due(asyncio.get_running_loop().time())
        except SlowConsumer as slow:
            self._slow(slow.cause)
            return
        for kept in due:
            if not self.outbox.push((kept.item, kept.seq), reliable=True):
                self._slow("outbox")
                return
        if due:
            metrics.RELIABLE_RESENDS.inc(len(due))
            self._kick()
        self._schedule_retry()

    # --- client to server -------------------------------------------------------

    def _answered(self, kind: str, message: pb.Message) -> pb.Message | None:
        """The answer already given to this message's id, if it is a repeat."""
        message_id = message.message_id
        if not message_id or kind not in RELIABLE_CLIENT_KINDS or self.answers is None:
            return None
        answer = self.answers.get(message_id)
        if answer is None:
            return None
        metrics.DUPLICATES_DROPPED.inc()
        return pb.Message.FromString(answer)

    def _remember_answers(self, kind: str, message_id: str, replies: list[pb.Message]) -> None:
        """Remember the Ack or Error given to ``message_id`` (journaled before it is sent)."""
        if not message_id or kind not in RELIABLE_CLIENT_KINDS or self.answers is None:
            return
        for reply in replies:
            payload = reply.WhichOneof("payload")
            answers_it = (payload == "ack" and reply.ack.message_id == message_id) or (
                payload == "error" and reply.error.ref_message_id == message_id
            )
            if not answers_it:
                continue
            answer = reply.SerializeToString()
            self.answers.put(message_id, answer)
            hub = self._hub_ref
            if hub is not None:
                mark = hub.journal.add(
                    self.room_id,
                    self.session_id,
                    self.connection_id,
                    answer=(message_id, answer),
                )
                self._journal_mark = max(self._journal_mark, mark)
            return
