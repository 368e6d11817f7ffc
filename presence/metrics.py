"""Every Prometheus metric of presence, and nowhere else.

Labels take bounded values only: never a user, client or room id. Label
children the hot path touches are resolved once, at import: a ``.labels()``
call builds a key and takes a lock, a dict lookup does not.

With ``PROMETHEUS_MULTIPROC_DIR`` set, each process on the host writes its
values there and a scrape of any of them sums them all (README, "Metrics");
gauges say how they combine (``livesum``: the processes still running).
"""

from __future__ import annotations

import atexit
import logging
import os
import time
from functools import cache
from typing import Any

from django.conf import settings
from django.core.signals import setting_changed
from django.dispatch import receiver
from prometheus_client import Counter, Gauge, Histogram

from presence.conf import presence_settings
from presence.latency import LatencySamples
from presence.protocol import core_pb2 as pb
from presence.protocol.batch import TickBatch
from presence.protocol.codec import EncodedMessage
from presence.protocol.codes import CloseCode, ErrorCode
from presence.protocol.session import Accepted, Rejected

STARTED = time.time()  # the report's uptime

DEV_AUTH_CONNECTIONS = Counter(
    "presence_dev_auth_connections",
    "Connections accepted on a bare user_id (development mode).",
)
RATE_LIMIT_DECISIONS = Counter(
    "presence_rate_limit_decisions",
    "Rate-limiter decisions, by limiter (connection, message) and outcome (allowed, blocked).",
    ["limiter", "outcome"],
)


# Label children resolved once: the message limiter counts on the hot path.
_DECISIONS = {
    (limiter, allowed): RATE_LIMIT_DECISIONS.labels(
        limiter=limiter, outcome="allowed" if allowed else "blocked"
    )
    for limiter in ("connection", "message")
    for allowed in (True, False)
}


def count_rate_decision(limiter: str, allowed: bool) -> None:
    """Count one decision of the ``connection`` or ``message`` limiter."""
    _DECISIONS[limiter, allowed].inc()


CHANNEL_LAYER_FAILURES = Counter(
    "presence_channel_layer_failures",
    "Failed channel-layer or registry operations (Redis), by operation.",
    ["operation"],
)
CHANNEL_LAYER_DROPS = Counter(
    "presence_channel_layer_drops",
    "Messages the channel layer dropped, by reason (over_capacity: the core layer's full queue).",
    ["reason"],
)


def count_layer_failure(operation: str) -> None:
    """Count one failed ``group_send``, ``group_add``, ``receive``, ``registry``, ... call."""
    CHANNEL_LAYER_FAILURES.labels(operation=operation).inc()


SIGNAL_DELIVERIES = Counter(
    "presence_signal_deliveries",
    "Signal receiver calls (presence.signals), by outcome: sent, failed (raised), timed_out "
    "(slower than PRESENCE_SIGNAL_RECEIVER_TIMEOUT_SECONDS), dropped (queue or threads full).",
    ["outcome"],
)
_SIGNAL_OUTCOMES = {
    outcome: SIGNAL_DELIVERIES.labels(outcome=outcome)
    for outcome in ("sent", "failed", "timed_out", "dropped")
}


def count_signal(outcome: str) -> None:
    """Count one signal receiver call (or one dropped event) by ``outcome``."""
    _SIGNAL_OUTCOMES[outcome].inc()


class OverCapacityCounter(logging.Filter):
    """Counts the core Redis layer's over-capacity drops, which it only logs at INFO."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Count the drops a record reports; let the record through."""
        if "over capacity" in str(record.msg) and record.args:
            dropped = record.args[0] if isinstance(record.args, tuple) else 0
            if isinstance(dropped, int) and dropped > 0:
                CHANNEL_LAYER_DROPS.labels(reason="over_capacity").inc(dropped)
        return True


def count_core_layer_drops() -> None:
    """Make the core layer's drop log line reach the counter (idempotent)."""
    layer_logger = logging.getLogger("channels_redis.core")
    if not any(isinstance(f, OverCapacityCounter) for f in layer_logger.filters):
        layer_logger.addFilter(OverCapacityCounter())
    if layer_logger.getEffectiveLevel() > logging.INFO:
        layer_logger.setLevel(logging.INFO)


