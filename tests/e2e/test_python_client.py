"""presence.client against a live uvicorn: the live scenarios of
tests/clients/scenarios/names.txt (the same as tests/js/live.test.js)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import pytest

from presence.client import Backoff, PresenceClient
from tests.clients.live import obtain_token
from tests.clients.tcpcut import CutProxy
from tests.e2e.conftest import Server, serving
from tests.e2e.jsnode import create_user, expired_token

pytestmark = pytest.mark.e2e

WAIT = 5.0  # seconds any one expectation may take
PASSWORD = f"pw-{uuid.uuid4().hex}"

Make = Callable[..., Awaitable[PresenceClient]]


@pytest.fixture(scope="module")
def py_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with serving(tmp_path_factory, "uvicorn-py") as server:
        create_user(server, "pyclient", PASSWORD)
        yield server


@pytest.fixture
async def make(py_server: Server) -> AsyncIterator[Make]:
    """Join clients (dev user ids unless a token is given); all closed afterwards."""
    made: list[PresenceClient] = []

    async def joined(
        room: str, user: str = "", *, connect: bool = True, **kw: Any
    ) -> PresenceClient:
        kw.setdefault("url", py_server.ws_url)
        kw.setdefault("backoff", Backoff(initial_s=0.1, max_s=1.0))
        client = PresenceClient(kw.pop("url"), room, user_id=user, **kw)
        made.append(client)
        if connect:
            await client.connect(timeout=WAIT)
        return client

    yield joined
    for client in made:
        await client.close()


async def until(test: Callable[[], bool], what: str) -> None:
    deadline = asyncio.get_running_loop().time() + WAIT
    while not test():
        assert asyncio.get_running_loop().time() < deadline, f"timed out: {what}"
        await asyncio.sleep(0.01)


def new_room() -> str:
    return f"py-{uuid.uuid4().hex[:8]}"


async def test_join_sees_hello_and_initial_state(make: Make) -> None:
    room = new_room()
    alice = await make(room, "alice", display_name="Alice")
    await alice.move(1, 0, 2)
    bob = await make(room, "bob", connect=False, display_name="Bob")
    hello = await bob.connect(timeout=WAIT)
    assert hello.resumed is False
    assert hello.host == alice.room.me, "the first member is host"
    assert len(bob.session_id) == 32
    assert sorted(m.display_name for m in bob.room.members.values()) == ["Alice", "Bob"]
    await until(lambda: bob.room.members[alice.room.me].position.x == 1, "alice's pose")
    await until(lambda: bob.room.me in alice.room.members, "alice sees bob")


async def test_two_clients_see_each_others_events(make: Make) -> None:
    room = new_room()
    alice = await make(room, "alice", display_name="Alice")
    bob = await make(room, "bob", display_name="Bob")
    await until(lambda: len(alice.room.members) == 2, "alice sees bob")

    pose = asyncio.ensure_future(bob.wait_for("pose", lambda p: p["position"].x == 3))
    await alice.move(3, 0, -1)
    await asyncio.wait_for(pose, WAIT)

    line = asyncio.ensure_future(bob.wait_for("chat", lambda c: not c.mine))
    await asyncio.wait_for(alice.chat("hello <b>bob</b>"), WAIT)
    got = await asyncio.wait_for(line, WAIT)
    assert (got.message, got.from_client_id, got.name) == (
        "hello <b>bob</b>",
        alice.room.me,
        "Alice",
    )
    assert got.timestamp > 0
    assert alice.room.chat[-1].acked

    spawned = asyncio.ensure_future(bob.wait_for("spawn"))
    await asyncio.wait_for(alice.spawn("box-1", "crate", {"color": "red"}), WAIT)
    entity = await asyncio.wait_for(spawned, WAIT)
    assert (entity.id, entity.owner_id, entity.components) == (
        "box-1",
        alice.room.me,
        {"color": "red"},
    )
    updated = asyncio.ensure_future(bob.wait_for("entityUpdate"))
    await asyncio.wait_for(alice.update_entity("box-1", {"color": "blue"}), WAIT)
    assert (await asyncio.wait_for(updated, WAIT))["components"] == {"color": "blue"}
    moved = asyncio.ensure_future(bob.wait_for("pose", lambda p: p["entity_id"] == "box-1"))
    await alice.move_entity("box-1", 4, 0, 4)
    await asyncio.wait_for(moved, WAIT)
    assert bob.room.entities["box-1"].position.x == 4
    gone = asyncio.ensure_future(bob.wait_for("despawn"))
    await asyncio.wait_for(alice.despawn("box-1"), WAIT)
    assert (await asyncio.wait_for(gone, WAIT))["entity_id"] == "box-1"

    left = asyncio.ensure_future(alice.wait_for("leave"))
    await bob.close()
    assert (await asyncio.wait_for(left, WAIT))["client_id"] == bob.room.me


async def test_host_moves_to_the_other_member_when_the_host_leaves(make: Make) -> None:
    room = new_room()
    alice = await make(room, "alice")
    bob = await make(room, "bob")
    assert bob.room.host == alice.room.me
    host = asyncio.ensure_future(bob.wait_for("host"))
    await alice.close()
    assert (await asyncio.wait_for(host, WAIT))["client_id"] == bob.room.me


async def test_json_format_works_like_protobuf(make: Make) -> None:
    room = new_room()
    alice = await make(room, "alice", format="json")
    bob = await make(room, "bob")
    line = asyncio.ensure_future(alice.wait_for("chat", lambda c: not c.mine))
    await asyncio.wait_for(bob.chat("to json"), WAIT)
    assert (await asyncio.wait_for(line, WAIT)).message == "to json"
    spawned = asyncio.ensure_future(bob.wait_for("spawn"))
    await asyncio.wait_for(alice.spawn("j1", "cone", {"size": "2"}), WAIT)
    assert (await asyncio.wait_for(spawned, WAIT)).components == {"size": "2"}


async def test_expired_token_is_refreshed_and_the_client_joins(
    make: Make, py_server: Server
) -> None:
    handed: list[str] = []

    def token() -> str:
        fresh = obtain_token(py_server.http_url, "pyclient", PASSWORD)
        handed.append(expired_token(py_server, "pyclient", PASSWORD) if not handed else fresh)
        return handed[-1]

    states: list[Any] = []
    client = await make(new_room(), connect=False, token=token)
    client.on("state", states.append)
    await client.connect(timeout=WAIT)
    assert len(handed) == 2
    assert any(s.code == 4401 for s in states), states


async def test_cut_socket_reconnects_and_resends_unanswered_messages(
    make: Make, py_server: Server
) -> None:
    room = new_room()
    proxy = await CutProxy(int(py_server.http_url.rsplit(":", 1)[1])).start()
    try:
        alice = await make(room, "alice", url=proxy.ws_url)
        bob = await make(room, "bob")
        await until(lambda: len(alice.room.members) == 2, "alice sees bob")
        lost = asyncio.ensure_future(alice.wait_for("state", lambda s: s.state == "resuming"))
        proxy.down()
        proxy.cut()
        await asyncio.wait_for(lost, WAIT)
        typed = asyncio.ensure_future(alice.chat("typed while cut off"))
        refused = proxy.refused
        await until(lambda: proxy.refused > refused, "a reconnect attempt is refused")
        assert alice.state != "open"
        proxy.up()
        await asyncio.wait_for(typed, 10)
        await until(
            lambda: any(c.message == "typed while cut off" for c in bob.room.chat), "bob gets it"
        )
        assert [c.message for c in bob.room.chat].count("typed while cut off") == 1
    finally:
        await proxy.close()


async def test_cut_socket_reconnects_without_losing_a_chat_line(
    make: Make, py_server: Server
) -> None:
    """Lines either way while the socket is cut arrive once each (replay or recent chat)."""
    room = new_room()
    proxy = await CutProxy(int(py_server.http_url.rsplit(":", 1)[1])).start()
    try:
        alice = await make(room, "alice", url=proxy.ws_url)
        bob = await make(room, "bob")
        await until(lambda: len(alice.room.members) == 2, "alice sees bob")
        proxy.down()
        proxy.cut()
        await alice.wait_for("state", lambda s: s.state == "resuming", WAIT)
        await asyncio.wait_for(bob.chat("said while alice was cut off"), WAIT)
        typed = asyncio.ensure_future(alice.chat("typed while cut off"))
        proxy.up()
        await asyncio.wait_for(typed, 10)

        def count(client: PresenceClient, text: str) -> int:
            return [line.message for line in client.room.chat].count(text)

        await until(lambda: count(alice, "said while alice was cut off") == 1, "alice gets it")
        await until(lambda: count(bob, "typed while cut off") == 1, "bob gets it")
        assert count(alice, "typed while cut off") == 1
    finally:
        await proxy.close()
