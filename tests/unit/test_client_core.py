"""presence.client's decisions on a fake socket and fake time: the unit scenarios
of tests/clients/scenarios/names.txt (the same as tests/js/unit.test.js)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from presence.client import Backoff, ClientClosed, PresenceClient, RoomModel, close_action
from presence.protocol import pb
from tests.clients.fake_socket import FakeNetwork, FakeTime, chat_from, hello, settle

TABLE = json.loads(
    (Path(__file__).parents[1] / "clients" / "scenarios" / "close_codes.json").read_text()
)["codes"]


class Rig:
    """A client on a fake network and fake time."""

    def __init__(self, **options: Any) -> None:
        self.time = FakeTime()
        self.net = FakeNetwork()
        defaults: dict[str, Any] = {"user_id": "u1"}
        self.client = PresenceClient(
            "ws://test",
            "r1",
            connect=self.net.connect,
            sleep=self.time.sleep,
            clock=self.time.clock,
            backoff=Backoff(initial_s=0.5, max_s=8.0, random=lambda: 0.5),
            **{**defaults, **options},
        )
        self.states: list[Any] = []
        self.client.on("state", self.states.append)

    async def join(self) -> None:
        task = asyncio.create_task(self.client.connect(timeout=5))
        await settle()
        self.net.sockets[-1].deliver(hello())
        await task

    @property
    def socket(self) -> Any:
        return self.net.sockets[-1]


@pytest.fixture
async def rigs() -> AsyncIterator[Callable[..., Rig]]:
    made: list[Rig] = []

    def make(**options: Any) -> Rig:
        made.append(Rig(**options))
        return made[-1]

    yield make
    for rig in made:
        await rig.client.close()


def test_close_code_policy_matches_protocol_table() -> None:
    for code, expected in TABLE.items():
        decided = close_action(int(code))
        assert {"action": decided.action.value, "resume": decided.resume} == expected, code


async def test_backoff_grows_exponentially_with_jitter_and_resets_after_hello(
    rigs: Callable[..., Rig],
) -> None:
    low = Backoff(initial_s=0.5, max_s=8, random=lambda: 0.0)
    high = Backoff(initial_s=0.5, max_s=8, random=lambda: 0.999999)
    assert [low.next() for _ in range(6)] == [0.25, 0.5, 1.0, 2.0, 4.0, 4.0]
    assert [round(high.next(), 3) for _ in range(6)] == [0.5, 1.0, 2.0, 4.0, 8.0, 8.0]

    rig = rigs()
    await rig.join()
    rig.socket.drop(1006)
    await settle()
    assert rig.states[-1].reconnect_in == 0.375
    await rig.time.advance(0.375)
    assert len(rig.net.sockets) == 2
    rig.socket.drop(1006)
    await settle()
    assert rig.states[-1].reconnect_in == 0.75, "the second attempt waits longer"
    await rig.time.advance(0.75)
    rig.socket.deliver(hello(resumed=True))
    await settle()
    assert rig.client.backoff.attempt == 0, "a hello starts the backoff again"


async def test_each_close_code_reconnects_or_stops_as_the_table_says(
    rigs: Callable[..., Rig],
) -> None:
    async def token() -> str:
        return "tok"

    for code, expected in TABLE.items():
        rig = rigs(token=token, user_id="")
        await rig.join()
        rig.socket.deliver(chat_from("c2", "x", seq=3))
        await settle()
        rig.socket.drop(int(code))
        await settle()
        await rig.time.advance(60)
        if expected["action"] == "stop":
            assert len(rig.net.sockets) == 1, f"{code} must not reconnect"
            assert rig.client.state == "closed", code
            continue
        assert len(rig.net.sockets) == 2, f"{code} reconnects"
        query = rig.socket.query
        assert query.get("session_id") == ("s1" if expected["resume"] else None), code
        if expected["resume"]:
            assert query["last_seq"] == "3"
        waits = [s for s in rig.states if s.reconnect_in is not None]
        assert waits[0].state == ("resuming" if expected["resume"] else "connecting"), code
        assert waits[0].reconnect_in > 0, code


async def test_wait_codes_reconnect_after_retry_after_ms(rigs: Callable[..., Rig]) -> None:
    for code in (4008, 4429):
        rig = rigs()
        await rig.join()
        error = pb.Error(code=pb.Error.RATE_LIMITED, message="slow down", retry_after_ms=7000)
        rig.socket.deliver(pb.Message(error=error))
        rig.socket.drop(code)
        await settle()
        await rig.time.advance(6.999)
        assert len(rig.net.sockets) == 1, f"{code}: not before retry_after_ms"
        await rig.time.advance(0.001)
        assert len(rig.net.sockets) == 2, f"{code}: right after retry_after_ms"


async def test_token_is_refreshed_on_4401(rigs: Callable[..., Rig]) -> None:
    tokens = ["old", "new"]

    async def token() -> str:
        return tokens.pop(0)

    rig = rigs(token=token, user_id="")
    await rig.join()
    assert rig.socket.sent_of("client_hello")[0].client_hello.auth_token == "old"
    assert "auth_token" not in rig.socket.query, "the token stays out of the URL"
    rig.socket.drop(4401)
    await settle()
    await rig.time.advance(60)
    assert len(rig.net.sockets) == 2
    assert rig.socket.sent_of("client_hello")[0].client_hello.auth_token == "new"
    assert tokens == []

    fixed = rigs(token="static", user_id="")
    await fixed.join()
    fixed.socket.drop(4401)
    await settle()
    await fixed.time.advance(60)
    assert len(fixed.net.sockets) == 1, "a fixed token cannot be refreshed: stop"
    assert fixed.client.state == "closed"


async def test_duplicate_seq_is_dropped(rigs: Callable[..., Rig]) -> None:
    rig = rigs()
    await rig.join()
    lines: list[str] = []
    rig.client.on("chat", lambda line: lines.append(line.message))
    for seq in (1, 2, 2, 1, 3):
        rig.socket.deliver(chat_from("c2", f"m{seq}", seq))
    await settle()
    assert lines == ["m1", "m2", "m3"]
    assert rig.client.last_seq == 3


async def test_acks_are_cumulative(rigs: Callable[..., Rig]) -> None:
    rig = rigs(ack_delay=0.1)
    await rig.join()
    assert list(rig.socket.sent_of("client_hello")[0].client_hello.capabilities) == [
        "batch",
        "ack",
    ]
    for seq in (1, 2, 3):
        rig.socket.deliver(chat_from("c2", "x", seq))
    await settle()
    await rig.time.advance(0.1)
    assert [m.ack.up_to_seq for m in rig.socket.sent_of("ack")] == [3]
    rig.socket.deliver(pb.Message(seq=4, entity_despawn=pb.EntityDespawn(entity_id="e")))
    await settle()
    await rig.time.advance(0.2)
    assert [m.ack.up_to_seq for m in rig.socket.sent_of("ack")] == [3, 4]


async def test_unanswered_messages_are_resent_with_the_same_id_after_reconnect(
    rigs: Callable[..., Rig],
) -> None:
    rig = rigs()
    await rig.join()
    acked = asyncio.create_task(rig.client.chat("first"))
    lost = asyncio.create_task(rig.client.chat("second"))
    await settle()
    first, second = rig.socket.sent_of("chat_message")
    rig.socket.deliver(pb.Message(ack=pb.Ack(message_id=first.message_id)))
    assert await acked == first.message_id
    rig.socket.drop(1006)
    await settle()
    offline = asyncio.create_task(rig.client.chat("typed while cut"))
    await rig.time.advance(60)
    again = rig.socket
    assert again is not rig.net.sockets[0]
    assert again.sent_of("chat_message") == [], "nothing before the hello"
    again.deliver(hello(resumed=True))
    await settle()
    resent = again.sent_of("chat_message")
    assert [m.chat_message.message for m in resent] == ["second", "typed while cut"]
    assert resent[0].message_id == second.message_id
    for message in resent:
        again.deliver(pb.Message(ack=pb.Ack(message_id=message.message_id)))
    await asyncio.wait_for(asyncio.gather(lost, offline), 1)
    assert rig.client.pending == {}


async def test_stop_codes_fail_unanswered_messages(rigs: Callable[..., Rig]) -> None:
    rig = rigs()
    await rig.join()
    waiting = asyncio.create_task(rig.client.chat("never answered"))
    await settle()
    rig.socket.drop(4403)
    with pytest.raises(ClientClosed, match="4403"):
        await asyncio.wait_for(waiting, 1)


def test_room_model_follows_join_leave_host_pose_and_entities() -> None:
    room = RoomModel()
    zed = pb.PlayerSnapshot(client_id="c0", display_name="Zed", position=pb.Vector3(x=1, z=2))
    room.hello(hello("c1", host="c0", players=(zed,)).server_hello, "Me", resumed=False)
    assert list(room.members) == ["c1", "c0"]
    assert room.host == "c0"

    def kinds(msg: pb.Message) -> list[str]:
        return [name for name, _ in room.apply(msg)]

    join = pb.PresenceEvent(client_id="c2", data=pb.PresenceData(display_name="Bo"))
    assert kinds(pb.Message(type=pb.PRESENCE_JOIN, presence_event=join)) == ["join"]
    pose = pb.PositionUpdate(position=pb.Vector3(x=3, z=4))
    assert kinds(pb.Message(sender_id="c2", position_update=pose)) == ["pose"]
    assert (room.members["c2"].position.x, room.members["c2"].position.z) == (3, 4)
    spawn = pb.EntitySpawn(entity_id="box", template_id="crate", components={"color": "red"})
    room.apply(pb.Message(sender_id="c2", entity_spawn=spawn))
    update = pb.EntityUpdate(entity_id="box", components={"color": b"blue"})
    room.apply(pb.Message(sender_id="c2", entity_update=update))
    box_pose = pb.PositionUpdate(entity_id="box", position=pb.Vector3(x=5, z=5))
    room.apply(pb.Message(sender_id="c2", position_update=box_pose))
    assert room.entities["box"].components == {"color": "blue"}
    assert room.entities["box"].owner_id == "c2"
    assert room.entities["box"].position.x == 5
    muted = pb.PlayerMuted(muted_client_id="c2", muted=True)
    assert kinds(pb.Message(type=pb.PLAYER_MUTED, player_muted=muted)) == ["muted"]
    assert room.members["c2"].muted
    leave = pb.PresenceEvent(client_id="c0", event_type=pb.LEAVE)
    assert kinds(pb.Message(type=pb.PRESENCE_LEAVE, presence_event=leave)) == ["leave"]
    host = pb.PresenceEvent(
        client_id="c1", event_type=pb.UPDATE, data=pb.PresenceData(host_client_id="c1")
    )
    assert kinds(pb.Message(type=pb.PRESENCE_UPDATE, presence_event=host)) == ["host"]
    assert room.host == "c1"
    despawn = pb.Message(entity_despawn=pb.EntityDespawn(entity_id="box"))
    assert kinds(despawn) == ["despawn"]
    assert room.entities == {}
    assert list(room.members) == ["c1", "c2"]