# --- reliable delivery and resume (PROTOCOL.md sections 5 and 6) -----------------

RELIABLE_RESENDS = Counter(
    "presence_reliable_resends",
    "Reliable messages re-sent to a client with the ack capability (same seq).",
)
RESUMES = Counter(
    "presence_resumes",
    "Reconnects that named a session: resumed (exact replay) or resync (a new session).",
    ["outcome"],
)
REPLAYED = Counter(
    "presence_replayed_messages",
    "Reliable messages replayed to resumed sessions.",
)
CAUGHT_UP = Counter(
    "presence_caught_up_messages",
    "Reliable messages the channel layer lost, delivered from the room log instead.",
)
DUPLICATES_DROPPED = Counter(
    "presence_duplicate_messages",
    "Client messages with a message_id already answered: answered again, not applied.",
)
SLOW_CONSUMER_CLOSES = Counter(
    "presence_slow_consumer_closes",
    "Closes with 4009, by cause: overflow (kept window full of unacked or unsent "
    "messages), unacked (no ack after every re-send), outbox (socket too slow).",
    ["cause"],
)
_RESUMED = {o: RESUMES.labels(outcome=o) for o in ("resumed", "resync")}
_SLOW = {c: SLOW_CONSUMER_CLOSES.labels(cause=c) for c in ("overflow", "unacked", "outbox")}


def count_resume(outcome: str) -> None:
    """Count one resume attempt: ``resumed`` or ``resync``."""
    _RESUMED[outcome].inc()


def count_slow_consumer(cause: str) -> None:
    """Count one 4009 close by ``cause`` (presence.protocol.delivery's CAUSE_*)."""
    _SLOW[cause].inc()


# --- connections ----------------------------------------------------------------

OUTCOMES = (
    "accepted",
    "refused_auth",
    "refused_rate",
    "refused_origin",
    "refused_room",
    "refused_path",
    "refused_other",
)
CONNECTIONS = Counter(
    "presence_connections",
    "WebSocket handshakes by outcome: accepted (joined a room) or refused_<why>.",
    ["outcome"],
)
CONNECTIONS_ACTIVE = Gauge(
    "presence_connections_active",
    "Connections in a room now.",
    multiprocess_mode="livesum",
)
DISCONNECTIONS = Counter(
    "presence_disconnections",
    "Closed WebSocket connections by close code (PROTOCOL.md section 7, 1000, 1001, "
    "1005, 1006; 'other' for any other code).",
    ["code"],
)
ROOMS_ACTIVE = Gauge(
    "presence_rooms_active",
    "Rooms with a member on this process (summed over processes: a room spread over "
    "two counts twice).",
    multiprocess_mode="livesum",
)
_OUTCOME = {outcome: CONNECTIONS.labels(outcome=outcome) for outcome in OUTCOMES}
# A refusal's close code names its reason, except where the caller knows better
# (4403: a room claim is "auth", a bad origin or a ban is not).
_REFUSED_BY_CLOSE: dict[int, str] = {
    CloseCode.UNAUTHORIZED: "refused_auth",
    CloseCode.AUTH_TIMEOUT: "refused_auth",
    CloseCode.FORBIDDEN: "refused_auth",
    CloseCode.TOO_MANY_CONNECTIONS: "refused_rate",
    CloseCode.ROOM_UNAVAILABLE: "refused_room",
}
_DISCONNECTED = {
    code: DISCONNECTIONS.labels(code=str(code))
    for code in sorted({int(c) for c in CloseCode} | {1000, 1001, 1005, 1006})
}
_DISCONNECTED_OTHER = DISCONNECTIONS.labels(code="other")


