"""Results -> summaries, ratios to baseline a, the issue's goals, printed tables.

Pure functions over the result dicts the runner collects; nothing here
measures or starts anything.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

BASELINE = "a"
TIMES = "\N{MULTIPLICATION SIGN}"  # uvicorn TIMES 2: two instances of the service
SWEEPS = {  # name -> (members per room, or None for the one-room sweep), title
    "rooms10": (10, "rooms of 10"),
    "rooms30": (30, "rooms of 30"),
    "room": (None, "one room"),
    "quick": (None, "quick"),
    "legacy10": (10, "rooms of 10 legacy (GraphWiz-XR) members"),
}
# Sweeps whose clients speak the legacy wire (issue 14): one frame per pose, JSON payloads.
LEGACY_SWEEPS = frozenset({"legacy10"})
GOALS = (  # (key, comparison, target, text) -- issue 3, "Goals"
    ("rooms30_ratio", ">=", 1.0, "updates/s at saturation, rooms of 30, vs a"),
    ("rooms10_ratio", ">=", 0.75, "updates/s at saturation, rooms of 10, vs a"),
    ("largest_room", ">=", 150, "members in one room (>=99% delivered, p99 <= tick+10 ms)"),
    ("idle_kb", "<=", 24.0, "KB per idle connection"),
    ("connects_ratio", ">=", 0.5, "connects per second vs a"),
)


def scenario_label(result: dict[str, Any]) -> str:
    """``rooms x members @ Hz``."""
    return f"{result['rooms']}x{result['members']}@{result['hz']:g}Hz"


def summarize(target: dict[str, Any]) -> dict[str, Any]:
    """Best sustained updates/s per sweep and the largest sustained room of one target."""
    scenarios = target.get("scenarios", [])
    summary: dict[str, Any] = {}
    for sweep in ("rooms10", "rooms30", "quick", "legacy10"):
        ok = [s for s in scenarios if s["sweep"] == sweep and s["ok"]]
        best = max(ok, key=lambda s: s["updates_per_s"], default=None)
        summary[sweep] = {
            "best_updates_per_s": best["updates_per_s"] if best else None,
            "at_rooms": best["rooms"] if best else None,
            "tried": sum(1 for s in scenarios if s["sweep"] == sweep),
        }
    room_ok = [s["members"] for s in scenarios if s["sweep"] == "room" and s["ok"]]
    summary["largest_room"] = max(room_ok, default=None)
    summary["room_tried"] = sorted(s["members"] for s in scenarios if s["sweep"] == "room")
    return summary


def _ratio(value: float | None, base: float | None) -> float | None:
    if value is None or not base:
        return None
    return value / base


def add_ratios(targets: dict[str, dict[str, Any]]) -> None:
    """Give every result of every service target its ratio to baseline a (in place)."""
    base = targets.get(BASELINE)
    if base is None or "summary" not in base:
        return
    base_rows = {(s["sweep"], s["rooms"], s["members"]): s for s in base.get("scenarios", [])}
    for name, target in targets.items():
        for row in target.get("scenarios", []):
            same = base_rows.get((row["sweep"], row["rooms"], row["members"]))
            row["ratio_to_a"] = _ratio(row["updates_per_s"], same and same["updates_per_s"])
        if name == BASELINE or "summary" not in target:
            continue
        mine, theirs = target["summary"], base["summary"]
        target["ratios"] = {
            "rooms10_ratio": _ratio(
                mine["rooms10"]["best_updates_per_s"], theirs["rooms10"]["best_updates_per_s"]
            ),
            "rooms30_ratio": _ratio(
                mine["rooms30"]["best_updates_per_s"], theirs["rooms30"]["best_updates_per_s"]
            ),
            "quick_ratio": _ratio(
                mine["quick"]["best_updates_per_s"], theirs["quick"]["best_updates_per_s"]
            ),
            "legacy10_ratio": _ratio(
                mine["legacy10"]["best_updates_per_s"], theirs["legacy10"]["best_updates_per_s"]
            ),
            "largest_room": mine["largest_room"],
            "largest_room_a": theirs["largest_room"],
            "idle_kb": target.get("idle", {}).get("kb_per_connection"),
            "idle_kb_ratio": _ratio(
                target.get("idle", {}).get("kb_per_connection"),
                base.get("idle", {}).get("kb_per_connection"),
            ),
            "connects_ratio": _ratio(
                target.get("connects", {}).get("per_s"), base.get("connects", {}).get("per_s")
            ),
        }


def goals(targets: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Each service target against each goal of the issue."""
    out = []
    for name, target in targets.items():
        ratios = target.get("ratios")
        if name == BASELINE or ratios is None:
            continue
        for key, op, wanted, text in GOALS:
            value = ratios.get(key)
            met = None if value is None else (value >= wanted if op == ">=" else value <= wanted)
            out.append(
                {
                    "target": name,
                    "goal": text,
                    "key": key,
                    "want": f"{op} {wanted:g}",
                    "value": value,
                    "met": met,
                }
            )
    return out


# --- text -----------------------------------------------------------------------


def _num(value: float | None, fmt: str = ",.0f", none: str = "—") -> str:
    return none if value is None else format(value, fmt)


SCENARIO_COLUMNS = (
    ("target", "<", 16),  # room for an instance count (TIMES 2)
    ("sweep", "<", 8),
    ("rooms x members@Hz", "<", 16),
    ("upd/s", ">", 9),
    ("deliv", ">", 7),
    ("p50 ms", ">", 7),
    ("p99 ms", ">", 7),
    ("srv µs/upd", ">", 10),
    ("srv CPU", ">", 7),
    ("RSS MB", ">", 7),
    ("gen CPU", ">", 7),
    ("host", ">", 5),
    ("vs a", ">", 5),
    ("ok", "<", 3),
)
NOISY_OTHER_CPU_PCT = 30.0  # other processes used this much of the host during a window
GEN_BEHIND_PCT = 1.0  # the generator skipped this share of its sends (it was starved)


