"""Outbox: reliable in order and never dropped, volatile merged (PROTOCOL.md section 5)."""

from __future__ import annotations

from presence.protocol.outbox import Outbox


def keep_both(older: str, newer: str) -> str:
    return f"{older}+{newer}"


def test_reliable_items_drain_in_order() -> None:
    outbox: Outbox[str] = Outbox()
    for item in ("chat-1", "spawn-1", "chat-2"):
        outbox.push(item, reliable=True)

    assert outbox.drain() == ["chat-1", "spawn-1", "chat-2"]


def test_reliable_items_up_to_max_reliable_are_accepted() -> None:
    outbox: Outbox[str] = Outbox(max_reliable=3)

    pushed = [outbox.push(f"r{i}", reliable=True) for i in range(3)]

    assert pushed == [True, True, True]
    assert outbox.reliable_waiting == 3


def test_reliable_item_past_max_reliable_reports_overflow() -> None:
    outbox: Outbox[str] = Outbox(max_reliable=3)
    for i in range(3):
        outbox.push(f"r{i}", reliable=True)

    assert outbox.push("r3", reliable=True) is False


def test_reliable_overflow_keeps_what_was_queued() -> None:
    outbox: Outbox[str] = Outbox(max_reliable=2)
    outbox.push("r0", reliable=True)
    outbox.push("r1", reliable=True)

    outbox.push("r2", reliable=True)

    assert outbox.drain() == ["r0", "r1"]


def test_volatile_items_do_not_count_towards_max_reliable() -> None:
    outbox: Outbox[str] = Outbox(max_reliable=1)
    outbox.push("tick-1", reliable=False)

    assert outbox.push("chat", reliable=True) is True


def test_adjacent_volatile_items_are_merged() -> None:
    outbox: Outbox[str] = Outbox(merge=keep_both)
    outbox.push("tick-1", reliable=False)

    outbox.push("tick-2", reliable=False)

    assert outbox.drain() == ["tick-1+tick-2"]
    assert outbox.volatile_merged == 1


def test_without_merge_the_newer_volatile_item_replaces_the_older() -> None:
    outbox: Outbox[str] = Outbox()
    outbox.push("tick-1", reliable=False)

    outbox.push("tick-2", reliable=False)

    assert outbox.drain() == ["tick-2"]


def test_volatile_is_never_merged_across_a_reliable_item() -> None:
    outbox: Outbox[str] = Outbox(merge=keep_both)
    outbox.push("tick-1", reliable=False)
    outbox.push("despawn", reliable=True)

    outbox.push("tick-2", reliable=False)

    assert outbox.drain() == ["tick-1", "despawn", "tick-2"]


def test_a_reader_that_never_drains_holds_at_most_one_volatile_per_reliable_gap() -> None:
    outbox: Outbox[str] = Outbox(max_reliable=3, merge=lambda older, newer: newer)
    for tick in range(10_000):
        outbox.push(f"tick-{tick}", reliable=False)
        if tick % 1000 == 0:
            outbox.push(f"chat-{tick}", reliable=True)

    assert outbox.reliable_waiting == 3
    assert len(outbox) <= 2 * outbox.max_reliable + 1


def test_drain_empties_and_resets_the_reliable_count() -> None:
    outbox: Outbox[str] = Outbox(max_reliable=1)
    outbox.push("r0", reliable=True)

    outbox.drain()

    assert len(outbox) == 0
    assert outbox.push("r1", reliable=True) is True
