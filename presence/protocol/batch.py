"""One tick's volatile messages for a room, encoded once, framed per recipient.

A :class:`TickBatch` keeps the newest message per key (entity) and lays the
encoded ``Batch.messages`` entries out grouped by sender, so the frame for a
recipient is the shared body minus that recipient's own slice: two slices and
a concatenation, no protobuf work per recipient. Clients without the
``batch`` capability get the same entries as individual frames.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from presence.protocol import core_pb2 as pb
from presence.protocol.codec import EncodedMessage, Encoding, varint

_BATCH_ENTRY_TAG = b"\x0a"  # Batch.messages, field 1, length-delimited
_TIMESTAMP_TAG = b"\x10"  # Message.timestamp, field 2, varint
_TYPE_BATCH = b"\x18" + varint(pb.BATCH)  # Message.type = BATCH
_BATCH_TAG = varint((64 << 3) | 2)  # Message.batch, field 64, length-delimited


@dataclass(frozen=True, slots=True)
class Entry:
    """One volatile message of a tick: who sent it, its latest-wins key, its bytes."""

    sender_id: str
    key: str
    encoded: EncodedMessage


class TickBatch:
    """The volatile messages of one tick, newest per key, grouped by sender."""

    __slots__ = ("_body", "_by_age", "_json_parts", "_slices", "entries")

    def __init__(self, entries: Iterable[Entry], *, newest_only: bool = True) -> None:
        if newest_only:
            latest: dict[str, Entry] = {}
            for entry in entries:
                latest.pop(entry.key, None)
                latest[entry.key] = entry
            self._by_age = list(latest.values())
        else:  # the caller has already bounded how many entries a key may have
            self._by_age = list(entries)
        by_sender: dict[str, list[Entry]] = {}
        for entry in self._by_age:
            by_sender.setdefault(entry.sender_id, []).append(entry)
        self.entries: list[Entry] = [e for group in by_sender.values() for e in group]
        self._slices: dict[str, tuple[int, int]] = {}
        self._body: bytes | None = None
        self._json_parts: list[str] | None = None

    def __len__(self) -> int:
        return len(self.entries)

    def _layout(self) -> bytes:
        if self._body is None:
            chunks: list[bytes] = []
            offset = 0
            start = 0
            sender = None
            for entry in self.entries:
                if entry.sender_id != sender:
                    if sender is not None:
                        self._slices[sender] = (start, offset)
                    sender, start = entry.sender_id, offset
                proto = entry.encoded.proto
                chunk = _BATCH_ENTRY_TAG + varint(len(proto)) + proto
                chunks.append(chunk)
                offset += len(chunk)
            if sender is not None:
                self._slices[sender] = (start, offset)
            self._body = b"".join(chunks)
        return self._body

    def for_recipient(self, recipient_id: str) -> list[EncodedMessage]:
        """The entries ``recipient_id`` should get (never its own)."""
        return [e.encoded for e in self.entries if e.sender_id != recipient_id]

    def frame(self, recipient_id: str, encoding: Encoding, now_ms: int) -> bytes | str | None:
        """One ``Batch`` frame for ``recipient_id``, or ``None`` if nothing is for it."""
        if encoding is Encoding.JSON:
            return self._json_frame(recipient_id, now_ms)
        body = self._layout()
        start, end = self._slices.get(recipient_id, (0, 0))
        if start == 0 and end == len(body):
            return None
        if end > start:
            body = body[:start] + body[end:]
        return _TIMESTAMP_TAG + varint(now_ms) + _TYPE_BATCH + _BATCH_TAG + varint(len(body)) + body

    def _json_frame(self, recipient_id: str, now_ms: int) -> str | None:
        parts = [e.encoded.json for e in self.entries if e.sender_id != recipient_id]
        if not parts:
            return None
        inner = ",".join(parts)
        return f'{{"timestamp":"{now_ms}","type":"BATCH","batch":{{"messages":[{inner}]}}}}'

    @staticmethod
    def merge(
        older: TickBatch, newer: TickBatch, *, limit: int = 4096, max_bytes: int = 1 << 20
    ) -> TickBatch:
        """Newest per key of both batches, bounded: the oldest entries go first.

        At most ``limit`` entries and about ``max_bytes`` of encoded messages
        (the newest entry is always kept), so a reader that stops reading holds
        a bounded amount of volatile data however long it stalls.
        """
        kept: list[Entry] = []
        size = 0
        for entry in reversed(TickBatch([*older.entries, *newer.entries]).entries_by_age()):
            size += len(entry.encoded.proto)
            if kept and (len(kept) >= limit or size > max_bytes):
                break
            kept.append(entry)
        kept.reverse()
        return TickBatch(kept)

    def entries_by_age(self) -> list[Entry]:
        """The entries oldest first (the layout groups them by sender instead)."""
        return self._by_age