def _vs_a(name: str, value: float | None) -> str:
    return "1" if name == BASELINE else _num(value, ".2f")


def table_header() -> str:
    """The header line of the scenario table."""
    return "  ".join(f"{name:{align}{width}}" for name, align, width in SCENARIO_COLUMNS)


def scenario_row(target: str, s: dict[str, Any]) -> str:
    """One scenario as a table row (``*``: noisy host, ``!``: generator fell behind)."""
    ratio = s.get("ratio_to_a")
    noisy = (s.get("other_cpu_pct") or 0) > NOISY_OTHER_CPU_PCT
    behind = (s.get("gen_skipped_pct") or 0) > GEN_BEHIND_PCT
    delivered = s["delivered_ratio"] * 100 if s["delivered_ratio"] is not None else None
    values = (
        target,
        s["sweep"],
        scenario_label(s),
        _num(s["updates_per_s"]),
        _num(delivered, ".1f") + "%",
        _num(s["p50_ms"], ".1f"),
        _num(s["p99_ms"], ".1f"),
        _num(s["server_us_per_update"], ".1f"),
        _num(s["server_cpu_pct"], ".0f") + "%",
        _num(s["server_rss_mb"], ".0f"),
        _num(s["gen_cpu_pct"], ".0f") + ("%!" if behind else "%"),
        _num(s["host_cpu_pct"], ".0f") + ("%*" if noisy else "%"),
        _vs_a(target, ratio),
        "yes" if s["ok"] else "NO",
    )
    cells = zip(values, SCENARIO_COLUMNS, strict=True)
    line = "  ".join(f"{value:{align}{width}}" for value, (_, align, width) in cells)
    return line + (f"  {s['why_not']}" if s.get("why_not") else "")


def _legend(targets: dict[str, dict[str, Any]]) -> Iterable[str]:
    rows = [s for t in targets.values() for s in t.get("scenarios", [])]
    if any((s.get("other_cpu_pct") or 0) > NOISY_OTHER_CPU_PCT for s in rows):
        yield (
            f"  * other processes used over {NOISY_OTHER_CPU_PCT:.0f}% of a core during that "
            "window (host CPU minus server and generator): the row may be noisy"
        )
    if any((s.get("gen_skipped_pct") or 0) > GEN_BEHIND_PCT for s in rows):
        yield (
            f"  ! the generator skipped over {GEN_BEHIND_PCT:.0f}% of its sends (starved of CPU):"
            " the offered load was lower than rooms x members x Hz"
        )


CONNECTION_HEADER = (
    f"{'target':<16}  {'connects/s':>10}  {'vs a':>5}  "
    f"{'KB/idle conn':>12}  {'vs a':>5}  {'idle conns':>10}"
)


def _connection_lines(targets: dict[str, dict[str, Any]]) -> Iterable[str]:
    yield CONNECTION_HEADER
    for name, target in targets.items():
        connects, idle = target.get("connects", {}), target.get("idle", {})
        ratios = target.get("ratios", {})
        yield (
            f"{name:<16}  {_num(connects.get('per_s')):>10}  "
            f"{_vs_a(name, ratios.get('connects_ratio')):>5}  "
            f"{_num(idle.get('kb_per_connection'), '.1f'):>12}  "
            f"{_vs_a(name, ratios.get('idle_kb_ratio')):>5}  "
            f"{_num(idle.get('connections')):>10}"
        )


def _summary_line(name: str, target: dict[str, Any]) -> str:
    if "error" in target:
        return f"{name}: ERROR {target['error'].splitlines()[0]}"
    summary = target.get("summary", {})
    parts = []
    for sweep in ("rooms10", "rooms30", "quick", "legacy10"):
        best = summary.get(sweep, {})
        if best.get("tried"):
            where = f" at {best['at_rooms']} rooms" if best["at_rooms"] else " (none sustained)"
            parts.append(f"{SWEEPS[sweep][1]}: {_num(best['best_updates_per_s'])} upd/s{where}")
    if summary.get("room_tried"):
        largest = _num(summary["largest_room"], "d")
        parts.append(f"one room: {largest} members (tried {summary['room_tried']})")
    ratios = target.get("ratios", {})
    for sweep in ("rooms10", "rooms30", "quick", "legacy10"):
        if ratios.get(f"{sweep}_ratio") is not None:
            parts.append(f"{sweep} vs a {ratios[f'{sweep}_ratio']:.2f}")
    return f"{name}: " + "; ".join(parts)


def _goal_line(goal: dict[str, Any]) -> str:
    mark = {True: "met", False: "NOT met", None: "n/a"}[goal["met"]]
    value = goal["value"]
    shown = "—" if value is None else f"{value:.2f}" if isinstance(value, float) else str(value)
    return f"  {goal['target']:<16} {goal['goal']:<60} {goal['want']:>7}  got {shown:>7}  {mark}"


def render(results: dict[str, Any]) -> Iterable[str]:
    """The whole report as text lines."""
    targets = results["targets"]
    yield table_header()
    for name, target in targets.items():
        for s in target.get("scenarios", []):
            yield scenario_row(name, s)
    yield from _legend(targets)
    yield ""
    yield from _connection_lines(targets)
    yield ""
    for name, target in targets.items():
        yield _summary_line(name, target)
    if results.get("goals"):
        yield ""
        yield "goals (issue 3):"
        for goal in results["goals"]:
            yield _goal_line(goal)
