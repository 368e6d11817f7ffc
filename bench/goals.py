"""The goals of the issue, each judged PASS/FAIL from one run's results.

Ratios are always against baselines measured in the same run (a: the bare
python ``websockets`` relay, n: the bare Node.js ``ws`` relay). A goal whose
rows did not run (``--quick``, ``--only``, a missing baseline) is ``n/a``.
"""

from __future__ import annotations

from typing import Any

from bench.report import BASELINES, row_key, scenario_label

DELIVERED_OK = 0.99
ONE_ROOM_MEMBERS = 150  # one room of 150 @ 20 Hz ...
ONE_ROOM_P99_MS = 60.0  # ... with p99 at most this
LIGHT_LOAD_P99_MS = 20.0  # rooms of 10 at light load, once the tick adapts
STORM_CLIENTS = 1000


def _size_row(target: dict[str, Any], members: int) -> dict[str, Any] | None:
    return next(
        (
            s
            for s in target.get("scenarios", [])
            if s["sweep"] == "size" and s["members"] == members
        ),
        None,
    )


def _one_room_row(target: dict[str, Any], members: int) -> dict[str, Any] | None:
    rows = [
        s for s in target.get("scenarios", []) if s["sweep"] == "room" and s["members"] == members
    ]
    return rows[-1] if rows else None


def _judge(
    target: str,
    key: str,
    text: str,
    op: str,
    want: float,
    value: float | None,
    *,
    met: bool | None = None,
    note: str = "",
) -> dict[str, Any]:
    if met is None and value is not None:
        met = value <= want if op == "<=" else value >= want
    return {
        "target": target,
        "key": key,
        "goal": text,
        "want": f"{op} {want:g}",
        "value": value,
        "met": met,
        "note": note if value is not None or note else "not measured in this run",
    }


def _room150(name: str, target: dict[str, Any]) -> dict[str, Any]:
    row = _one_room_row(target, ONE_ROOM_MEMBERS)
    text = f"one room of {ONE_ROOM_MEMBERS} @ 20 Hz: >= 99 % delivered and p99 ms"
    if row is None or row["delivered_ratio"] is None:
        note = "" if row is None else str(row.get("why_not") or "")
        return _judge(name, "room150_p99_ms", text, "<=", ONE_ROOM_P99_MS, None, note=note)
    delivered = row["delivered_ratio"]
    p99 = row["p99_ms"]
    met = delivered >= DELIVERED_OK and p99 is not None and p99 <= ONE_ROOM_P99_MS
    return _judge(
        name,
        "room150_p99_ms",
        text,
        "<=",
        ONE_ROOM_P99_MS,
        p99,
        met=met and not row.get("lost_connections"),
        note=f"{delivered * 100:.1f} % delivered",
    )


def evaluate(targets: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Every service target (not a, not n) against every goal, in the issue's order."""
    out: list[dict[str, Any]] = []
    for name, target in targets.items():
        if name not in BASELINES and "ratios" in target:
            out += _target_goals(name, target)
    return out


def _target_goals(name: str, target: dict[str, Any]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    ratios = target["ratios"]
    row10, row4 = _size_row(target, 10), _size_row(target, 4)

    def add(key: str, text: str, op: str, want: float, value: float | None, **kw: Any) -> None:
        out.append(_judge(name, key, text, op, want, value, **kw))

    add(
        "rooms10_cpu_vs_n",
        "rooms of 10 @ 20 Hz: server CPU per delivered update vs n",
        "<=",
        0.8,
        row10.get("cpu_ratio_to_n") if row10 else None,
    )
    add(
        "rooms4_cpu_vs_n",
        "rooms of 4 @ 20 Hz: server CPU per delivered update vs n",
        "<=",
        1.0,
        row4.get("cpu_ratio_to_n") if row4 else None,
    )
    add(
        "rooms10_ratio",
        "rooms of 10: updates/s at saturation vs a",
        ">=",
        1.0,
        ratios.get("rooms10_ratio"),
    )
    # Kept from the earlier goals: big rooms must not lose their lead.
    add(
        "rooms30_ratio",
        "rooms of 30: updates/s at saturation vs a",
        ">=",
        1.0,
        ratios.get("rooms30_ratio"),
    )
    add(
        "connects_ratio",
        "connects/s (handshake, auth, join, ServerHello) vs a",
        ">=",
        0.5,
        ratios.get("connects_ratio"),
    )
    storm = target.get("storm") or {}
    add(
        "storm_ratio",
        f"reconnect storm of {STORM_CLIENTS:,} resuming: time vs a's fresh connects",
        "<=",
        2.0,
        storm.get("ratio_to_a"),
        note="" if storm else "not measured by this version",
    )
    add("idle_kb", "KB per idle connection", "<=", 16.0, ratios.get("idle_kb"))
    out.append(_room150(name, target))
    largest = ratios.get("largest_room")
    add(
        "largest_room",
        f"largest room @ 20 Hz with >= 99 % delivered and p99 <= {ONE_ROOM_P99_MS:g} ms",
        ">=",
        ONE_ROOM_MEMBERS,
        largest,
        note=f"tried {target.get('summary', {}).get('room_tried')}" if largest else "",
    )
    add(
        "light_p99_ms",
        "light load (rooms of 10 @ 20 Hz): p99 ms",
        "<=",
        LIGHT_LOAD_P99_MS,
        row10.get("p99_ms") if row10 else None,
        note=_baseline_p99(row10),
    )
    return out


def _baseline_p99(row: dict[str, Any] | None) -> str:
    if row is None or row.get("a_p99_ms") is None:
        return ""
    return f"a {row['a_p99_ms']:.1f}, n {row.get('n_p99_ms') or 0:.1f}"


WORSE_PCT = 5.0  # no row may get worse than the reference run by more than this


def compare(targets: dict[str, dict[str, Any]], reference: dict[str, Any]) -> list[dict[str, Any]]:
    """Rows worse than the same target's same row in ``reference`` (an earlier results.json).

    Worse: server CPU per delivered update up, delivered updates/s down, or
    p99 up by more than :data:`WORSE_PCT`; plus connects/s down and KB per idle
    connection up. Only rows both runs measured are compared.
    """
    out: list[dict[str, Any]] = []
    checks = (("server_us_per_update", 1), ("updates_per_s", -1), ("p99_ms", 1))
    for name, target in targets.items():
        before = reference.get("targets", {}).get(name)
        if not before:
            continue
        old_rows = {row_key(s): s for s in before.get("scenarios", [])}
        for row in target.get("scenarios", []):
            old = old_rows.get(row_key(row))
            if old is None:
                continue
            for key, sign in checks:
                out += _worse(name, scenario_label(row) + f" {row['sweep']}", key, sign, old, row)
        for part, key, sign in (("connects", "per_s", -1), ("idle", "kb_per_connection", 1)):
            out += _worse(name, part, key, sign, before.get(part) or {}, target.get(part) or {})
    return out


def _worse(
    name: str, what: str, key: str, sign: int, old: dict[str, Any], new: dict[str, Any]
) -> list[dict[str, Any]]:
    was, now = old.get(key), new.get(key)
    if not was or now is None:
        return []
    change = (now - was) / was * 100
    if change * sign <= WORSE_PCT:
        return []
    return [{"target": name, "row": what, "key": key, "was": was, "now": now, "change_pct": change}]
