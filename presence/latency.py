"""Latency samples for the performance report, and the stamps they are read from.

Pure: no Django, asyncio or Prometheus. A :class:`Reservoir` keeps the latest
``size`` samples of one kind (a sliding window: the report describes recent
traffic, not the process's whole life) at O(1) per sample; percentiles are
computed only when a report asks. The stamps come from
:attr:`~presence.protocol.codec.EncodedMessage.head` (re-exported here as
:func:`envelope_head`), read once per encoded message without decoding it.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass

from presence.protocol.codec import envelope_head

__all__ = ["LATENCY_KINDS", "LatencySamples", "Reservoir", "Summary", "envelope_head"]

LATENCY_KINDS = ("processing", "delivery", "rtt")


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
