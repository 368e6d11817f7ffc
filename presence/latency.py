"""Latency samples for the performance report, and the stamps they are read from.

Pure: no Django, asyncio or Prometheus. A :class:`Reservoir` keeps the latest
``size`` samples of one kind (a sliding window: the report describes recent
traffic, not the process's whole life) at O(1) per sample; percentiles are
computed only when a report asks. :func:`envelope_head` reads an encoded
server message's ``timestamp`` and ``type`` from its first bytes, so the
outbound path learns both without decoding the message.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass

LATENCY_KINDS = ("processing", "delivery", "rtt")

_MESSAGE_ID_TAG = 0x0A  # Message.message_id: field 1, length-delimited
_TIMESTAMP_TAG = 0x10  # Message.timestamp: field 2, varint
_TYPE_TAG = 0x18  # Message.type: field 3, varint


@dataclass(frozen=True, slots=True)
class Summary:
    """Average and percentiles of the samples kept, in the samples' unit."""

    count: int
    avg: float
    p50: float
    p99: float


def percentile(ordered: list[float], q: float) -> float:
    """The nearest-rank ``q``-th percentile (0 < q <= 100) of sorted, non-empty ``ordered``."""
    if not ordered:
        raise ValueError("percentile of no samples")
    if not 0 < q <= 100:
        raise ValueError(f"percentile must be in (0, 100], got {q!r}")
    rank = math.ceil(q / 100 * len(ordered))
    return ordered[max(rank, 1) - 1]


def summarize(values: Iterable[float]) -> Summary | None:
    """Average, p50 and p99 of ``values``; ``None`` when there are none."""
    ordered = sorted(values)
    if not ordered:
        return None
    return Summary(
        count=len(ordered),
        avg=math.fsum(ordered) / len(ordered),
        p50=percentile(ordered, 50),
        p99=percentile(ordered, 99),
    )


class Reservoir:
    """The latest ``size`` samples; each new one pushes the oldest out.

    Memory is bounded by ``size`` floats whatever the traffic; ``add`` is one
    ``deque.append`` (atomic under the GIL, so a report read from a worker
    thread sees a consistent copy).
    """

    __slots__ = ("_samples",)

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError(f"a reservoir holds at least one sample, got {size}")
        self._samples: deque[float] = deque(maxlen=size)

    @property
    def size(self) -> int:
        """How many samples are kept at most."""
        maxlen = self._samples.maxlen
        assert maxlen is not None
        return maxlen

    def __len__(self) -> int:
        return len(self._samples)

    def add(self, value: float) -> None:
        """Keep one sample (the oldest goes when full)."""
        self._samples.append(value)

    def summary(self) -> Summary | None:
        """Average and percentiles of the samples kept; ``None`` before the first."""
        return summarize(list(self._samples))


class LatencySamples:
    """One :class:`Reservoir` per latency kind, each of ``size`` samples."""

    __slots__ = ("delivery", "processing", "rtt")

    def __init__(self, size: int) -> None:
        self.processing = Reservoir(size)  # frame received -> fan-out handed on
        self.delivery = Reservoir(size)  # stamped at its origin -> sent to a recipient
        self.rtt = Reservoir(size)  # server Ping -> the client's Pong

    def of(self, kind: str) -> Reservoir:
        """The reservoir of ``kind`` (one of :data:`LATENCY_KINDS`)."""
        if kind not in LATENCY_KINDS:
            raise KeyError(kind)
        reservoir: Reservoir = getattr(self, kind)
        return reservoir


def _varint(data: bytes, at: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[at]
        at += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, at
        shift += 7
        if shift > 63:
            raise ValueError("varint longer than 64 bits")


def envelope_head(proto: bytes) -> tuple[int, int]:
    """``(timestamp, type)`` of an encoded server ``Message``; 0 for what is unset.

    Protobuf writes known fields in field-number order, so ``message_id`` (1),
    ``timestamp`` (2) and ``type`` (3) lead every message the server stamps;
    the walk reads at most those three fields (O(1) whatever the payload) and
    stops at the first other one. Malformed input yields what was read so far.
    """
    timestamp = message_type = 0
    at, end = 0, len(proto)
    try:
        while at < end:
            tag = proto[at]
            if tag == _TIMESTAMP_TAG:
                timestamp, at = _varint(proto, at + 1)
            elif tag == _TYPE_TAG:
                message_type, _ = _varint(proto, at + 1)
                break  # nothing the caller needs comes later
            elif tag == _MESSAGE_ID_TAG and at == 0:
                length, at = _varint(proto, at + 1)
                at += length
            else:
                break
    except (IndexError, ValueError):
        pass
    return timestamp, message_type
