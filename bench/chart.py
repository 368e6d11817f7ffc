"""The sweep as a PNG: delivered updates/s and p99 latency per target and sweep.

matplotlib (Agg backend, no display) is imported only here and only when a
chart is written; without it the benchmark still runs and says so.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from bench.report import SWEEPS

COLORS = {"a": "#555555", "n": "#ff7f0e", "daphne": "#1f77b4", "uvicorn": "#2ca02c"}
CHARTED_SWEEPS = (
    "rooms10",
    "legacy10",
    "rooms30",
    "room",
    "quick",
)  # the sizes have their own chart


def _color(target: str) -> str:
    # the server's colour, whatever instance count or layer follows its name
    return COLORS.get(re.split(r"[^a-z]", target, maxsplit=1)[0], "#d62728")


def write_chart(results: dict[str, Any], path: Path) -> Path | None:
    """Draw every sweep of ``results`` into ``path``; ``None`` if matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.ticker import FuncFormatter
    except ImportError:
        return None
    targets = results["targets"]
    sweeps = [
        name
        for name in CHARTED_SWEEPS
        if any(s["sweep"] == name for t in targets.values() for s in t.get("scenarios", []))
    ]
    if not sweeps:
        return None
    fig, axes = plt.subplots(2, len(sweeps), figsize=(5 * len(sweeps), 7), squeeze=False)
    for column, sweep in enumerate(sweeps):
        top, bottom = axes[0][column], axes[1][column]
        members, title = SWEEPS[sweep]
        x_key = "members" if members is None else "rooms"
        for name, target in targets.items():
            rows = sorted(
                (s for s in target.get("scenarios", []) if s["sweep"] == sweep),
                key=lambda s: s[x_key],
            )
            if not rows:
                continue
            xs = [s[x_key] for s in rows]
            color = _color(name)
            top.plot(xs, [s["updates_per_s"] for s in rows], "-", color=color, label=name)
            bottom.plot(
                xs, [s["p99_ms"] or float("nan") for s in rows], "-", color=color, label=name
            )
            for s, x in zip(rows, xs, strict=True):
                face = color if s["ok"] else "white"
                top.plot([x], [s["updates_per_s"]], "o", color=color, markerfacecolor=face)
                if s["p99_ms"]:
                    bottom.plot([x], [s["p99_ms"]], "o", color=color, markerfacecolor=face)
        top.set_title(f"{title} @ {results['meta']['plan']['hz']:g} Hz")
        top.set_ylabel("updates delivered / s")
        top.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v / 1000:g}k"))
        top.grid(alpha=0.3)
        top.legend(fontsize="small")
        limits = {
            s["p99_limit_ms"]
            for t in targets.values()
            for s in t.get("scenarios", [])
            if s["sweep"] == sweep and s.get("p99_limit_ms")
        }
        for limit in sorted(limits):
            bottom.axhline(
                limit, color="#d62728", linestyle="--", linewidth=1, label=f"{limit:g} ms"
            )
        bottom.set_yscale("log")
        bottom.set_xlabel("members in the room" if members is None else f"rooms of {members}")
        bottom.set_ylabel("p99 latency (ms)")
        bottom.grid(alpha=0.3)
        bottom.legend(fontsize="small")
    meta = results["meta"]
    fig.suptitle(
        f"GraphWiz presence fan-out vs baselines a and n — {meta['machine']}; "
        "hollow = not sustained",
        fontsize="medium",
    )
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def write_size_chart(results: dict[str, Any], path: Path) -> Path | None:
    """The room-size sweep: CPU per delivered update and p50/p99 by room size, per target.

    ``None`` if matplotlib is missing or no target ran the sweep.
    """
    targets = {
        name: sorted(
            (s for s in target.get("scenarios", []) if s["sweep"] == "size"),
            key=lambda s: s["members"],
        )
        for name, target in results["targets"].items()
    }
    targets = {name: rows for name, rows in targets.items() if rows}
    if not targets:
        return None
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.ticker import ScalarFormatter
    except ImportError:
        return None
    fig, (cost, latency) = plt.subplots(1, 2, figsize=(12, 4.8))
    for name, rows in targets.items():
        color = _color(name)
        sizes = [s["members"] for s in rows]
        us = [s["server_us_per_update"] or float("nan") for s in rows]
        cost.plot(sizes, us, "-", color=color, label=name)
        for s, x, y in zip(rows, sizes, us, strict=True):
            cost.plot([x], [y], "o", color=color, markerfacecolor=color if s["ok"] else "white")
        latency.plot(
            sizes,
            [s["p99_ms"] or float("nan") for s in rows],
            "o-",
            color=color,
            label=f"{name} p99",
        )
        latency.plot(
            sizes,
            [s["p50_ms"] or float("nan") for s in rows],
            "o:",
            color=color,
            label=f"{name} p50",
            markerfacecolor="white",
        )
    hz = results["meta"]["plan"]["hz"]
    clients = results["meta"]["plan"].get("size_clients")
    for axis in (cost, latency):
        axis.set_xscale("log")
        axis.set_xticks(
            sorted({m for rows in targets.values() for m in (s["members"] for s in rows)})
        )
        axis.xaxis.set_major_formatter(ScalarFormatter())
        axis.set_xlabel(f"members per room (about {clients} clients in all, {hz:g} Hz each)")
        axis.grid(alpha=0.3)
        axis.legend(fontsize="small")
    cost.set_ylabel("server CPU µs per delivered update")
    cost.set_title("cost per delivered pose update (lower is better)")
    cost.set_ylim(bottom=0)
    latency.set_yscale("log")
    latency.set_ylabel("latency (ms)")
    latency.set_title("p50 (dotted) and p99 (solid) latency")
    fig.suptitle(
        f"GraphWiz presence by room size vs baselines a and n — {results['meta']['machine']}; "
        "hollow = not sustained",
        fontsize="medium",
    )
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
