"""Ends this instance's sockets whose account was disabled, deleted or had its password changed.

One watch per event loop (per process), started when the first socket with a
Django user joins. Two ways in, both ending in :meth:`AccountWatch.check`:

* **push**: a user saved or deleted anywhere (admin, ``manage.py``, a shell
  with the same channel layer) is announced to the group ``presence.accounts``
  (:func:`presence.accounts.announce_account_change`); the watch reads it from
  its own channel and checks that user's members at once;
* **safety net**: every ``ACCOUNT_CHECK_SECONDS`` it checks every local member
  with a Django user, one query for their distinct users, so changes that send
  no signal (raw SQL, another application on the database) end sockets too.

A revoked socket gets ``Error UNAUTHORIZED`` saying why ("account disabled",
"password changed: log in again") and close 4401. Development-mode
identities have no account and are left alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import weakref
from typing import Any

from channels.db import database_sync_to_async
from channels.layers import BaseChannelLayer, get_channel_layer

from presence import metrics
from presence.accounts import ACCOUNT_EVENT, ACCOUNTS_GROUP, account_states, revocation
from presence.auth import Identity
from presence.cluster.hub import Hub
from presence.conf import presence_settings
from presence.protocol.codes import CloseCode

logger = logging.getLogger(__name__)

READER_RETRY_SECONDS = 1.0  # back-off when the channel layer fails
# The watch subscribes afresh this often: the core layer forgets group members
# after a day, and the pub/sub layer drops every subscription when the hub
# resets it after a Redis failure (presence/cluster/bridge.py), silently.
RESUBSCRIBE_SECONDS = 60.0


class AccountWatch:
    """Push and periodic account checks of one hub's members."""

    def __init__(
        self,
        hub: Hub,
        *,
        layer: BaseChannelLayer | None,
        interval: float,
        resubscribe_seconds: float = RESUBSCRIBE_SECONDS,
    ) -> None:
        self.hub = hub
        self.layer = layer
        self.interval = interval
        self.resubscribe_seconds = resubscribe_seconds
        self.closed = 0  # sockets closed so far
        # Set once subscribed and caught up: from then on every change is heard.
        self.listening = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    def ensure(self) -> None:
        """Start the reader and the periodic check, unless they run."""
        if self._tasks and not any(task.done() for task in self._tasks):
            return
        self.stop()
        self._tasks = [asyncio.create_task(self._check_periodically(), name="presence-accounts")]
        if self.layer is not None:
            self._tasks.append(asyncio.create_task(self._read(), name="presence-accounts-reader"))

    def stop(self) -> None:
        """Cancel the background tasks."""
        for task in self._tasks:
            task.cancel()
        self._tasks = []

    async def check(self, user_ids: set[int] | None = None) -> int:
        """Close the local members whose account no longer allows them; how many.

        ``user_ids`` limits the check to those users (a push); None checks all.
        """
        members: list[tuple[Any, Identity]] = []
        for member in self.hub.local_members():
            identity = getattr(member, "identity", None)
            if not isinstance(identity, Identity) or identity.django_user_id is None:
                continue
            if user_ids is None or identity.django_user_id in user_ids:
                members.append((member, identity))
        if not members:
            return 0
        states = await database_sync_to_async(account_states)(
            {i.django_user_id for _, i in members if i.django_user_id is not None}
        )
        closing: dict[str, set[str]] = {}
        for member, identity in members:
            assert identity.django_user_id is not None
            reason = revocation(identity, states.get(identity.django_user_id))
            if reason is not None:
                closing.setdefault(reason, set()).add(member.client_id)
        for reason, client_ids in closing.items():
            logger.info("closing %d connection(s): %s", len(client_ids), reason)
            self.hub.abort_clients(client_ids, CloseCode.UNAUTHORIZED, reason)
        closed = sum(len(ids) for ids in closing.values())
        self.closed += closed
        return closed

    async def _check_periodically(self) -> None:
        this_task = asyncio.current_task()
        while not (this_task and this_task.cancelling()):
            await asyncio.sleep(self.interval)
            await self._check_logged(None)

    async def _read(self) -> None:
        """Read account changes from ``presence.accounts``; subscribe afresh now and then."""
        assert self.layer is not None
        this_task = asyncio.current_task()
        # Python 3.11's wait_for inside redis-py can swallow a cancellation:
        # check for one on every round, or never stop.
        while not (this_task and this_task.cancelling()):
            channel = ""
            try:
                # BaseChannelLayer's abstract new_channel takes no prefix; the layers
                # that run (channels_redis, in-memory) do.
                channel = await self.layer.new_channel(prefix="presence-accounts.")  # type: ignore[call-arg]
                await self.layer.group_add(ACCOUNTS_GROUP, channel)
                # Whatever changed before this subscription was announced to no
                # one here: read it now; from here on every change is heard.
                await self._check_logged(None)
                self.listening.set()
                await self._receive_until_resubscribe(channel)
            except asyncio.CancelledError:
                raise
            except Exception:
                metrics.count_layer_failure("accounts_receive")
                logger.warning("account changes could not be read; retrying")
                await asyncio.sleep(READER_RETRY_SECONDS)
            finally:
                self.listening.clear()
                if channel:
                    with contextlib.suppress(Exception):
                        await self.layer.group_discard(ACCOUNTS_GROUP, channel)

    async def _receive_until_resubscribe(self, channel: str) -> None:
        assert self.layer is not None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.resubscribe_seconds
        while (left := deadline - loop.time()) > 0:
            try:
                event = await asyncio.wait_for(self.layer.receive(channel), left)
            except TimeoutError:
                return
            if event.get("type") == ACCOUNT_EVENT and isinstance(event.get("user"), int):
                await self._check_logged({event["user"]})

    async def _check_logged(self, user_ids: set[int] | None) -> None:
        try:
            await self.check(user_ids)
        except Exception:  # the database away: the periodic check tries again
            logger.exception("account check failed; the periodic one follows")


_watches: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, AccountWatch] = (
    weakref.WeakKeyDictionary()
)


def get_account_watch(hub: Hub) -> AccountWatch:
    """The running event loop's watch of ``hub`` (made on first use)."""
    loop = asyncio.get_running_loop()
    watch = _watches.get(loop)
    if watch is None or watch.hub is not hub:
        if watch is not None:
            watch.stop()
        watch = _watches[loop] = AccountWatch(
            hub, layer=get_channel_layer(), interval=presence_settings().ACCOUNT_CHECK_SECONDS
        )
    return watch


def watch_accounts(hub: Hub, identity: Identity) -> None:
    """Watch the accounts of ``hub``'s members, once one of them has a Django user."""
    if identity.django_user_id is not None:
        get_account_watch(hub).ensure()
