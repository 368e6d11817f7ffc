"""CPU time and memory of a process tree, and of the host, read from ``/proc``.

No psutil: ``/proc/<pid>/stat`` has utime and stime in clock ticks (10 ms on
most kernels, fine over windows of seconds), ``/proc/<pid>/status`` has VmRSS.
A server is measured with its descendants (uvicorn ``--workers`` forks).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PROC = Path("/proc")


def _stat_fields(pid: int) -> list[str] | None:
    try:
        raw = (PROC / str(pid) / "stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # The command name (field 2) may contain spaces; it ends at the last ')'.
    return raw[raw.rindex(")") + 2 :].split()


def descendants(pid: int) -> list[int]:
    """``pid`` and every process below it."""
    children: dict[int, list[int]] = {}
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        fields = _stat_fields(int(entry.name))
        if fields is not None:
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    found: list[int] = []
    todo = [pid]
    while todo and len(found) < 10_000:
        current = todo.pop()
        found.append(current)
        todo.extend(children.get(current, []))
    return found


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU seconds used so far by ``pids``."""
    total = 0
    for pid in pids:
        fields = _stat_fields(pid)
        if fields is not None:
            total += int(fields[11]) + int(fields[12])  # utime, stime (stat fields 14, 15)
    return total / CLOCK_TICKS


def rss_bytes(pids: list[int]) -> int:
    """Resident memory of ``pids`` now."""
    total = 0
    for pid in pids:
        try:
            status = (PROC / str(pid) / "status").read_text()
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1]) * 1024
                break
    return total


def host_jiffies() -> tuple[int, int]:
    """(busy, total) CPU ticks of the whole machine since boot."""
    first = (PROC / "stat").read_text().splitlines()[0].split()[1:]
    values = [int(v) for v in first]
    idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
    total = sum(values[:8])  # guest time is already inside user
    return total - idle, total


def host_busy_pct(seconds: float) -> float:
    """How busy the whole machine is over the next ``seconds`` (100% = one core)."""
    busy0, total0 = host_jiffies()
    time.sleep(seconds)
    busy1, total1 = host_jiffies()
    total = total1 - total0
    return (busy1 - busy0) / total * 100 * (os.cpu_count() or 1) if total else 0.0
