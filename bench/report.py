"""Results -> summaries, ratios to baselines a and n, printed tables.

Pure functions over the result dicts the runner collects; nothing here
measures or starts anything. The goals of the issue are judged in
:mod:`bench.goals`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

BASELINE = "a"  # the bare python `websockets` relay (bench/baseline_relay.py)
NODE_BASELINE = "n"  # the bare Node.js `ws` relay (bench/node/relay.mjs)
BASELINES = (BASELINE, NODE_BASELINE)
TIMES = "\N{MULTIPLICATION SIGN}"  # uvicorn TIMES 2: two instances of the service
SWEEPS = {  # name -> (members per room, or None when the room size varies), title
    "size": (None, "room sizes"),
    "rooms10": (10, "rooms of 10"),
    "rooms30": (30, "rooms of 30"),
    "room": (None, "one room"),
    "quick": (None, "quick"),
    "legacy10": (10, "rooms of 10 legacy (GraphWiz-XR) members"),
}
# Sweeps whose clients speak the legacy wire: one frame per pose, JSON payloads.
LEGACY_SWEEPS = frozenset({"legacy10"})
SATURATION_SWEEPS = ("rooms10", "rooms30", "quick", "legacy10")

Row = dict[str, Any]
Key = tuple[str, int, int]


def scenario_label(result: Row) -> str:
    """``rooms x members @ Hz``."""
    return f"{result['rooms']}x{result['members']}@{result['hz']:g}Hz"


def row_key(row: Row) -> Key:
    """What makes two targets' rows the same workload: sweep, rooms, members."""
    return (row["sweep"], row["rooms"], row["members"])


def summarize(target: dict[str, Any]) -> dict[str, Any]:
    """Best sustained updates/s per sweep and the largest sustained room of one target."""
    scenarios = target.get("scenarios", [])
    summary: dict[str, Any] = {}
    for sweep in SATURATION_SWEEPS:
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


def _best(target: dict[str, Any] | None, sweep: str) -> float | None:
    if target is None:
        return None
    best: float | None = target.get("summary", {}).get(sweep, {}).get("best_updates_per_s")
    return best


def add_ratios(targets: dict[str, dict[str, Any]]) -> None:
    """Every row and target against each baseline of the run (in place).

    Rows get ``ratio_to_a``/``ratio_to_n`` (updates/s), ``cpu_ratio_to_a``/
    ``cpu_ratio_to_n`` (server CPU per delivered update) and the baselines'
    ``a_p50_ms``, ``a_p99_ms``, ``n_p50_ms``, ``n_p99_ms`` of the same
    workload; ``None`` where a baseline did not run that workload. Every
    target but a gets ``ratios``: saturation, idle memory and connects/s
    against a (``*_ratio``) and n (``*_ratio_n``).
    """
    rows: dict[str, dict[Key, Row]] = {
        b: {row_key(s): s for s in targets[b].get("scenarios", [])}
        for b in BASELINES
        if b in targets
    }
    for name, target in targets.items():
        for row in target.get("scenarios", []):
            for base in BASELINES:
                same = rows.get(base, {}).get(row_key(row))
                row[f"ratio_to_{base}"] = _ratio(
                    row["updates_per_s"], same["updates_per_s"] if same else None
                )
                row[f"cpu_ratio_to_{base}"] = _ratio(
                    row.get("server_us_per_update"),
                    same.get("server_us_per_update") if same else None,
                )
                row[f"{base}_p50_ms"] = same.get("p50_ms") if same else None
                row[f"{base}_p99_ms"] = same.get("p99_ms") if same else None
        if name == BASELINE or "summary" not in target:
            continue
        ratios: dict[str, Any] = {
            "largest_room": target["summary"]["largest_room"],
            "idle_kb": target.get("idle", {}).get("kb_per_connection"),
        }
        for base, suffix in ((BASELINE, ""), (NODE_BASELINE, "_n")):
            other = targets.get(base)
            if other is not None and "summary" not in other:
                other = None
            for sweep in SATURATION_SWEEPS:
                ratios[f"{sweep}_ratio{suffix}"] = _ratio(_best(target, sweep), _best(other, sweep))
            ratios[f"largest_room_{base}"] = other and other["summary"]["largest_room"]
            ratios[f"idle_kb_ratio{suffix}"] = _ratio(
                target.get("idle", {}).get("kb_per_connection"),
                other.get("idle", {}).get("kb_per_connection") if other else None,
            )
            ratios[f"connects_ratio{suffix}"] = _ratio(
                target.get("connects", {}).get("per_s"),
                other.get("connects", {}).get("per_s") if other else None,
            )
        target["ratios"] = ratios


