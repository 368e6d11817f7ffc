"""One target's measurements: idle memory, connects/s, fan-out scenarios, sweeps.

A :class:`TargetRun` drives the generator workers against one running target
(one server, or N service instances whose readings are summed) and turns their
reports and the ``/proc`` readings into result rows (plain dicts, written to
``results.json`` as they are).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from bench import report
from bench.loadgen import REPLY_SLACK, ClientSpec, GeneratorPool
from bench.pose import merge_hists, percentile_ms
from bench.procstat import cpu_seconds, host_busy_pct, host_jiffies, rss_bytes
from bench.profile import Profiler
from bench.servers import HOST, ServerGroup

DELIVERY_OK = 0.99  # a scenario is sustained at >= 99% delivered ...
# ... and, in the room sweeps, p99 at most this. A 50 ms tick alone puts p99
# near 50 ms by design; a p99 of four ticks means queues are growing (the
# relay's p99 jumps from ~10 ms to ~500 ms at its knee). The one-room sweep
# uses the goal instead: tick + 10 ms.
SAT_P99_MS = 200.0
MAX_SWEEP_STEPS = 12  # no sweep runs more scenarios than this
ROOMS_PER_IDLE_ROOM = 10  # idle and connect tests put clients in rooms of 10
LEAD_SECONDS = 0.3  # between telling the workers and the first send
WARM_CONNECTIONS = 10
NOISY_RETRIES = 1  # a failed scenario on a host busy with other work is measured again
QUIET_WAIT_SECONDS = 5.0  # before a scenario, wait at most this for other work to calm down


@dataclass
class Plan:
    """What one run measures, from the command line."""

    quick: bool
    hz: float
    tick_ms: float
    p99_ms: float  # the one-room goal: tick + 10 ms
    sat_p99_ms: float  # the room sweeps: beyond this the server is not keeping up
    warmup: float
    duration: float
    drain: float
    members: list[int]
    rooms10_start: int
    rooms30_start: int
    refine: int
    max_clients: int
    idle: int
    connects: int
    connect_concurrency: int
    batch: bool
    budget_s: float
    sizes: list[int] = field(default_factory=lambda: [2, 4, 10, 30, 100])
    size_clients: int = 100  # clients per room-size row: rooms = size_clients / size
    only: frozenset[str] = frozenset()  # workloads to run (empty: all of them)
    profile: bool = False  # py-spy the service during each workload
    quiet_wait_s: float = QUIET_WAIT_SECONDS  # before a scenario, for other work to calm down
    tags: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def wants(self, workload: str) -> bool:
        """Whether ``workload`` (``idle``, ``connects``, ``sizes``, a sweep) runs."""
        return not self.only or workload in self.only

    def tag(self) -> str:
        """A short id unique in this run (room and user names)."""
        return f"b{uuid.uuid4().hex[:4]}{next(self.tags)}"


def log_line(begin: float, text: str) -> None:
    """A progress line, stamped with the seconds since ``begin``, flushed at once."""
    print(f"[{time.monotonic() - begin:6.1f}s] {text}", flush=True)


def _sleep_until_ns(deadline_ns: int) -> None:
    time.sleep(max(0.0, (deadline_ns - time.monotonic_ns()) / 1e9))


class TargetRun:
    """Everything measured on one running server."""

    def __init__(
        self, name: str, server: ServerGroup, pool: GeneratorPool, plan: Plan, begin: float
    ) -> None:
        self.name = name
        self.server = server
        self.pool = pool
        self.plan = plan
        self.begin = begin
        self.service = name not in report.BASELINES
        self.profiler: Profiler | None = None  # set by the runner with --profile
        self.capabilities = (["batch"] if plan.batch else []) if self.service else None
        self.scenarios: list[dict[str, Any]] = []
        self.started = time.monotonic()

    def log(self, text: str) -> None:
        log_line(self.begin, f"{self.name:<16} {text}")

    def over_budget(self) -> bool:
        return time.monotonic() - self.started > self.plan.budget_s

    def clients(self, tag: str, rooms: int, members: int) -> list[ClientSpec]:
        """``rooms x members`` clients spread over the instances (see :func:`room_clients`)."""
        return room_clients(tag, rooms, members, self.server.ports)

    def connect(
        self, clients: list[ClientSpec], timeout: float = 60.0, *, legacy: bool = False
    ) -> dict[str, Any]:
        return self.pool.connect(
            HOST,
            clients,
            capabilities=self.capabilities,
            wait_hello=self.service,
            concurrency=self.plan.connect_concurrency,
            timeout=timeout,
            legacy=legacy,
        )

    def close(self) -> None:
        self.pool.close_clients()
        self.server.wait_quiet()
        self.server.check_alive()

    # --- idle memory and connects/s -------------------------------------------------

    def warm(self) -> None:
        """A few connections first, so lazy imports are not counted as per-connection memory."""
        self.connect(self.clients(self.plan.tag(), 1, WARM_CONNECTIONS))
        self.close()

    def idle(self) -> dict[str, Any]:
        n = self.plan.idle
        self.server.wait_quiet()
        self.snapshot_memory("idle-before")
        before = self.server.rss_bytes()
        result = self.connect(self.clients(self.plan.tag(), -(-n // ROOMS_PER_IDLE_ROOM), 10)[:n])
        self.server.wait_quiet()
        after = self.server.rss_bytes()
        self.snapshot_memory("idle-after")
        self.close()
        connected = result["connected"]
        kb = (after - before) / 1024 / connected if connected else None
        self.log(f"idle: {connected} connections, {kb and round(kb, 1)} KB each")
        return {
            "connections": connected,
            "failed": result["failed"],
            "errors": result["errors"],
            "rss_before_mb": before / 2**20,
            "rss_after_mb": after / 2**20,
            "kb_per_connection": kb,
        }

    def connects(self) -> dict[str, Any]:
        n = self.plan.connects
        with self.profiling("connects"):
            clients = self.clients(self.plan.tag(), -(-n // ROOMS_PER_IDLE_ROOM), 10)[:n]
            result = self.connect(clients)
        self.close()
        rate = result["connected"] / result["seconds"] if result["seconds"] > 0 else None
        shown = f"{rate:,.0f}/s" if rate else "n/a"
        instances = len(self.server.servers)
        spread = f" over {instances} instances" if instances > 1 else ""
        self.log(f"connects: {result['connected']} in {result['seconds']:.2f} s = {shown}{spread}")
        return {
            # With N instances: the rate of all of them together, clients dealt round-robin.
            "instances": instances,
            "connections": result["connected"],
            "failed": result["failed"],
            "errors": result["errors"],
            "seconds": result["seconds"],
            "per_s": rate if not result["failed"] else None,
            "concurrency": self.plan.connect_concurrency,
            "gen_cpu_s": result["gen_cpu_s"],
        }

    # --- fan-out scenarios ----------------------------------------------------------------

    def scenario(self, sweep: str, rooms: int, members: int) -> dict[str, Any]:
        """Measure ``rooms x members`` at ``hz``; again once if it failed on a noisy host.

        The clients of a :data:`report.LEGACY_SWEEPS` sweep speak the legacy wire.
        """
        discarded: list[dict[str, Any]] = []
        for attempt in range(1 + NOISY_RETRIES):
            row = self._scenario_once(sweep, rooms, members)
            noisy = (row["other_cpu_pct"] or 0) > report.NOISY_OTHER_CPU_PCT
            if row["ok"] or not noisy or attempt == NOISY_RETRIES or self.over_budget():
                break
            self.log(f"{sweep:<8} other work used {row['other_cpu_pct']:.0f}% CPU: measuring again")
            discarded.append({k: row[k] for k in ("updates_per_s", "why_not", "other_cpu_pct")})
        row["noisy_attempts"] = discarded
        self.scenarios.append(row)
        return row

    def _wait_host_quiet(self) -> float:
        """Our processes are idle now: wait (bounded) until other work leaves the host."""
        deadline = time.monotonic() + self.plan.quiet_wait_s
        while True:
            busy = host_busy_pct(0.25)
            if busy < report.NOISY_OTHER_CPU_PCT or time.monotonic() > deadline:
                return busy

    def _scenario_once(self, sweep: str, rooms: int, members: int) -> dict[str, Any]:
        plan = self.plan
        row: dict[str, Any] = {"sweep": sweep, "rooms": rooms, "members": members, "hz": plan.hz}
        row["clients"] = rooms * members
        label = report.scenario_label(row)
        row["host_busy_before_pct"] = self._wait_host_quiet()
        self.log(f"{sweep:<8} {label:<16} connecting {rooms * members} clients …")
        legacy = sweep in report.LEGACY_SWEEPS
        clients = self.clients(plan.tag(), rooms, members)
        if legacy:  # connect as the hub-client does: the room in the query too
            clients = [hub_client_shaped(spec) for spec in clients]
        connected = self.connect(clients, legacy=legacy)
        row["connect_s"] = connected["seconds"]
        # No try/finally: after an error or Ctrl-C the runner renews or stops the
        # workers and stops the server, which ends these connections anyway.
        if connected["failed"]:
            row.update(_empty_measurement())
            row["error"] = f"{connected['failed']} connections failed: {connected['errors']}"
        else:
            self.server.wait_quiet(timeout=3.0)  # JOIN and hello traffic done
            with self.profiling(f"{sweep}-{rooms}x{members}"):
                row.update(self.measure(rooms * members, members))
        self.close()
        row["p99_limit_ms"] = plan.p99_ms if sweep == "room" else plan.sat_p99_ms
        row["why_not"] = shortfall(row, row["p99_limit_ms"])
        row["ok"] = row["why_not"] is None
        row["other_cpu_pct"] = _other_cpu(row)
        ratio = row["delivered_ratio"]
        self.log(
            f"{sweep:<8} {label:<16} {row['updates_per_s']:>9,.0f} upd/s "
            f"{(ratio or 0) * 100:6.1f}%  "
            f"p50 {row['p50_ms'] or 0:.1f}  p99 {row['p99_ms'] or 0:.1f} ms  "
            f"srv {row['server_cpu_pct'] or 0:.0f}%  gen {row['gen_cpu_pct'] or 0:.0f}%  "
            + ("ok" if row["ok"] else f"NOT SUSTAINED: {row['why_not']}")
        )
        return row

    def measure(self, total_clients: int, members: int) -> dict[str, Any]:
        plan = self.plan
        pids = self.server.pids()
        start_ns = time.monotonic_ns() + int(LEAD_SECONDS * 1e9)
        window_start_ns = start_ns + int(plan.warmup * 1e9)
        window_end_ns = window_start_ns + int(plan.duration * 1e9)
        self.pool.start_run(
            {
                "hz": plan.hz,
                "start_ns": start_ns,
                "window_start_ns": window_start_ns,
                "window_end_ns": window_end_ns,
                "drain": plan.drain,
                "total_clients": total_clients,
            }
        )
        _sleep_until_ns(window_start_ns)
        cpu0, host0 = cpu_seconds(pids), host_jiffies()
        _sleep_until_ns(window_end_ns)
        cpu1, host1 = cpu_seconds(pids), host_jiffies()
        rss = rss_bytes(pids)
        runs = self.pool.gather(
            LEAD_SECONDS + plan.warmup + plan.duration + plan.drain + REPLY_SLACK
        )
        return _combine(runs, plan, members, cpu1 - cpu0, host0, host1, rss)

    # --- profiles (--profile) -----------------------------------------------------------

    def profiling(self, label: str) -> contextlib.AbstractContextManager[None]:
        """py-spy over the service while the block runs (a no-op without ``--profile``)."""
        if self.profiler is None or not self.service:
            return contextlib.nullcontext()
        return self.profiler.record(self.server.servers[0].pid, f"{self.name}-{label}")

    def snapshot_memory(self, label: str) -> None:
        """Ask a service started by ``bench.traced`` for a tracemalloc snapshot."""
        if self.profiler is not None and self.service:
            self.profiler.snapshot(self.server.servers[0].pid, f"{self.name}-{label}")

    # --- sweeps -------------------------------------------------------------------------

    def sweep_sizes(self) -> None:
        """Fixed load: each room size with about ``size_clients`` clients in rooms of it.

        The same clients send the same poses in every row, so the rows show
        how the cost per delivered update changes with the room alone.
        """
        for size in self.plan.sizes:
            if self.over_budget():
                break
            rooms = max(1, round(self.plan.size_clients / size))
            self.scenario("size", rooms, size)

    def sweep_rooms(self, sweep: str, members: int, start: int) -> None:
        """Double the number of rooms until saturation, then bisect ``refine`` times."""
        good, bad, steps = 0, 0, 0
        rooms = start
        while rooms >= 1 and steps < MAX_SWEEP_STEPS and not self.over_budget():
            if (bad and rooms >= bad) or rooms * members > self.plan.max_clients:
                break
            steps += 1
            if self.scenario(sweep, rooms, members)["ok"]:
                good, rooms = rooms, rooms * 2
            elif good:
                bad = rooms
                break
            else:
                bad, rooms = rooms, rooms // 2  # even the start saturates: step down
        for _ in range(self.plan.refine):
            if not good or not bad or bad - good <= 1 or self.over_budget():
                break
            middle = (good + bad) // 2
            if self.scenario(sweep, middle, members)["ok"]:
                good = middle
            else:
                bad = middle

    def sweep_members(self) -> None:
        """One room: the listed sizes until one fails, then bisect (or halve if the first fails)."""
        good, bad = 0, 0
        for members in self.plan.members:
            if members > self.plan.max_clients or self.over_budget():
                break
            if self.scenario("room", 1, members)["ok"]:
                good = members
            else:
                bad = members
                break
        for _ in range(self.plan.refine + (2 if not good else 0)):
            if not bad or self.over_budget():
                break
            middle = (good + bad) // 2 if good else bad // 2
            middle -= middle % 5  # round sizes keep the table readable
            if middle <= good or middle < 5:
                break
            if self.scenario("room", 1, middle)["ok"]:
                good = middle
            else:
                bad = middle


def room_clients(tag: str, rooms: int, members: int, ports: Sequence[int]) -> list[ClientSpec]:
    """``rooms x members`` clients with unique users, in rooms named by ``tag``.

    Member ``i`` of every room connects to ``ports[i % len(ports)]``, so with
    several instances each room's fan-out crosses processes.
    """
    return [
        (
            n,
            ports[n % members % len(ports)],
            f"/ws/{tag}-{n // members}?user_id={tag}-{n}",
            f"{tag}-{n}",
        )
        for n in range(rooms * members)
    ]


def hub_client_shaped(spec: ClientSpec) -> ClientSpec:
    """``spec`` with the GraphWiz-XR hub-client's ``room_id`` query parameter added."""
    number, port, path, user = spec
    room = path.split("?", 1)[0].rsplit("/", 1)[-1]
    return (number, port, f"{path}&room_id={room}", user)


