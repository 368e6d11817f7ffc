"""Open sockets end when their account is disabled, deleted or its password changes.

On both channel layers (in process, and Redis). The push tests set the
periodic check to an hour, so only the announcement through the channel layer
can close the socket in time; the periodic test changes the database behind
Django's back (raw SQL: no signal) with a check every 0.2 s.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from channels.db import database_sync_to_async
from django.contrib.auth import get_user_model
from django.db import connection
from rest_framework_simplejwt.tokens import AccessToken

from presence.cluster.account_watch import get_account_watch
from presence.cluster.instance import get_hub
from presence.protocol import pb
from presence.protocol.codes import CloseCode
from tests.clients.communicator import RECEIVE_TIMEOUT, ProtocolClient

pytestmark = pytest.mark.django_db(transaction=True)

ROOM = "accounts"


@pytest.fixture
def presence_conf(channel_layer_kind: str, settings: Any) -> Callable[..., None]:
    """Override PRESENCE on top of the channel layer's settings."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

    def override(**values: object) -> None:
        settings.PRESENCE = {**settings.PRESENCE, **values}

    return override


@pytest.fixture
def push_only(presence_conf: Callable[..., None]) -> None:
    presence_conf(ACCOUNT_CHECK_SECONDS=3600.0)


@database_sync_to_async
def make_user(name: str) -> Any:
    return get_user_model().objects.create_user(name, password=f"{name}-password-1")


@database_sync_to_async
def token_for(user: Any) -> str:
    return str(AccessToken.for_user(user))


async def connect(token: str) -> ProtocolClient:
    client = ProtocolClient(f"/ws/{ROOM}?auth_token={token}")
    await client.join()
    return client


async def joined(user: Any) -> ProtocolClient:
    """A socket of ``user``; returns once the account watch hears every change.

    From then on only the announcement (or the hour-long periodic check) can
    close it: the watch's own catch-up check has run.
    """
    client = await connect(await token_for(user))
    await asyncio.wait_for(get_account_watch(get_hub()).listening.wait(), RECEIVE_TIMEOUT)
    return client


async def expect_revoked(client: ProtocolClient, text: str) -> None:
    """The next messages: Error UNAUTHORIZED with ``text``, then close 4401."""
    error = await client.recv_kind("error")
    assert (error.error.code, error.error.message) == (pb.Error.UNAUTHORIZED, text)
    assert await client.expect_close() == CloseCode.UNAUTHORIZED


async def still_open(client: ProtocolClient) -> None:
    """The socket still answers a Ping (messages before the Pong are skipped)."""
    await client.send(pb.Message(ping=pb.Ping(client_time_ms=7)))
    pong = await client.recv_kind("pong")
    assert pong.pong.client_time_ms == 7


# --- the push: every instance hears of the change at once --------------------------


async def test_disabling_an_account_closes_its_sockets(push_only: None) -> None:
    alice = await make_user("alice")
    first, second = await joined(alice), await joined(alice)

    alice.is_active = False
    await database_sync_to_async(alice.save)()

    await expect_revoked(first, "account disabled")
    await expect_revoked(second, "account disabled")


async def test_a_password_change_closes_its_sockets(push_only: None) -> None:
    alice = await make_user("alice")
    client = await joined(alice)

    alice.set_password("a-brand-new-password-2")
    await database_sync_to_async(alice.save)()

    await expect_revoked(client, "password changed: log in again")


async def test_deleting_an_account_closes_its_sockets(push_only: None) -> None:
    alice = await make_user("alice")
    client = await joined(alice)

    await database_sync_to_async(alice.delete)()

    await expect_revoked(client, "account deleted")


async def test_other_users_and_development_identities_keep_their_sockets(
    push_only: None,
) -> None:
    alice, bob = await make_user("alice"), await make_user("bob")
    revoked, kept = await joined(alice), await joined(bob)
    developer = ProtocolClient(f"/ws/{ROOM}?user_id=dev-carol")
    await developer.join()

    alice.is_active = False
    await database_sync_to_async(alice.save)()
    await expect_revoked(revoked, "account disabled")

    await still_open(kept)
    await still_open(developer)
    await kept.close()
    await developer.close()


async def test_a_last_login_update_closes_nothing(push_only: None) -> None:
    alice = await make_user("alice")
    client = await joined(alice)

    await database_sync_to_async(alice.save)(update_fields=["last_login"])
    alice.first_name = "Alice"
    await database_sync_to_async(alice.save)()  # announced, checked, unchanged

    await still_open(client)
    await client.close()


# --- the door: a token issued before the change opens nothing --------------------------


async def test_a_token_issued_before_a_password_change_is_refused_at_the_door(
    push_only: None,
) -> None:
    alice = await make_user("alice")
    old_token = await token_for(alice)
    alice.set_password("a-brand-new-password-2")
    await database_sync_to_async(alice.save)()

    client = ProtocolClient(f"/ws/{ROOM}?auth_token={old_token}")
    accepted, _ = await client.open()
    assert accepted
    await expect_revoked(client, "password changed: log in again")


async def test_a_token_of_a_disabled_account_is_refused_at_the_door(push_only: None) -> None:
    alice = await make_user("alice")
    token = await token_for(alice)
    alice.is_active = False
    await database_sync_to_async(alice.save)()

    client = ProtocolClient(f"/ws/{ROOM}?auth_token={token}")
    await client.open()
    await expect_revoked(client, "account disabled")


# --- the safety net: changes no signal reports ------------------------------------------


@database_sync_to_async
def disable_behind_djangos_back(user_pk: int) -> None:
    table = get_user_model()._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(f"UPDATE {table} SET is_active = %s WHERE id = %s", [False, user_pk])


async def test_a_change_made_in_raw_sql_is_found_by_the_periodic_check(
    presence_conf: Callable[..., None],
) -> None:
    presence_conf(ACCOUNT_CHECK_SECONDS=0.2)
    alice = await make_user("alice")
    client = await joined(alice)

    await disable_behind_djangos_back(alice.pk)

    await expect_revoked(client, "account disabled")
