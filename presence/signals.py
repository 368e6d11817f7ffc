"""Django signals for what happens in rooms, delivered off the hot path.

Connect receivers as usual (``@receiver(member_joined)``); sync and async
functions both work. Each signal is sent once per event, in the process that
handled the event (the instance whose member joined, the process that stored
the chat line), with ``sender=presence.models.Room`` and these keyword
arguments (times in milliseconds since the epoch):

* ``member_joined``: ``room_id``, ``client_id``, ``user_id``, ``display_name``,
  ``instance_id``
* ``member_left``: ``room_id``, ``client_id``, ``user_id``, ``reason``
  (:data:`LEAVE_REASONS`), ``close_code`` (the WebSocket close code, 0 when the
  member's instance died)
* ``chat_message``: ``room_id``, ``from_client_id``, ``sender_name``, ``text``,
  ``timestamp``
* ``entity_spawned``: ``room_id``, ``entity_id``, ``template_id``, ``owner_id``,
  ``components`` (dict of str)
* ``entity_despawned``: ``room_id``, ``entity_id``, ``owner_id``
* ``moderation_action``: ``room_id``, ``action`` (kick, mute, unmute, lock,
  unlock), ``target_client_id``, ``by_client_id`` (empty from the admin or the
  API), ``actor_user_id`` (Django user pk or ``None``), ``reason``

The room never waits for a receiver. Events go into a bounded queue
(``PRESENCE_SIGNAL_QUEUE_SIZE``; beyond it they are dropped and counted) that
one task per process empties in order. Sync receivers run on a thread pool of
their own (never the thread that stores chat), async ones on the event loop;
a receiver that raises, or takes longer than
``PRESENCE_SIGNAL_RECEIVER_TIMEOUT_SECONDS``, is logged and counted and the
next one runs. An async receiver must not block the event loop (``time.sleep``),
which nothing can protect against: put blocking work in a sync receiver.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from django.dispatch import Signal

from presence import metrics
from presence.conf import presence_settings
from presence.per_loop import per_event_loop

logger = logging.getLogger(__name__)

member_joined = Signal()
member_left = Signal()
chat_message = Signal()
entity_spawned = Signal()
entity_despawned = Signal()
moderation_action = Signal()

SIGNALS: dict[str, Signal] = {
    "member_joined": member_joined,
    "member_left": member_left,
    "chat_message": chat_message,
    "entity_spawned": entity_spawned,
    "entity_despawned": entity_despawned,
    "moderation_action": moderation_action,
}

# Why a member left (member_left's ``reason``).
LEAVE_REASONS = ("left", "dropped", "kicked", "closed", "lost")
_LEFT = {1000, 1001}  # the client closed the socket
_DROPPED = {1005, 1006}  # no close frame: the network or the client went away
_KICKED = 4403

# Sync receivers run here, never on asgiref's thread-sensitive executor, which
# stores chat lines: a slow receiver must not hold up a chat write.
SYNC_RECEIVER_THREADS = 2


def leave_reason(close_code: int) -> str:
    """``member_left``'s ``reason`` for a connection that ended with ``close_code``."""
    if close_code in _LEFT:
        return "left"
    if close_code in _DROPPED:
        return "dropped"
    if close_code == _KICKED:
        return "kicked"
    return "closed"


@dataclass(slots=True)
class _Event:
    name: str
    kwargs: dict[str, Any] = field(default_factory=dict)
    sent: asyncio.Future[None] | None = None  # set once delivered (send()'s wait)


def _sender() -> type:
    from presence.models import Room

    return Room


