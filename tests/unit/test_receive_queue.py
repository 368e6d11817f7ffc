"""The uvicorn protocol's receive queue: order, waiting readers, cancellation."""

from __future__ import annotations

import asyncio

import pytest

from presence.transport.uvicorn_ws import ReceiveQueue


async def test_events_come_out_in_the_order_they_went_in() -> None:
    queue = ReceiveQueue()
    for n in range(3):
        queue.put_nowait({"n": n})

    assert queue.qsize() == 3
    assert [(await queue.get())["n"] for _ in range(3)] == [0, 1, 2]
    assert queue.empty()


async def test_a_waiting_reader_gets_the_next_event() -> None:
    queue = ReceiveQueue()
    reader = asyncio.create_task(queue.get())
    await asyncio.sleep(0)  # the reader is waiting
    assert not reader.done()

    queue.put_nowait("connect")

    assert await asyncio.wait_for(reader, timeout=5) == "connect"


async def test_a_cancelled_reader_loses_nothing() -> None:
    queue = ReceiveQueue()
    reader = asyncio.create_task(queue.get())
    await asyncio.sleep(0)
    reader.cancel()
    with pytest.raises(asyncio.CancelledError):
        await reader

    queue.put_nowait("kept")

    assert await asyncio.wait_for(queue.get(), timeout=5) == "kept"


async def test_two_readers_each_get_one_event() -> None:
    queue = ReceiveQueue()
    readers = [asyncio.create_task(queue.get()) for _ in range(2)]
    await asyncio.sleep(0)

    queue.put_nowait("a")
    queue.put_nowait("b")

    assert sorted(await asyncio.wait_for(asyncio.gather(*readers), timeout=5)) == ["a", "b"]