class ConnectionMeter:
    """One connection's share of the connection metrics, and its pending RTT probe.

    The handshake outcome is counted once, whichever path ends it; the
    active gauge goes down only for a connection that went up.
    """

    __slots__ = ("is_closed", "outcome", "probe_ms", "probe_sent")

    def __init__(self) -> None:
        self.outcome = ""
        self.is_closed = False
        self.probe_ms = 0  # client_time_ms of the last unanswered server Ping
        self.probe_sent = 0.0

    def accepted(self) -> None:
        """The connection joined its room."""
        if not self.outcome:
            self.outcome = "accepted"
            _OUTCOME["accepted"].inc()
            CONNECTIONS_ACTIVE.inc()

    def refused(self, close_code: int, outcome: str = "") -> None:
        """The handshake was refused with ``close_code`` (``outcome`` names why, if given)."""
        if not self.outcome:
            self.outcome = outcome or _REFUSED_BY_CLOSE.get(close_code, "refused_other")
            _OUTCOME[self.outcome].inc()

    def closed(self, close_code: int) -> None:
        """The server sent its close, or the socket closed, with ``close_code``; counted once.

        Counted when the server's close goes out, too: a process that stops
        after draining its members never hears their sockets' last event.
        """
        if self.is_closed:
            return
        self.is_closed = True
        _DISCONNECTED.get(close_code, _DISCONNECTED_OTHER).inc()
        if self.outcome == "accepted":
            self.outcome = "closed"
            CONNECTIONS_ACTIVE.dec()

    def probe(self, sent_ms: int) -> None:
        """A server Ping carrying ``sent_ms`` was queued for this connection."""
        self.probe_ms = sent_ms
        self.probe_sent = time.perf_counter()

    def pong(self, echoed_ms: int, *, track: bool) -> bool:
        """A Pong arrived: one RTT sample if it echoes the pending probe (each probe once)."""
        if not echoed_ms or echoed_ms != self.probe_ms:
            return False
        self.probe_ms = 0
        if track:
            observe_rtt(time.perf_counter() - self.probe_sent)
        return True


# --- messages and bytes ------------------------------------------------------------

PAYLOADS = tuple(f.name for f in pb.Message.DESCRIPTOR.oneofs_by_name["payload"].fields)
INVALID = "invalid"  # a frame that failed decoding or validation
RATE_LIMITED = "rate_limited"  # dropped by the message rate limit before decoding
OTHER = "other"  # a sent message without a known type (none expected)

MESSAGES_RECEIVED = Counter(
    "presence_messages_received",
    "Frames received from clients, by payload type (invalid, rate_limited).",
    ["type"],
)
BYTES_RECEIVED = Counter(
    "presence_bytes_received",
    "Bytes of frames received from clients, by payload type.",
    ["type"],
)
MESSAGES_SENT = Counter(
    "presence_messages_sent",
    "Frames sent to clients, by payload type (batch: one Batch frame).",
    ["type"],
)
BYTES_SENT = Counter(
    "presence_bytes_sent",
    "Bytes of frames sent to clients, by payload type.",
    ["type"],
)
MESSAGE_ERRORS = Counter(
    "presence_message_errors",
    "Client messages refused or dropped, by the ErrorCode of the answer.",
    ["reason"],
)

_RECEIVED = {
    kind: (MESSAGES_RECEIVED.labels(type=kind), BYTES_RECEIVED.labels(type=kind))
    for kind in (*PAYLOADS, INVALID, RATE_LIMITED)
}
_SENT_BY_KIND = {
    kind: (MESSAGES_SENT.labels(type=kind), BYTES_SENT.labels(type=kind))
    for kind in (*PAYLOADS, OTHER)
}


def _payload_of_type(message_type: int) -> str:
    name = pb.MessageType.Name(message_type).lower()
    if name in PAYLOADS:
        return name
    return "presence_event" if name.startswith("presence_") else OTHER


# By MessageType, which the outbound path reads from the encoded bytes.
_SENT = {value: _SENT_BY_KIND[_payload_of_type(value)] for value in pb.MessageType.values()}
_SENT_OTHER = _SENT_BY_KIND[OTHER]
_ERRORS = {code: MESSAGE_ERRORS.labels(reason=name) for name, code in ErrorCode.items()}
_ERROR_UNKNOWN = _ERRORS[ErrorCode.UNKNOWN]


def count_received(result: Accepted | Rejected, size: int) -> None:
    """One decoded frame of ``size`` bytes: its payload type, or ``invalid``."""
    messages, sizes = _RECEIVED[result.kind if isinstance(result, Accepted) else INVALID]
    messages.inc()
    sizes.inc(size)