# --- text -----------------------------------------------------------------------


def _num(value: float | None, fmt: str = ",.0f", none: str = "—") -> str:
    return none if value is None else format(value, fmt)


def _pair(p50: float | None, p99: float | None) -> str:
    return "—" if p50 is None and p99 is None else f"{_num(p50, '.1f')}/{_num(p99, '.1f')}"


SCENARIO_COLUMNS = (
    ("target", "<", 16),  # room for an instance count (TIMES 2)
    ("sweep", "<", 7),
    ("rooms x members@Hz", "<", 16),
    ("upd/s", ">", 9),
    ("deliv", ">", 7),
    ("p50 ms", ">", 6),
    ("p99 ms", ">", 6),
    ("a p50/p99", ">", 11),
    ("n p50/p99", ">", 11),
    ("srv µs/upd", ">", 10),
    ("µs vs a", ">", 7),
    ("µs vs n", ">", 7),
    ("srv CPU", ">", 7),
    ("RSS MB", ">", 6),
    ("gen CPU", ">", 7),
    ("host", ">", 5),
    ("vs a", ">", 5),
    ("vs n", ">", 5),
    ("ok", "<", 3),
)
NOISY_OTHER_CPU_PCT = 30.0  # other processes used this much of the host during a window
GEN_BEHIND_PCT = 1.0  # the generator skipped this share of its sends (it was starved)


def table_header() -> str:
    """The header line of the scenario table."""
    return "  ".join(f"{name:{align}{width}}" for name, align, width in SCENARIO_COLUMNS)


def scenario_row(target: str, s: Row) -> str:
    """One scenario as a table row (``*``: noisy host, ``!``: generator fell behind).

    ``vs a``/``vs n``: updates/s against the same workload on a and n;
    ``µs vs a``/``µs vs n``: server CPU per delivered update against theirs.
    """
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
        _pair(s.get("a_p50_ms"), s.get("a_p99_ms")),
        _pair(s.get("n_p50_ms"), s.get("n_p99_ms")),
        _num(s["server_us_per_update"], ".1f"),
        _num(s.get("cpu_ratio_to_a"), ".2f"),
        _num(s.get("cpu_ratio_to_n"), ".2f"),
        _num(s["server_cpu_pct"], ".0f") + "%",
        _num(s["server_rss_mb"], ".0f"),
        _num(s["gen_cpu_pct"], ".0f") + ("%!" if behind else "%"),
        _num(s["host_cpu_pct"], ".0f") + ("%*" if noisy else "%"),
        _num(s.get("ratio_to_a"), ".2f"),
        _num(s.get("ratio_to_n"), ".2f"),
        "yes" if s["ok"] else "NO",
    )
    cells = zip(values, SCENARIO_COLUMNS, strict=True)
    line = "  ".join(f"{value:{align}{width}}" for value, (_, align, width) in cells)
    return line + (f"  {s['why_not']}" if s.get("why_not") else "")


def size_lines(targets: dict[str, dict[str, Any]]) -> Iterable[str]:
    """The room-size sweep side by side: per target µs per update, p50/p99, delivered."""
    names = [
        n for n, t in targets.items() if any(s["sweep"] == "size" for s in t.get("scenarios", []))
    ]
    if not names:
        return
    by_target = {
        n: {s["members"]: s for s in targets[n]["scenarios"] if s["sweep"] == "size"} for n in names
    }
    sizes = sorted({m for rows in by_target.values() for m in rows})
    yield "room sizes @ 20 Hz, ~same clients per row: CPU µs per delivered update, p50/p99 ms"
    head = f"{'size':>4}  {'rooms x members':<15}"
    for name in names:
        head += f"  | {name + ' µs/upd':>14}  {'p50/p99':>11}  {'deliv':>6}"
        if name not in BASELINES:
            head += f"  {'µs vs a':>7}  {'µs vs n':>7}"
    yield head
    for size in sizes:
        any_row = next(rows[size] for rows in by_target.values() if size in rows)
        line = f"{size:>4}  {str(any_row['rooms']) + ' x ' + str(size):<15}"
        for name in names:
            s = by_target[name].get(size)
            if s is None:
                line += f"  | {'—':>14}  {'—':>11}  {'—':>6}"
                line += "" if name in BASELINES else f"  {'—':>7}  {'—':>7}"
                continue
            delivered = s["delivered_ratio"] * 100 if s["delivered_ratio"] is not None else None
            line += (
                f"  | {_num(s['server_us_per_update'], '.1f'):>14}  "
                f"{_pair(s['p50_ms'], s['p99_ms']):>11}  {_num(delivered, '.1f') + '%':>6}"
            )
            if name not in BASELINES:
                line += (
                    f"  {_num(s.get('cpu_ratio_to_a'), '.2f'):>7}"
                    f"  {_num(s.get('cpu_ratio_to_n'), '.2f'):>7}"
                )
        yield line


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
    f"{'target':<16}  {'connects/s':>10}  {'vs a':>5}  {'vs n':>5}  "
    f"{'KB/idle conn':>12}  {'vs a':>5}  {'vs n':>5}  {'idle conns':>10}"
)


