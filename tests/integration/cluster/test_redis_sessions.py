"""The Redis session store: journal, claim, catch-up from the room log, TTLs, real Redis."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator

import pytest
import redis

from presence.cluster.redis_sessions import RedisSessions
from presence.cluster.sessions import Claimed, JournalEntry, LogEntry, Refused, SessionRecord
from presence.protocol import pb
from presence.protocol.codec import EncodedMessage
from presence.protocol.delivery import AnswerCache, DeliveryWindow

SID = "a" * 32
ROOM = "room-1"
CAP = 4


@pytest.fixture
async def store(
    redis_url: str, redis_prefix: str, redis_keys: redis.Redis
) -> AsyncIterator[RedisSessions]:
    sessions = RedisSessions(
        redis_url,
        prefix=redis_prefix,
        queue_size=CAP,
        window_seconds=30.0,
        held_extra_seconds=5.0,
    )
    yield sessions
    await sessions.aclose()


_counter = itertools.count(1)


def message(text: str, *, origin: str = "inst-a", sender: str = "bob") -> EncodedMessage:
    proto = pb.Message(
        message_id=f"{origin}-{next(_counter)}",
        sender_id=sender,
        chat_message=pb.ChatMessage(message=text),
    )
    return EncodedMessage.of(proto)


def logged(encoded: EncodedMessage, sender: str = "bob") -> LogEntry:
    return LogEntry(pb.Message.FromString(encoded.proto).message_id, sender, encoded.proto)


def text(encoded: EncodedMessage) -> str:
    return pb.Message.FromString(encoded.proto).chat_message.message


async def opened(store: RedisSessions, *, user: str = "alice") -> SessionRecord:
    record = SessionRecord(SID, user, ROOM, "c-alice", "inst-a", "conn-1", ("ack",))
    await store.open(record, DeliveryWindow(size=CAP), AnswerCache(size=CAP))
    return record


async def record(store: RedisSessions, *messages: EncodedMessage, first_seq: int = 1) -> set[str]:
    """The room logs ``messages`` and the holder conn-1 numbers them from ``first_seq``."""
    entry = JournalEntry("conn-1", [(first_seq + i, m) for i, m in enumerate(messages)])
    return await store.journal({ROOM: {SID: entry}}, {ROOM: [logged(m) for m in messages]})


async def claim(store: RedisSessions, last_seq: int, **kwargs: object) -> Claimed | Refused:
    options: dict[str, object] = {
        "user_id": "alice",
        "room_id": ROOM,
        "last_seq": last_seq,
        "instance_id": "inst-b",
        "connection_id": "conn-2",
    }
    options.update(kwargs)
    return await store.claim(SID, **options)  # type: ignore[arg-type]


async def test_claim_replays_what_was_journaled_after_last_seq(store: RedisSessions) -> None:
    await opened(store)
    await record(store, message("one"), message("two"), message("three"))

    claimed = await claim(store, 1)
    assert isinstance(claimed, Claimed)
    assert claimed.last_seq == 3
    assert [(seq, text(m)) for seq, m in claimed.replay] == [(2, "two"), (3, "three")]
    assert claimed.record.capabilities == ("ack",)
    assert (claimed.record.instance_id, claimed.record.connection_id) == ("inst-a", "conn-1")


async def test_the_old_holder_is_refused_once_the_session_is_claimed(store: RedisSessions) -> None:
    await opened(store)
    await record(store, message("one"))
    assert isinstance(await claim(store, 1), Claimed)
    assert await record(store, message("late"), first_seq=2) == {SID}


async def test_what_the_dead_holder_never_recorded_is_caught_up_from_the_room_log(
    store: RedisSessions,
) -> None:
    await opened(store)
    before = message("recorded")
    await record(store, before)
    # The holder's instance died: the room went on, nobody numbered for alice.
    after = [message("after 1", origin="inst-b"), message("after 2", origin="inst-b")]
    own = message("alice's own", origin="inst-b", sender="c-alice")
    await store.journal({}, {ROOM: [logged(after[0]), logged(own, "c-alice"), logged(after[1])]})

    claimed = await claim(store, 0)
    assert isinstance(claimed, Claimed)
    assert [(seq, text(m)) for seq, m in claimed.replay] == [
        (1, "recorded"),
        (2, "after 1"),
        (3, "after 2"),
    ]
    # The new holder continues after the caught-up messages.
    assert (
        await store.journal({ROOM: {SID: JournalEntry("conn-2", [(4, message("x"))])}}, {}) == set()
    )


async def test_what_was_logged_before_the_session_opened_is_not_its(store: RedisSessions) -> None:
    await store.journal({}, {ROOM: [logged(message("old news"))]})
    await opened(store)
    claimed = await claim(store, 0)
    assert isinstance(claimed, Claimed)
    assert claimed.replay == []


async def test_no_catch_up_when_the_holder_hands_its_window_over(store: RedisSessions) -> None:
    await opened(store)
    await store.journal({}, {ROOM: [logged(message("unrecorded"))]})
    claimed = await claim(store, 0, catch_up=False)
    assert isinstance(claimed, Claimed)
    assert claimed.replay == []


async def test_last_seq_beyond_what_was_sent_is_refused_and_ends_the_session(
    store: RedisSessions,
) -> None:
    await opened(store)
    await record(store, message("one"))
    refused = await claim(store, 2)
    assert isinstance(refused, Refused)
    assert refused.reason == "ahead"
    assert refused.ended is not None and refused.ended.client_id == "c-alice"
    assert (await claim(store, 0)) == Refused("unknown")  # ended


async def test_a_message_pushed_out_of_the_kept_window_is_a_gap(store: RedisSessions) -> None:
    await opened(store)
    await record(store, *[message(f"m{i}") for i in range(CAP + 1)])
    refused = await claim(store, 0)
    assert isinstance(refused, Refused) and refused.reason == "gap"


async def test_a_catch_up_larger_than_the_window_is_a_gap(store: RedisSessions) -> None:
    await opened(store)
    await store.journal({}, {ROOM: [logged(message(f"m{i}")) for i in range(CAP + 1)]})
    refused = await claim(store, 0)
    assert isinstance(refused, Refused) and refused.reason == "gap"


async def test_another_identity_is_unknown_and_changes_nothing(store: RedisSessions) -> None:
    await opened(store)
    await record(store, message("one"))
    assert await claim(store, 0, user_id="mallory") == Refused("unknown")
    claimed = await claim(store, 0)
    assert isinstance(claimed, Claimed) and len(claimed.replay) == 1


async def test_answers_survive_a_claim_and_are_bounded(store: RedisSessions) -> None:
    await opened(store)
    answers = [(f"m{i}", f"ack {i}".encode()) for i in range(CAP + 2)]
    await store.journal({ROOM: {SID: JournalEntry("conn-1", answers=answers)}}, {})
    claimed = await claim(store, 0)
    assert isinstance(claimed, Claimed)
    assert claimed.answers == answers[-CAP:]


async def test_a_detached_session_expires_after_the_resume_window(
    store: RedisSessions, redis_keys: redis.Redis, redis_prefix: str
) -> None:
    await opened(store)
    await record(store, message("one"))
    await store.detach(SID, "conn-1")
    key = f"{redis_prefix}:session:{SID}"
    for suffix in ("", ":kept"):
        assert 0 < redis_keys.pttl(key + suffix) <= 30_000
    await store.end(SID, "conn-1")
    assert not redis_keys.exists(key)


async def test_only_the_holder_may_detach_or_end(
    store: RedisSessions, redis_keys: redis.Redis, redis_prefix: str
) -> None:
    await opened(store)
    await store.end(SID, "someone-else")
    assert redis_keys.exists(f"{redis_prefix}:session:{SID}")


async def test_the_room_log_is_bounded_to_twice_the_queue(
    store: RedisSessions, redis_keys: redis.Redis, redis_prefix: str
) -> None:
    await store.journal({}, {ROOM: [logged(message(f"m{i}")) for i in range(3 * CAP)]})
    base = f"{redis_prefix}:room:{ROOM}"
    assert redis_keys.zcard(base + ":log") == 2 * CAP
    assert redis_keys.hlen(base + ":bodies") == 2 * CAP