def shortfall(row: dict[str, Any], p99_limit_ms: float) -> str | None:
    """Why a scenario is not sustained (``None`` when it is)."""
    if "error" in row:
        return str(row["error"])
    if row["lost_connections"]:
        return f"{row['lost_connections']} connections closed by the server {row['close_codes']}"
    ratio = row["delivered_ratio"]
    if ratio is None or ratio < DELIVERY_OK:
        return f"{(ratio or 0) * 100:.1f}% delivered < {DELIVERY_OK * 100:.0f}%"
    if row["p99_ms"] is None or row["p99_ms"] > p99_limit_ms:
        return f"p99 {row['p99_ms']} ms > {p99_limit_ms:g} ms"
    return None


def _other_cpu(row: dict[str, Any]) -> float | None:
    """Host CPU used by neither the server nor the generator (noise from other work)."""
    host, server, gen = row.get("host_cpu_pct"), row.get("server_cpu_pct"), row.get("gen_cpu_pct")
    if host is None or server is None or gen is None:
        return None
    return max(0.0, float(host) - float(server) - float(gen))


def _empty_measurement() -> dict[str, Any]:
    """The measurement of a scenario that never ran (its clients did not connect)."""
    keys: tuple[str, ...] = ("sent_window", "expected", "delivered", "delivered_ratio")
    keys += ("p50_ms", "p99_ms", "max_ms", "server_cpu_s", "server_cpu_pct")
    keys += ("server_us_per_update", "server_rss_mb", "gen_cpu_s", "gen_cpu_pct")
    keys += ("host_cpu_pct", "gen_skipped_pct", "reads", "updates_per_read", "batches", "errors")
    return {k: None for k in keys} | {
        "updates_per_s": 0.0,
        "lost_connections": 0,
        "close_codes": {},
    }


