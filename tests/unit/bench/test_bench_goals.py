"""Ratios against both baselines and the goals block: judged from one run's rows."""

from __future__ import annotations

from typing import Any

import pytest

from bench.goals import compare, evaluate
from bench.report import add_ratios, render, summarize


def _row(sweep: str, rooms: int, members: int, **values: Any) -> dict[str, Any]:
    row = {
        "sweep": sweep,
        "rooms": rooms,
        "members": members,
        "hz": 20.0,
        "ok": True,
        "updates_per_s": 1000.0,
        "server_us_per_update": 10.0,
        "p50_ms": 1.0,
        "p99_ms": 2.0,
        "delivered_ratio": 1.0,
        "lost_connections": 0,
        "why_not": None,
        "server_cpu_pct": 5.0,
        "server_rss_mb": 50.0,
        "gen_cpu_pct": 5.0,
        "host_cpu_pct": 20.0,
    }
    return row | values


def _targets(service_rows: list[dict[str, Any]], **service: Any) -> dict[str, dict[str, Any]]:
    targets: dict[str, dict[str, Any]] = {
        "a": {
            "scenarios": [_row("size", 10, 10, server_us_per_update=10.0, p99_ms=0.6)],
            "connects": {"per_s": 1000.0},
            "idle": {"kb_per_connection": 15.0},
        },
        "n": {
            "scenarios": [
                _row("size", 10, 10, server_us_per_update=8.0, p99_ms=0.5),
                _row("size", 25, 4, server_us_per_update=12.0),
            ],
            "connects": {"per_s": 2000.0},
            "idle": {"kb_per_connection": 12.0},
        },
        "uvicorn": {"scenarios": service_rows} | service,
    }
    for target in targets.values():
        target["summary"] = summarize(target)
    add_ratios(targets)
    return targets


def _goal(goals: list[dict[str, Any]], key: str) -> dict[str, Any]:
    [goal] = [g for g in goals if g["key"] == key]
    return goal


def test_every_row_gets_its_ratios_and_latencies_against_a_and_n() -> None:
    targets = _targets([_row("size", 10, 10, server_us_per_update=6.0, p99_ms=30.0)])

    [row] = targets["uvicorn"]["scenarios"]

    assert row["cpu_ratio_to_a"] == pytest.approx(0.6)
    assert row["cpu_ratio_to_n"] == pytest.approx(0.75)
    assert (row["a_p99_ms"], row["n_p99_ms"]) == (0.6, 0.5)


def test_cpu_per_update_goal_passes_at_or_below_its_ratio_to_n_and_fails_above() -> None:
    cheap = evaluate(_targets([_row("size", 10, 10, server_us_per_update=6.4)]))
    dear = evaluate(_targets([_row("size", 10, 10, server_us_per_update=6.5)]))

    assert _goal(cheap, "rooms10_cpu_vs_n")["met"] is True  # 6.4 / 8 = 0.8
    assert _goal(dear, "rooms10_cpu_vs_n")["met"] is False


def test_rooms_of_four_are_judged_against_n_at_one() -> None:
    goals = evaluate(_targets([_row("size", 25, 4, server_us_per_update=12.5)]))

    goal = _goal(goals, "rooms4_cpu_vs_n")
    assert goal["met"] is False and goal["value"] == pytest.approx(12.5 / 12.0)


def test_one_room_of_150_needs_both_delivery_and_p99() -> None:
    late = evaluate(_targets([_row("room", 1, 150, p99_ms=64.0)]))
    lossy = evaluate(_targets([_row("room", 1, 150, p99_ms=40.0, delivered_ratio=0.98)]))
    good = evaluate(_targets([_row("room", 1, 150, p99_ms=59.0)]))

    assert _goal(late, "room150_p99_ms")["met"] is False
    assert _goal(lossy, "room150_p99_ms")["met"] is False
    assert _goal(good, "room150_p99_ms")["met"] is True


def test_idle_memory_and_connects_are_judged_against_their_limits() -> None:
    goals = evaluate(_targets([], idle={"kb_per_connection": 16.5}, connects={"per_s": 500.0}))

    assert _goal(goals, "idle_kb")["met"] is False
    assert _goal(goals, "connects_ratio")["met"] is True  # 500 / a's 1000 = 0.5


def test_goals_whose_rows_did_not_run_are_not_applicable_rather_than_passed() -> None:
    goals = evaluate(_targets([]))

    for key in ("rooms10_cpu_vs_n", "room150_p99_ms", "storm_ratio", "light_p99_ms"):
        assert _goal(goals, key)["met"] is None, key


def test_the_printed_report_ends_with_pass_and_fail_per_goal() -> None:
    targets = _targets([_row("size", 10, 10, server_us_per_update=20.0)])
    results = {"meta": {"plan": {"quick": False}}, "targets": targets, "goals": evaluate(targets)}

    lines = list(render(results))

    goal_lines = lines[lines.index("goals:") + 1 :]
    assert len(goal_lines) == len(results["goals"])
    assert any("rooms of 10 @ 20 Hz" in line and "FAIL" in line for line in goal_lines)
    assert any(line.startswith("room sizes") for line in lines)


def test_compare_lists_rows_worse_than_the_reference_by_more_than_five_percent() -> None:
    reference = {"targets": _targets([_row("size", 10, 10, server_us_per_update=10.0)])}
    slower = _targets([_row("size", 10, 10, server_us_per_update=10.6)])
    same = _targets([_row("size", 10, 10, server_us_per_update=10.4)])

    worse = compare(slower, reference)

    assert [(w["target"], w["key"]) for w in worse] == [("uvicorn", "server_us_per_update")]
    assert compare(same, reference) == []


def test_compare_counts_fewer_connects_and_more_idle_memory_as_worse() -> None:
    reference = {
        "targets": _targets([], connects={"per_s": 1000.0}, idle={"kb_per_connection": 20})
    }
    now = _targets([], connects={"per_s": 900.0}, idle={"kb_per_connection": 22.0})

    keys = {w["key"] for w in compare(now, reference) if w["target"] == "uvicorn"}

    assert keys == {"per_s", "kb_per_connection"}


def test_the_storm_is_judged_against_as_many_fresh_connects_to_a() -> None:
    from bench.run import attach_storm

    results = {
        "targets": {"a": {"connects": {"per_s": 500.0}}, "uvicorn": {}},
        "storm": {"clients": 1000, "storm_resume_s": 3.0},
    }

    attach_storm(results)

    # a needs 1000 / 500 = 2 s for as many fresh connects: 3 s is 1.5x that.
    assert results["targets"]["uvicorn"]["storm"] == {"seconds": 3.0, "ratio_to_a": 1.5}


def test_a_failed_storm_is_not_judged() -> None:
    from bench.run import attach_storm

    results = {
        "targets": {"a": {"connects": {"per_s": 500.0}}, "uvicorn": {}},
        "storm": {"error": "ServerError: no Redis"},
    }

    attach_storm(results)

    assert "storm" not in results["targets"]["uvicorn"]
