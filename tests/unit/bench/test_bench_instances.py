"""``--instances N``: clients dealt over the instances, targets named after the count."""

from __future__ import annotations

from typing import Any

import pytest

from bench.loadgen import ClientSpec
from bench.measure import room_clients
from bench.report import BASELINE, TIMES, add_ratios, summarize
from bench.run import main, target_name

PORTS = [8001, 8002]


def _ports_by_room(clients: list[ClientSpec]) -> dict[str, list[int]]:
    by_room: dict[str, list[int]] = {}
    for _, port, path, _ in clients:
        by_room.setdefault(path.split("?")[0], []).append(port)
    return by_room


def test_members_of_every_room_alternate_between_instances() -> None:
    by_room = _ports_by_room(room_clients("t", 2, 5, PORTS))

    assert by_room == {
        "/ws/t-0": [8001, 8002, 8001, 8002, 8001],
        "/ws/t-1": [8001, 8002, 8001, 8002, 8001],
    }


def test_every_room_spans_every_instance_when_it_has_enough_members() -> None:
    ports = [8001, 8002, 8003]

    by_room = _ports_by_room(room_clients("t", 4, 10, ports))

    assert len(by_room) == 4
    assert all(set(used) == set(ports) for used in by_room.values())


def test_one_instance_gets_every_client() -> None:
    assert {port for _, port, _, _ in room_clients("t", 3, 10, [8001])} == {8001}


def test_clients_keep_unique_numbers_and_users() -> None:
    clients = room_clients("t", 3, 4, PORTS)

    assert [number for number, _, _, _ in clients] == list(range(12))
    assert len({user for _, _, _, user in clients}) == 12
    assert all(path.endswith(f"user_id={user}") for _, _, path, user in clients)


@pytest.mark.parametrize(
    ("instances", "layer", "name"),
    [
        (1, "memory", "uvicorn"),
        (1, "redis", "uvicorn+redis"),
        (2, "redis", f"uvicorn{TIMES}2+redis"),
    ],
)
def test_target_name_says_how_many_instances_ran(instances: int, layer: str, name: str) -> None:
    assert target_name("uvicorn", instances, layer) == name


def test_several_instances_need_the_redis_layer() -> None:
    with pytest.raises(SystemExit, match="needs --layer redis"):
        main(["--instances", "2", "--layer", "memory"])


@pytest.mark.parametrize("instances", ["0", "99"])
def test_instance_count_is_bounded(instances: str) -> None:
    with pytest.raises(SystemExit, match="--instances: 1 to"):
        main(["--instances", instances, "--layer", "redis"])


def test_a_two_instance_target_is_compared_with_baseline_a_of_the_same_run() -> None:
    name = target_name("uvicorn", 2, "redis")
    row = {"sweep": "quick", "rooms": 2, "members": 5, "hz": 20.0, "ok": True}
    targets: dict[str, dict[str, Any]] = {
        BASELINE: {"scenarios": [{**row, "updates_per_s": 800.0}], "connects": {"per_s": 900.0}},
        name: {"scenarios": [{**row, "updates_per_s": 400.0}], "connects": {"per_s": 450.0}},
    }
    for target in targets.values():
        target["summary"] = summarize(target)

    add_ratios(targets)

    assert targets[name]["scenarios"][0]["ratio_to_a"] == 0.5
    assert targets[name]["ratios"]["quick_ratio"] == 0.5
    assert targets[name]["ratios"]["connects_ratio"] == 0.5