class SignalDispatcher:
    """One process's (event loop's) queue of signal events and the task that sends them."""

    def __init__(
        self,
        *,
        queue_size: int | None = None,
        receiver_timeout: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        conf = presence_settings()
        self.queue_size = queue_size if queue_size is not None else conf.SIGNAL_QUEUE_SIZE
        self.receiver_timeout = (
            receiver_timeout
            if receiver_timeout is not None
            else conf.SIGNAL_RECEIVER_TIMEOUT_SECONDS
        )
        self.clock = clock
        self._queue: asyncio.Queue[_Event] = asyncio.Queue(maxsize=self.queue_size)
        self._task: asyncio.Task[None] | None = None
        self._threads = concurrent.futures.ThreadPoolExecutor(
            SYNC_RECEIVER_THREADS, thread_name_prefix="presence-signals"
        )
        self._busy_threads = 0
        self.dropped = 0
        self.failed = 0
        self.timed_out = 0

    def emit(self, name: str, **kwargs: Any) -> None:
        """Queue signal ``name`` with ``kwargs``; returns at once (the hot path's call)."""
        signal = SIGNALS[name]
        if not signal.receivers:
            return  # nobody listens: not even a queue entry
        try:
            self._queue.put_nowait(_Event(name, kwargs))
        except asyncio.QueueFull:
            self.dropped += 1
            metrics.count_signal("dropped")
            logger.warning("signal queue full (%d); dropped a %s event", self.queue_size, name)
            return
        self._ensure_running()

    def _ensure_running(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="presence-signals")

    async def send(self, name: str, **kwargs: Any) -> None:
        """Send signal ``name`` and return once it was sent (for calls off the hot path).

        It goes after the events already queued, so receivers hear things in
        the order they happened; called from a receiver (which the queue is
        waiting on), it is sent at once.
        """
        if not SIGNALS[name].receivers:
            return
        if self._task is not None and asyncio.current_task() is self._task:
            await self._deliver(_Event(name, kwargs))
            return
        sent: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        await self._queue.put(_Event(name, kwargs, sent))  # full: the caller waits, never drops
        self._ensure_running()
        await sent

    async def idle(self) -> None:
        """Wait until every queued event has been sent (tests, shutdown)."""
        await self._queue.join()

    async def _run(self) -> None:
        while not self._queue.empty():
            event = self._queue.get_nowait()
            try:
                await self._deliver(event)
            except Exception:  # never lose the task over one event
                logger.exception("could not dispatch a %s event", event.name)
            finally:
                self._queue.task_done()
                if event.sent is not None and not event.sent.done():
                    event.sent.set_result(None)

    async def _deliver(self, event: _Event) -> None:
        signal = SIGNALS[event.name]
        sender = _sender()
        sync_receivers, async_receivers = signal._live_receivers(sender)
        for function in sync_receivers:
            await self._guarded(event, function, self._in_thread(function, sender, event))
        for function in async_receivers:
            await self._guarded(
                event, function, function(signal=signal, sender=sender, **event.kwargs)
            )

    def _in_thread(self, function: Callable[..., Any], sender: type, event: _Event) -> Any:
        if self._busy_threads >= SYNC_RECEIVER_THREADS:
            return None  # every thread is held by a receiver that timed out
        self._busy_threads += 1
        signal = SIGNALS[event.name]
        future = asyncio.get_running_loop().run_in_executor(
            self._threads, lambda: function(signal=signal, sender=sender, **event.kwargs)
        )
        future.add_done_callback(self._thread_freed)
        return asyncio.shield(future)  # a timeout gives up waiting; the thread runs on

    def _thread_freed(self, _: object) -> None:
        self._busy_threads -= 1

    async def _guarded(self, event: _Event, function: Callable[..., Any], call: Any) -> None:
        name = getattr(function, "__qualname__", repr(function))
        if call is None:
            self.dropped += 1
            metrics.count_signal("dropped")
            logger.warning(
                "signal receiver %s skipped for %s: its threads are busy", name, event.name
            )
            return
        try:
            async with asyncio.timeout(self.receiver_timeout):
                await call
        except TimeoutError:
            self.timed_out += 1
            metrics.count_signal("timed_out")
            logger.warning(
                "signal receiver %s took longer than %.1f s for %s; moving on",
                name,
                self.receiver_timeout,
                event.name,
            )
        except Exception:
            self.failed += 1
            metrics.count_signal("failed")
            logger.exception("signal receiver %s raised for %s", name, event.name)
        else:
            metrics.count_signal("sent")


get_dispatcher = per_event_loop(SignalDispatcher)


def emit(name: str, **kwargs: Any) -> None:
    """Queue a signal from the hot path (the running loop's dispatcher)."""
    get_dispatcher().emit(name, **kwargs)