def _combine(
    runs: list[dict[str, Any]],
    plan: Plan,
    members: int,
    server_cpu: float,
    host0: tuple[int, int],
    host1: tuple[int, int],
    rss: int,
) -> dict[str, Any]:
    """One scenario's numbers from every worker's report and the server readings."""
    delivered = sum(r["delivered"] for r in runs)
    sent = sum(r["sent_window"] for r in runs)
    expected = sent * (members - 1)
    hist = merge_hists(r["hist"] for r in runs)
    gen_cpu = sum(r["cpu_window_s"] for r in runs)
    skipped = sum(r["skipped"] for r in runs)
    reads = sum(r["reads"] for r in runs)
    messages = delivered + sum(r["outside"] + r["other"] + r["errors"] for r in runs)
    busy, total = host1[0] - host0[0], host1[1] - host0[1]
    close_codes: dict[str, int] = {}
    for r in runs:
        for code, count in r["close_codes"].items():
            close_codes[str(code)] = close_codes.get(str(code), 0) + count
    return {
        "sent_window": sent,
        "expected": expected,
        "delivered": delivered,
        "delivered_ratio": delivered / expected if expected else None,
        "updates_per_s": delivered / plan.duration,
        "p50_ms": percentile_ms(hist, 0.50),
        "p99_ms": percentile_ms(hist, 0.99),
        "max_ms": percentile_ms(hist, 1.0),
        "server_cpu_s": server_cpu,
        "server_cpu_pct": server_cpu / plan.duration * 100,
        "server_us_per_update": server_cpu * 1e6 / delivered if delivered else None,
        "server_rss_mb": rss / 2**20,
        "gen_cpu_s": gen_cpu,
        "gen_cpu_pct": gen_cpu / plan.duration * 100,
        "host_cpu_pct": busy / total * 100 * (os.cpu_count() or 1) if total else None,
        "gen_skipped_pct": skipped / (sent + skipped) * 100 if sent + skipped else 0.0,
        "reads": reads,
        # messages (poses, inside or outside the window, and others) per socket read:
        # ~1 when the server writes one frame per pose, more with Batch frames or backlog
        "updates_per_read": messages / reads if reads else None,
        "batches": sum(r["batches"] for r in runs),
        "errors": sum(r["errors"] for r in runs),
        "lost_connections": sum(r["lost_connections"] for r in runs),
        "close_codes": close_codes,
    }
