"""The benchmark's pose frames: encode a send time, count deliveries and latency.

A pose frame is a binary ``graphwiz.core.Message`` holding a ``PositionUpdate``.
Its send time travels in the pose itself, because that is the one part both
targets deliver unchanged: the relay forwards the bytes as they are, and the
service re-stamps the envelope (``timestamp`` becomes its receive time,
``sender_id`` is set, ``message_id`` cleared) but keeps ``position_update``.

The send time is microseconds since a run-wide epoch on ``CLOCK_MONOTONIC``
(shared by every process of the machine), split into two 22-bit halves carried
by ``position.x`` and ``position.y``. A float32 holds every integer below 2**24
exactly, and bit 22 is set in both so neither is ever 0.0 (proto3 would omit it).
``position.z`` is the sender's number, ``sequence_number`` its own counter.
"""

from __future__ import annotations

import json
import struct
import time
from collections.abc import Iterable

from presence.protocol import pb

TIME_BITS = 22
_TIME_MASK = (1 << TIME_BITS) - 1
_NONZERO = 1 << TIME_BITS
MAX_SEND_US = 1 << (2 * TIME_BITS)  # ~203 days after the epoch
SEQ_BASE = 1 << 21  # sequence numbers 2**21 .. 2**22-1 all encode as 4-byte varints
_ROTATION = (0.1, 0.2, 0.3, 0.927)  # a fixed, non-zero quaternion, for a realistic size
PAD_ID_CHARS = 12  # message_id padding: brings the client frame to ~60 bytes
LATENCY_BUCKET_US = 100  # histogram resolution
LATENCY_BUCKETS = 100_000  # 0.1 ms buckets up to 10 s; slower deliveries share the last one

_XYZ = struct.Struct("<fBfBf")
_FLOAT = struct.Struct("<f")


def split_time(sent_us: int) -> tuple[float, float]:
    """``sent_us`` as the (x, y) floats of a pose."""
    if not 0 <= sent_us < MAX_SEND_US:
        raise ValueError(f"send time {sent_us} us outside 0..2**44")
    return float(_NONZERO | (sent_us & _TIME_MASK)), float(_NONZERO | (sent_us >> TIME_BITS))


def join_time(x: float, y: float) -> int:
    """The send time carried by a pose's (x, y)."""
    return ((int(y) & _TIME_MASK) << TIME_BITS) | (int(x) & _TIME_MASK)


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if not value:
            out.append(byte)
            return bytes(out)
        out.append(byte | 0x80)


def pose_message(sent_us: int, *, sender: int, seq: int, message_id: str = "") -> pb.Message:
    """The pose as a ``pb.Message`` (the reference :class:`PoseEncoder` must match)."""
    x, y = split_time(sent_us)
    rx, ry, rz, rw = _ROTATION
    return pb.Message(
        message_id=message_id,
        position_update=pb.PositionUpdate(
            position=pb.Vector3(x=x, y=y, z=float(sender + 1)),
            rotation=pb.Quaternion(x=rx, y=ry, z=rz, w=rw),
            sequence_number=SEQ_BASE | (seq % SEQ_BASE),
        ),
    )


class PoseEncoder:
    """One client's pose frames, hand-encoded (bytes equal to ``pose_message``'s)."""

    __slots__ = ("_head", "_tail", "_z", "seq")

    def __init__(self, sender: int, *, pad: bool = True) -> None:
        message_id = f"p{sender:0{PAD_ID_CHARS - 1}d}"[-PAD_ID_CHARS:] if pad else ""
        reference = pose_message(0, sender=sender, seq=0, message_id=message_id)
        update = reference.position_update.SerializeToString()
        envelope = b""
        if message_id:
            envelope = b"\x0a" + _varint(len(message_id)) + message_id.encode("ascii")
        envelope += b"\xa2\x01" + _varint(len(update))  # field 20, length-delimited
        self._head = envelope + b"\x12\x0f\x0d"  # position (15 bytes), then x
        rotation = b"".join(
            b"\x0d\x15\x1d\x25"[i : i + 1] + _FLOAT.pack(v) for i, v in enumerate(_ROTATION)
        )
        self._tail = b"\x1a" + bytes([len(rotation)]) + rotation + b"\x20"  # then the seq varint
        self._z = float(sender + 1)
        self.seq = 0

    def encode(self, sent_us: int) -> bytes:
        """The next pose frame's payload, stamped with ``sent_us``."""
        x, y = split_time(sent_us)
        seq = SEQ_BASE | (self.seq % SEQ_BASE)
        self.seq += 1
        return (
            self._head
            + _XYZ.pack(x, 0x15, y, 0x1D, self._z)
            + self._tail
            + bytes(
                (
                    (seq & 0x7F) | 0x80,
                    ((seq >> 7) & 0x7F) | 0x80,
                    ((seq >> 14) & 0x7F) | 0x80,
                    seq >> 21,
                )
            )
        )


# --- the legacy GraphWiz-XR wire (issue 14) --------------------------------------
# [u8 id length][id][u64 BE ms][u8 type][UTF-8 JSON]: the same pose, as a hub-client sends it.
LEGACY_POSE = 10
LEGACY_HELLO = 1
_LEGACY_HEAD = struct.Struct(">QB")


def legacy_frame(frame_id: str, kind: int, payload: dict[str, object]) -> bytes:
    """One binary legacy frame."""
    raw_id = frame_id.encode("ascii")
    head = bytes([len(raw_id)]) + raw_id + _LEGACY_HEAD.pack(int(time.time() * 1000), kind)
    return head + json.dumps(payload, separators=(",", ":")).encode()


