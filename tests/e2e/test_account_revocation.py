"""Across two instances on one Redis: an account changed by another process ends its sockets.

The change is made by a separate ``manage.py shell`` process with the
cluster's settings (its database, its Redis), as an operator would. The
instances' periodic account check runs only every 300 s here, so a socket
closed within seconds was closed by the announcement through Redis.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from urllib.parse import urlencode

import pytest

from presence.protocol import pb
from tests.clients.live import Client, ClientPool, expect_close, join_refused, obtain_token
from tests.e2e.conftest import Cluster, PrivateRedis, cluster_env, manage, running_cluster

pytestmark = pytest.mark.e2e

ROOM = "accounts-e2e"
UNAUTHORIZED = 4401
PUSH_DEADLINE_SECONDS = 10.0  # far below the 300 s periodic check


@pytest.fixture(scope="module")
def accounts_cluster(
    tmp_path_factory: pytest.TempPathFactory, cluster_redis: PrivateRedis
) -> Iterator[Cluster]:
    tmp = tmp_path_factory.mktemp("accounts")
    with running_cluster(
        tmp, cluster_redis, extra_env={"PRESENCE_ACCOUNT_CHECK_SECONDS": "300"}
    ) as started:
        yield started


def shell(cluster: Cluster, code: str) -> None:
    """``manage.py shell -c code`` in a process of its own, on the cluster's database and Redis."""
    env = cluster_env(cluster.a.sqlite_path.parent, cluster.redis.url, cluster.prefix)
    env["SQLITE_PATH"] = str(cluster.a.sqlite_path)
    manage("shell", "-c", code, env=env)


def create_user(cluster: Cluster, name: str, password: str) -> None:
    shell(
        cluster,
        "from django.contrib.auth import get_user_model; "
        f"get_user_model().objects.create_user({name!r}, password={password!r})",
    )


async def open_with_token(pool: ClientPool, server_ws: str, token: str) -> Client:
    client = await pool.open(f"{server_ws}/ws/{ROOM}?{urlencode({'auth_token': token})}")
    hello = await client.recv()
    assert hello.WhichOneof("payload") == "server_hello", hello
    return client


async def revoked(client: Client, text: str) -> None:
    before = await expect_close(client, UNAUTHORIZED, timeout=PUSH_DEADLINE_SECONDS)
    errors = [m.error for m in before if m.WhichOneof("payload") == "error"]
    assert [(e.code, e.message) for e in errors] == [(pb.Error.UNAUTHORIZED, text)]


async def test_a_password_changed_by_manage_py_ends_the_users_sockets_on_both_instances(
    accounts_cluster: Cluster, clients: ClientPool
) -> None:
    name, password = f"erin-{uuid.uuid4().hex[:6]}", f"pw-{uuid.uuid4().hex}"
    await asyncio.to_thread(create_user, accounts_cluster, name, password)
    token = obtain_token(accounts_cluster.a.http_url, name, password)
    on_a = await open_with_token(clients, accounts_cluster.a.ws_url, token)
    on_b = await open_with_token(clients, accounts_cluster.b.ws_url, token)

    await asyncio.to_thread(
        shell,
        accounts_cluster,
        "from django.contrib.auth import get_user_model; "
        f"u = get_user_model().objects.get(username={name!r}); "
        "u.set_password('a-brand-new-password-7'); u.save()",
    )

    await asyncio.gather(
        revoked(on_a, "password changed: log in again"),
        revoked(on_b, "password changed: log in again"),
    )
    refused = await join_refused(
        clients, accounts_cluster.b.ws_url, ROOM, "", UNAUTHORIZED, auth_token=token
    )
    assert [m.error.message for m in refused] == ["password changed: log in again"]


async def test_an_account_disabled_by_manage_py_ends_the_users_sockets_on_both_instances(
    accounts_cluster: Cluster, clients: ClientPool
) -> None:
    name, password = f"finn-{uuid.uuid4().hex[:6]}", f"pw-{uuid.uuid4().hex}"
    await asyncio.to_thread(create_user, accounts_cluster, name, password)
    token = obtain_token(accounts_cluster.b.http_url, name, password)
    on_a = await open_with_token(clients, accounts_cluster.a.ws_url, token)
    on_b = await open_with_token(clients, accounts_cluster.b.ws_url, token)
    bystander = await clients.join(accounts_cluster.a.ws_url, ROOM, f"dev-{name}")

    await asyncio.to_thread(
        shell,
        accounts_cluster,
        "from django.contrib.auth import get_user_model; "
        f"u = get_user_model().objects.get(username={name!r}); "
        "u.is_active = False; u.save()",
    )

    await asyncio.gather(revoked(on_a, "account disabled"), revoked(on_b, "account disabled"))
    # A development-mode identity in the same room has no account: it stays.
    await bystander.send(pb.Message(ping=pb.Ping(client_time_ms=3)))
    pong = await bystander.recv_until(lambda m: m.WhichOneof("payload") == "pong")
    assert pong.pong.client_time_ms == 3
