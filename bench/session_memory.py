"""``python -m bench.session_memory``: Redis memory per session and per kept message.

Opens one session in the Redis session store, journals 1,000 chat lines of a
typical size and 1,000 answers to client message ids, and reads ``MEMORY
USAGE key SAMPLES 0`` of every key involved (README, "Scaling out"). Uses a
unique key prefix and deletes it afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import uuid

import redis

COUNT = 1000


def _usage(client: redis.Redis, *keys: str) -> int:
    return sum(int(client.memory_usage(key, samples=0) or 0) for key in keys)


async def measure(url: str) -> dict[str, float]:
    """The bytes of an idle session, a kept message, a room-log entry and an answer."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "graphwiz.settings")
    from presence.cluster.redis_sessions import RedisSessions
    from presence.cluster.sessions import JournalEntry, LogEntry, SessionRecord
    from presence.protocol import core_pb2 as pb
    from presence.protocol.codec import EncodedMessage
    from presence.protocol.delivery import AnswerCache, DeliveryWindow
    from presence.protocol.envelope import stamp

    prefix = f"bench-memory-{uuid.uuid4().hex[:8]}"
    client = redis.Redis.from_url(url)
    store = RedisSessions(
        url, prefix=prefix, queue_size=COUNT, window_seconds=60.0, held_extra_seconds=20.0
    )
    sid, conn, sender, origin = (
        uuid.uuid4().hex,
        uuid.uuid4().hex,
        "c0123456789abcde",
        "0a1b2c3d4e5f",
    )
    record = SessionRecord(sid, "user-42", "lobby", "c00000000000000a", origin, conn, ("ack",))
    try:
        await store.open(record, DeliveryWindow(size=COUNT), AnswerCache(size=COUNT))
        base = f"{prefix}:session:{sid}"
        session_keys = (base, base + ":kept", base + ":answers", base + ":asked")
        idle = _usage(client, *session_keys)
        text = "hello there, a chat line of typical length"
        chats = [
            EncodedMessage.of(
                stamp(
                    pb.Message(chat_message=pb.ChatMessage(from_client_id=sender, message=text)),
                    now_ms=1767225600000,
                    sender_id=sender,
                    message_id=f"{origin}-{100000 + i}",
                )
            )
            for i in range(COUNT)
        ]
        for start in range(0, COUNT, 100):
            chunk = list(enumerate(chats[start : start + 100], start + 1))
            await store.journal(
                {"lobby": {sid: JournalEntry(conn, chunk)}},
                {
                    "lobby": [
                        LogEntry(f"{origin}-{100000 + s - 1}", sender, e.proto) for s, e in chunk
                    ]
                },
            )
        kept = _usage(client, *session_keys)
        room = f"{prefix}:room:lobby"
        log = _usage(client, room + ":log", room + ":bodies", room + ":logseq")
        answers = [
            (
                f"client-msg-{i:06d}",
                stamp(
                    pb.Message(ack=pb.Ack(message_id=f"client-msg-{i:06d}")), now_ms=1
                ).SerializeToString(),
            )
            for i in range(COUNT)
        ]
        await store.journal({"lobby": {sid: JournalEntry(conn, answers=answers)}}, {})
        answered = _usage(client, *session_keys)
        return {
            "chat_frame_bytes": len(chats[0].proto),
            "idle_session_bytes": idle,
            "per_kept_message_per_session_bytes": (kept - idle) / COUNT,
            "per_room_log_entry_bytes": log / COUNT,
            "per_remembered_answer_bytes": (answered - kept) / COUNT,
        }
    finally:
        for key in client.scan_iter(f"{prefix}:*"):
            client.delete(key)
        client.close()
        await store.aclose()


def main() -> None:
    """Print the measurements."""
    parser = argparse.ArgumentParser(prog="python -m bench.session_memory", description=__doc__)
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/12")
    args = parser.parse_args()
    for name, value in asyncio.run(measure(args.redis_url)).items():
        print(f"{name}: {value:,.1f}")


if __name__ == "__main__":
    main()