def count_rate_limited(data: bytes | str) -> None:
    """One frame dropped by the message rate limit: received, and an error."""
    messages, sizes = _RECEIVED[RATE_LIMITED]
    messages.inc()
    sizes.inc(len(data) if isinstance(data, bytes) else len(data.encode("utf-8")))
    _ERRORS[ErrorCode.RATE_LIMITED].inc()


def count_message_error(code: int) -> None:
    """One client message answered with ``Error(code)``."""
    _ERRORS.get(code, _ERROR_UNKNOWN).inc()


def count_sent(message_type: int, size: int) -> None:
    """One frame of ``size`` bytes sent, of ``MessageType`` ``message_type``."""
    messages, sizes = _SENT.get(message_type, _SENT_OTHER)
    messages.inc()
    sizes.inc(size)


# --- latency ---------------------------------------------------------------------

PROCESSING_LATENCY = Histogram(
    "presence_processing_latency_seconds",
    "From a client frame's arrival until its fan-out was handed on (hub.apply + publish).",
    buckets=(0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1, 1.0),
)
DELIVERY_LATENCY = Histogram(
    "presence_delivery_latency_seconds",
    "From a message's stamp at its origin (any instance) until a frame with it was sent; "
    "one sample per frame (a Batch: its oldest message).",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 5.0),
)
CLIENT_RTT = Histogram(
    "presence_client_rtt_seconds",
    "Round trip of the server's Ping to a client's Pong (RTT probes).",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)


@cache
def latency_samples() -> LatencySamples:
    """This process's latency samples for the report: ``METRICS_SAMPLE_SIZE`` of each kind."""
    return LatencySamples(presence_settings().METRICS_SAMPLE_SIZE)


@receiver(setting_changed)
def _new_samples(setting: str, **kwargs: Any) -> None:
    if setting == "PRESENCE":
        latency_samples.cache_clear()


def observe_processing(seconds: float) -> None:
    """One client frame was handled and its fan-out handed on in ``seconds``."""
    PROCESSING_LATENCY.observe(seconds)
    latency_samples().processing.add(seconds)


def observe_delivery(stamped_ms: int) -> None:
    """A frame with a message stamped at ``stamped_ms`` (epoch ms) is being sent now."""
    # Instances' clocks differ by a little (NTP): never a negative latency.
    seconds = max(time.time() - stamped_ms / 1000, 0.0)
    DELIVERY_LATENCY.observe(seconds)
    latency_samples().delivery.add(seconds)


def observe_rtt(seconds: float) -> None:
    """A client answered the server's Ping after ``seconds``."""
    CLIENT_RTT.observe(seconds)
    latency_samples().rtt.add(seconds)


def sent_type(encoded: EncodedMessage, *, track: bool) -> int:
    """The ``MessageType`` of an encoded message about to be sent; ``track``: sample its latency.

    Both come from :attr:`EncodedMessage.head`, read once per message however
    many recipients it has.
    """
    stamped_ms, message_type = encoded.head
    if track and stamped_ms:
        observe_delivery(stamped_ms)
    return message_type


def observe_batch(batch: TickBatch, recipient_id: str) -> None:
    """One delivery sample for a Batch frame: its oldest message not from ``recipient_id``.

    O(1) per frame: the oldest entry, else the newest (a recipient's own
    entries are not in its frame); each entry's stamp is read once.
    """
    entries = batch.entries_by_age()
    for entry in (entries[0], entries[-1]) if entries else ():
        if entry.sender_id != recipient_id:
            stamped_ms = entry.encoded.head[0]
            if stamped_ms:
                observe_delivery(stamped_ms)
            return


# --- many processes on one host ------------------------------------------------


def _mark_this_process_dead() -> None:
    from prometheus_client import multiprocess

    # Its live gauges (connections, rooms) leave the sums; counters stay.
    multiprocess.mark_process_dead(os.getpid())


if getattr(settings, "PROMETHEUS_MULTIPROC_DIR", ""):
    atexit.register(_mark_this_process_dead)