def legacy_client_hello(display_name: str) -> bytes:
    """The CLIENT_HELLO a hub-client sends first (no subprotocol: the server sniffs it)."""
    return legacy_frame(f"h-{display_name}", LEGACY_HELLO, {"displayName": display_name})


class LegacyPoseEncoder:
    """One legacy client's pose frames: the send time in position x and y, as in PoseEncoder."""

    __slots__ = ("_id", "_z", "seq")

    def __init__(self, sender: int) -> None:
        self._id = f"p{sender:0{PAD_ID_CHARS - 1}d}"[-PAD_ID_CHARS:]
        self._z = float(sender + 1)
        self.seq = 0

    def encode(self, sent_us: int) -> bytes:
        """The next pose frame, stamped with ``sent_us`` (entityId "": the avatar)."""
        x, y = split_time(sent_us)
        self.seq += 1
        rx, ry, rz, rw = _ROTATION
        payload = {
            "entityId": "",
            "position": {"x": x, "y": y, "z": self._z},
            "rotation": {"x": rx, "y": ry, "z": rz, "w": rw},
            "sequenceNumber": SEQ_BASE | (self.seq % SEQ_BASE),
        }
        return legacy_frame(self._id, LEGACY_POSE, payload)


def legacy_pose_time(payload: bytes) -> int | None:
    """The send time of a legacy pose frame, or None for any other frame."""
    try:
        at = 1 + payload[0]
        if payload[at + 8] != LEGACY_POSE:
            return None
        position = json.loads(payload[at + 9 :])["position"]
        return join_time(position["x"], position["y"])
    except (IndexError, ValueError, KeyError, TypeError):
        return None


def client_hello(display_name: str, capabilities: Iterable[str]) -> bytes:
    """A binary ``ClientHello`` announcing ``capabilities`` (e.g. ``batch``)."""
    hello = pb.ClientHello(display_name=display_name, capabilities=list(capabilities))
    return pb.Message(client_hello=hello).SerializeToString()


class Tally:
    """Counts the poses delivered to one process's clients and their latency.

    Only poses sent inside the measurement window ``[start_us, end_us)`` count;
    others (warm-up) are counted in ``outside``. Latency goes into a histogram
    of ``LATENCY_BUCKET_US`` buckets, so memory is fixed however many arrive.
    """

    __slots__ = (
        "batches",
        "delivered",
        "end_us",
        "errors",
        "hist",
        "legacy",
        "other",
        "outside",
        "start_us",
        "undecodable",
    )

    def __init__(self, start_us: int, end_us: int, *, legacy: bool = False) -> None:
        self.legacy = legacy  # frames of the legacy wire: one pose per frame
        self.start_us = start_us
        self.end_us = end_us
        self.delivered = 0
        self.outside = 0
        self.batches = 0
        self.other = 0
        self.errors = 0
        self.undecodable = 0
        self.hist = [0] * LATENCY_BUCKETS

    def add_frame(self, payload: bytes, now_us: int) -> None:
        """Count one received frame: a pose, a ``Batch`` of them, or something else."""
        if self.legacy:
            sent_us = legacy_pose_time(payload)
            if sent_us is None:
                self.other += 1
            else:
                self._add(sent_us, now_us)
            return
        try:
            message = pb.Message.FromString(payload)
        except Exception:  # DecodeError, or a text frame's bytes
            self.undecodable += 1
            return
        kind = message.WhichOneof("payload")
        if kind == "position_update":
            position = message.position_update.position
            self._add(join_time(position.x, position.y), now_us)
        elif kind == "batch":
            self.batches += 1
            for inner in message.batch.messages:
                if inner.WhichOneof("payload") == "position_update":
                    position = inner.position_update.position
                    self._add(join_time(position.x, position.y), now_us)
                else:
                    self.other += 1
        elif kind == "error":
            self.errors += 1
        else:
            self.other += 1

    def _add(self, sent_us: int, now_us: int) -> None:
        if self.start_us <= sent_us < self.end_us:
            self.delivered += 1
            bucket = (now_us - sent_us) // LATENCY_BUCKET_US
            # Negative is impossible on one monotonic clock; clamp, never index from the end.
            self.hist[min(max(bucket, 0), LATENCY_BUCKETS - 1)] += 1
        else:
            self.outside += 1

    def summary(self) -> dict[str, object]:
        """Counts and the sparse histogram ``{bucket: count}``, for pickling."""
        return {
            "delivered": self.delivered,
            "outside": self.outside,
            "batches": self.batches,
            "other": self.other,
            "errors": self.errors,
            "undecodable": self.undecodable,
            "hist": {i: n for i, n in enumerate(self.hist) if n},
        }


def percentile_ms(hist: dict[int, int], fraction: float) -> float | None:
    """The latency (upper edge of its bucket, in ms) below which ``fraction`` fall."""
    total = sum(hist.values())
    if total == 0:
        return None
    rank = fraction * total
    seen = 0
    for bucket in sorted(hist):
        seen += hist[bucket]
        if seen >= rank:
            return (bucket + 1) * LATENCY_BUCKET_US / 1000
    return (max(hist) + 1) * LATENCY_BUCKET_US / 1000


def merge_hists(hists: Iterable[dict[int, int]]) -> dict[int, int]:
    """The sum of sparse histograms."""
    merged: dict[int, int] = {}
    for hist in hists:
        for bucket, count in hist.items():
            merged[bucket] = merged.get(bucket, 0) + count
    return merged
