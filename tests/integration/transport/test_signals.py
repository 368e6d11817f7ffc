"""presence.signals: each room event once, to sync and async receivers, never holding rooms up."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.dispatch import Signal

from presence import rooms, signals
from presence.models import Room
from presence.protocol import pb
from presence.signals import SignalDispatcher, get_dispatcher
from tests.clients.communicator import ProtocolClient, pose

pytestmark = [pytest.mark.django_db(transaction=True)]

ROOM = "stage"
SLOW_RECEIVER_SECONDS = 5.0


@pytest.fixture
def connect() -> Iterator[Callable[[Signal, Callable[..., Any]], None]]:
    """Connect receivers for one test; they are disconnected after it."""
    connected: list[tuple[Signal, Callable[..., Any]]] = []

    def attach(signal: Signal, function: Callable[..., Any]) -> None:
        signal.connect(function, weak=False)
        connected.append((signal, function))

    yield attach
    for signal, function in connected:
        signal.disconnect(function)


async def joined(user: str) -> ProtocolClient:
    client = ProtocolClient(f"/ws/{ROOM}?user_id={user}&display_name={user.title()}")
    await client.join()
    return client


@pytest.mark.usefixtures("channel_layer_kind")
async def test_every_room_event_reaches_sync_and_async_receivers_once(
    connect: Callable[[Signal, Callable[..., Any]], None],
) -> None:
    heard_sync: list[tuple[str, dict[str, Any]]] = []
    heard_async: list[tuple[str, dict[str, Any]]] = []
    for name, signal in signals.SIGNALS.items():

        def sync_receiver(sender: Any, name: str = name, **kwargs: Any) -> None:
            assert sender is Room
            kwargs.pop("signal")
            heard_sync.append((name, kwargs))

        async def async_receiver(sender: Any, name: str = name, **kwargs: Any) -> None:
            kwargs.pop("signal")
            heard_async.append((name, kwargs))

        connect(signal, sync_receiver)
        connect(signal, async_receiver)

    alice, bob = await joined("alice"), await joined("bob")
    await bob.send(pb.Message(entity_spawn=pb.EntitySpawn(entity_id="hat", template_id="cap")))
    await bob.send(pb.Message(chat_message=pb.ChatMessage(message="hi all")))
    assert (await bob.ping(1)).WhichOneof("payload") == "pong"
    await rooms.amute(ROOM, bob.client_id, reason="loud")
    await bob.close()  # a normal close: "left", its hat despawned with it
    await alice.recv_until(lambda m: m.presence_event.event_type == pb.LEAVE)
    await get_dispatcher().idle()

    expected = [
        ("member_joined", {"room_id": ROOM, "client_id": alice.client_id, "user_id": "alice"}),
        ("member_joined", {"room_id": ROOM, "client_id": bob.client_id, "user_id": "bob"}),
        ("entity_spawned", {"room_id": ROOM, "entity_id": "hat", "owner_id": bob.client_id}),
        ("chat_message", {"room_id": ROOM, "from_client_id": bob.client_id, "text": "hi all"}),
        ("moderation_action", {"room_id": ROOM, "action": "mute", "reason": "loud"}),
        ("member_left", {"client_id": bob.client_id, "reason": "left", "close_code": 1000}),
        ("entity_despawned", {"room_id": ROOM, "entity_id": "hat", "owner_id": bob.client_id}),
    ]
    for heard in (heard_sync, heard_async):
        assert [name for name, _ in heard] == [name for name, _ in expected]
        for (_, kwargs), (_, wanted) in zip(heard, expected, strict=True):
            assert {k: kwargs[k] for k in wanted} == wanted
    joined_alice = heard_sync[0][1]
    assert joined_alice["display_name"] == "Alice" and joined_alice["instance_id"]
    chat = heard_sync[3][1]
    assert chat["sender_name"] == "Bob" and chat["timestamp"] > 0
    await alice.close()


async def test_a_kicked_member_leaves_with_the_reason_kicked(
    connect: Callable[[Signal, Callable[..., Any]], None],
) -> None:
    left: list[tuple[str, int]] = []
    connect(signals.member_left, lambda sender, **kw: left.append((kw["reason"], kw["close_code"])))
    alice, bob = await joined("alice"), await joined("bob")

    await rooms.akick(ROOM, bob.client_id)
    await alice.recv_until(lambda m: m.presence_event.event_type == pb.LEAVE)
    await get_dispatcher().idle()

    assert left == [("kicked", 4403)]
    await alice.close()


async def test_a_slow_and_a_raising_receiver_hold_up_neither_poses_nor_chat(
    connect: Callable[[Signal, Callable[..., Any]], None], auth_log: pytest.LogCaptureFixture
) -> None:
    release = threading.Event()
    slow_calls: list[str] = []

    def slow(sender: Any, **kwargs: Any) -> None:
        slow_calls.append(kwargs["room_id"])
        release.wait(10)  # stuck until the test has seen the room go on

    async def raising(sender: Any, **kwargs: Any) -> None:
        raise RuntimeError("receiver bug")

    for signal in (signals.member_joined, signals.chat_message, signals.member_left):
        connect(signal, slow)
        connect(signal, raising)
    dispatcher = get_dispatcher()
    control, poser = await joined("control"), await joined("poser")

    started = time.monotonic()
    for n in range(20):  # poses keep flowing while the slow receiver is stuck
        await poser.send(pose(float(n)))
        update = await control.recv_kind("position_update")
        assert update.position_update.position.x == n
    await poser.send(pb.Message(message_id="c1", chat_message=pb.ChatMessage(message="still here")))
    assert (await poser.recv_kind("ack")).ack.message_id == "c1"  # stored, acknowledged
    assert (await control.recv_kind("chat_message")).chat_message.message == "still here"
    assert time.monotonic() - started < 3.0
    assert slow_calls == [ROOM]  # still inside the first event
    release.set()

    await poser.close()
    await control.recv_until(lambda m: m.presence_event.event_type == pb.LEAVE)
    await dispatcher.idle()
    assert slow_calls == [ROOM] * 4  # two joins, the chat line, the leave
    assert dispatcher.failed == 4
    assert "signal receiver" in auth_log.text and "raised for member_joined" in auth_log.text
    await control.close()


async def test_a_full_queue_drops_events_and_counts_them() -> None:
    dispatcher = SignalDispatcher(queue_size=2, receiver_timeout=5.0)
    got: list[int] = []

    async def receiver(sender: Any, **kwargs: Any) -> None:
        got.append(kwargs["n"])

    signals.entity_spawned.connect(receiver, weak=False)
    try:
        for n in range(5):  # queued without yielding: the third and later find it full
            dispatcher.emit("entity_spawned", n=n)
        await dispatcher.idle()
    finally:
        signals.entity_spawned.disconnect(receiver)

    assert got == [0, 1]
    assert dispatcher.dropped == 3


async def test_a_receiver_slower_than_the_timeout_is_given_up_on_and_the_next_runs() -> None:
    dispatcher = SignalDispatcher(queue_size=10, receiver_timeout=0.2)
    order: list[str] = []

    async def too_slow(sender: Any, **kwargs: Any) -> None:
        order.append("slow started")
        await asyncio.sleep(SLOW_RECEIVER_SECONDS)
        order.append("slow finished")

    def next_one(sender: Any, **kwargs: Any) -> None:
        order.append("next")

    signals.entity_despawned.connect(too_slow, weak=False)
    signals.entity_despawned.connect(next_one, weak=False)
    try:
        started = time.monotonic()
        await dispatcher.send("entity_despawned", room_id=ROOM)
        elapsed = time.monotonic() - started
    finally:
        signals.entity_despawned.disconnect(too_slow)
        signals.entity_despawned.disconnect(next_one)

    assert order == ["next", "slow started"]  # sync receivers first, then async ones
    assert dispatcher.timed_out == 1
    assert elapsed < SLOW_RECEIVER_SECONDS  # given up on, not waited for


async def test_stuck_sync_receivers_cannot_pile_up_threads() -> None:
    dispatcher = SignalDispatcher(queue_size=10, receiver_timeout=0.05)
    release = threading.Event()

    def stuck(sender: Any, **kwargs: Any) -> None:
        release.wait(10)

    signals.member_joined.connect(stuck, weak=False)
    try:
        for _ in range(signals.SYNC_RECEIVER_THREADS + 2):
            await dispatcher.send("member_joined", room_id=ROOM)
    finally:
        signals.member_joined.disconnect(stuck)
        release.set()

    # Each thread timed out once; with every thread held, later calls are skipped.
    assert dispatcher.timed_out == signals.SYNC_RECEIVER_THREADS
    assert dispatcher.dropped == 2


def test_leave_reasons_follow_the_close_code() -> None:
    assert [signals.leave_reason(c) for c in (1000, 1001, 1005, 1006, 4403, 4009, 4012)] == [
        "left",
        "left",
        "dropped",
        "dropped",
        "kicked",
        "closed",
        "closed",
    ]


async def test_a_signal_sent_now_waits_for_the_events_queued_before_it(
    connect: Callable[[Signal, Callable[..., Any]], None],
) -> None:
    # presence.rooms' calls send() (delivered before they return); the room's
    # own events are queued. An API call must not overtake what happened first.
    dispatcher = SignalDispatcher(queue_size=10, receiver_timeout=5.0)
    order: list[str] = []

    async def receiver(sender: Any, **kwargs: Any) -> None:
        order.append(kwargs["tag"])

    connect(signals.chat_message, receiver)
    connect(signals.moderation_action, receiver)

    dispatcher.emit("chat_message", tag="said first")
    await dispatcher.send("moderation_action", tag="then muted")

    assert order == ["said first", "then muted"]


async def test_a_receiver_that_sends_a_signal_is_not_held_up_by_its_own_queue(
    connect: Callable[[Signal, Callable[..., Any]], None],
) -> None:
    dispatcher = SignalDispatcher(queue_size=10, receiver_timeout=SLOW_RECEIVER_SECONDS)
    order: list[str] = []

    async def welcome(sender: Any, **kwargs: Any) -> None:  # as README's example does
        order.append("joined")
        await dispatcher.send("chat_message", tag="welcome")

    async def heard(sender: Any, **kwargs: Any) -> None:
        order.append(kwargs["tag"])

    connect(signals.member_joined, welcome)
    connect(signals.chat_message, heard)
    connect(signals.entity_spawned, heard)

    dispatcher.emit("member_joined")
    dispatcher.emit("entity_spawned", tag="spawned next")
    await asyncio.wait_for(dispatcher.idle(), SLOW_RECEIVER_SECONDS / 2)

    assert order == ["joined", "welcome", "spawned next"]
    assert dispatcher.timed_out == 0