def _connection_lines(targets: dict[str, dict[str, Any]]) -> Iterable[str]:
    yield CONNECTION_HEADER
    for name, target in targets.items():
        connects, idle = target.get("connects", {}), target.get("idle", {})
        ratios = target.get("ratios", {})
        self_a = "1" if name == BASELINE else None
        yield (
            f"{name:<16}  {_num(connects.get('per_s')):>10}  "
            f"{self_a or _num(ratios.get('connects_ratio'), '.2f'):>5}  "
            f"{_num(ratios.get('connects_ratio_n'), '.2f'):>5}  "
            f"{_num(idle.get('kb_per_connection'), '.1f'):>12}  "
            f"{self_a or _num(ratios.get('idle_kb_ratio'), '.2f'):>5}  "
            f"{_num(ratios.get('idle_kb_ratio_n'), '.2f'):>5}  "
            f"{_num(idle.get('connections')):>10}"
        )
    # The reconnect-storm row (1,000 clients resuming at once against a's
    # 1,000 fresh connects) belongs here: a target's result gets a "storm"
    # dict from TargetRun.storm() (not built yet) and this prints it.
    storms = {n: t["storm"] for n, t in targets.items() if t.get("storm")}
    if storms:
        for name, storm in storms.items():
            yield f"{name:<16}  reconnect storm: {_num(storm.get('seconds'), '.2f')} s"
    else:
        yield "reconnect storm (1,000 clients resuming at once): not measured by this version"


def _summary_line(name: str, target: dict[str, Any]) -> str:
    if "error" in target:
        return f"{name}: ERROR {target['error'].splitlines()[0]}"
    summary = target.get("summary", {})
    parts = []
    for sweep in SATURATION_SWEEPS:
        best = summary.get(sweep, {})
        if best.get("tried"):
            where = f" at {best['at_rooms']} rooms" if best["at_rooms"] else " (none sustained)"
            parts.append(f"{SWEEPS[sweep][1]}: {_num(best['best_updates_per_s'])} upd/s{where}")
    if summary.get("room_tried"):
        largest = _num(summary["largest_room"], "d")
        parts.append(f"one room: {largest} members (tried {summary['room_tried']})")
    ratios = target.get("ratios", {})
    for sweep in SATURATION_SWEEPS:
        for suffix, base in (("", BASELINE), ("_n", NODE_BASELINE)):
            value = ratios.get(f"{sweep}_ratio{suffix}")
            if value is not None:
                parts.append(f"{sweep} vs {base} {value:.2f}")
    return f"{name}: " + "; ".join(parts)


def _goal_line(goal: dict[str, Any]) -> str:
    mark = {True: "PASS", False: "FAIL", None: "n/a"}[goal["met"]]
    value = goal["value"]
    shown = "—" if value is None else f"{value:,.2f}" if isinstance(value, float) else str(value)
    note = f"  ({goal['note']})" if goal.get("note") else ""
    return (
        f"  {goal['target']:<16} {goal['goal']:<66} {goal['want']:>7}  got {shown:>7}  {mark}{note}"
    )


def render(results: dict[str, Any]) -> Iterable[str]:
    """The whole report as text lines, the goals block last."""
    targets = results["targets"]
    sizes = list(size_lines(targets))
    if sizes:
        yield from sizes
        yield ""
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
    if "worse_than_reference" in results:
        worse = results["worse_than_reference"]
        yield ""
        source = results["meta"].get("reference")
        yield f"compared with {source}: {len(worse)} values worse by more than 5 %"
        for w in worse:
            yield (
                f"  {w['target']:<16} {w['row']:<28} {w['key']:<22} "
                f"{w['was']:>10,.1f} -> {w['now']:>10,.1f}  ({w['change_pct']:+.0f} %)"
            )
    if results.get("goals"):
        yield ""
        quick = results.get("meta", {}).get("plan", {}).get("quick")
        yield "goals" + (" (--quick: tiny samples, indicative only):" if quick else ":")
        for goal in results["goals"]:
            yield _goal_line(goal)
