"""``python -m bench``: baselines a and n and the service under the same load, one table.

For each target (a, the bare python ``websockets`` relay; n, the bare Node.js
``ws`` relay; then the service under uvicorn, the default, and/or daphne) the
runner starts the server, measures KB per idle connection and connects per
second, then pose fan-out at ``--hz``: a fixed-load sweep of room sizes
(``--sizes``, about ``--size-clients`` clients each), rooms of 10 and rooms of
30 with the number of rooms doubling until delivery drops below 99% or p99
passes the threshold (then one bisection step), and one room with a growing
member count. The goals of the issue are judged at the end
(:mod:`bench.goals`). With ``--instances N --layer redis`` the service runs as
N processes on one Redis and the members of every room alternate between them.
Every loop is bounded in steps, clients and time; every child process is
stopped on exit, Ctrl-C or error. Results go to ``<out>/results.json``,
``<out>/sweep.png`` and ``<out>/sizes.png``; ``--profile`` adds
``<out>/profiles`` (:mod:`bench.profile`).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import json
import os
import platform
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from bench import goals, report
from bench.chart import write_chart, write_size_chart
from bench.loadgen import GeneratorError, GeneratorPool
from bench.measure import QUIET_WAIT_SECONDS, SAT_P99_MS, Plan, TargetRun, log_line
from bench.procstat import host_busy_pct
from bench.profile import MODES, ProfileError, Profiler, traced_command
from bench.servers import (
    NODE_DIR,
    PROJECT,
    SERVERS,
    ServerError,
    ServerGroup,
    ServerProcess,
    ensure_node_relay,
    free_port,
    free_ports,
    migrate,
    node_relay_command,
    relay_command,
    service_command,
    service_env,
)
from bench.storm import storm_lines, storm_target

REDIS_HOSTS = ("127.0.0.1", "localhost")
BUSY_HOST_PCT = 25.0  # other work above this share of a core before the run: warn
QUICK_QUIET_WAIT_SECONDS = 0.5
MAX_INSTANCES = 8  # service processes per target; the benchmark host has few cores
WORKLOADS = ("idle", "connects", "quick", "sizes", "rooms10", "legacy10", "rooms30", "room")
VERSIONED = ("websockets", "daphne", "uvicorn", "channels", "channels-redis", "Django", "protobuf")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    add = parser.add_argument
    add(
        "--quick",
        action="store_true",
        help="one small scenario per target instead of the sweeps (well under a minute)",
    )
    add("--out", default="bench-results", help="folder for results.json, sweep.png and server logs")
    add(
        "--server",
        default="uvicorn",
        help="uvicorn (what `make run` serves), daphne, or both: daphne,uvicorn",
    )
    add(
        "--layer", choices=("memory", "redis"), default="memory", help="the service's channel layer"
    )
    add(
        "--redis-url",
        default="redis://127.0.0.1:6379/12",
        help="with --layer redis (127.0.0.1 only)",
    )
    add("--no-baseline", action="store_true", help="skip both baselines (no ratios)")
    add(
        "--baselines",
        default="a,n",
        help="a (python websockets relay), n (Node.js ws relay), or both: a,n",
    )
    add(
        "--instances",
        type=int,
        default=1,
        help="service processes on one Redis (needs --layer redis); rooms alternate between them",
    )
    add("--hz", type=float, default=20.0, help="pose updates per client per second")
    add(
        "--tick-ms",
        type=float,
        default=50.0,
        help="the service's tick; the p99 goal is tick + 10 ms",
    )
    add(
        "--p99-ms",
        type=float,
        default=None,
        help="one-room sweep: p99 limit of a sustained size (default tick + 10)",
    )
    add(
        "--sat-p99-ms",
        type=float,
        default=SAT_P99_MS,
        help="room sweeps: p99 above this means saturation (queues growing)",
    )
    add("--warmup", type=float, default=None, help="seconds of load before the window")
    add("--duration", type=float, default=None, help="seconds of the measurement window")
    add("--drain", type=float, default=None, help="seconds to keep receiving after the window")
    add("--members", default="50,100,150,200", help="one-room sweep sizes")
    add("--sizes", default="2,4,10,30,100", help="room sizes of the fixed-load sweep")
    add(
        "--size-clients",
        type=int,
        default=100,
        help="clients in each row of the room-size sweep (rooms = this / size)",
    )
    add(
        "--only",
        default="",
        help=f"run only these workloads (comma-separated: {', '.join(WORKLOADS)})",
    )
    add(
        "--profile",
        choices=MODES,
        default=None,
        help="cpu: py-spy the service during each workload; memory: tracemalloc the idle "
        "connections (into <out>/profiles; numbers not comparable with a plain run)",
    )
    add("--rooms10-start", type=int, default=2, help="first number of rooms of 10")
    add("--rooms30-start", type=int, default=1, help="first number of rooms of 30")
    add("--refine", type=int, default=1, help="bisection steps after a sweep saturates")
    add("--max-clients", type=int, default=1500, help="no scenario opens more connections")
    add("--idle", type=int, default=None, help="connections for the KB-per-idle-connection test")
    add("--connects", type=int, default=None, help="connections for the connects-per-second test")
    add("--connect-concurrency", type=int, default=100, help="connection attempts in flight")
    add("--workers", type=int, default=2, help="load generator processes")
    add("--no-batch", action="store_true", help="do not announce the 'batch' capability")
    add("--budget", type=float, default=420.0, help="seconds per target before sweeps stop early")
    add(
        "--compare",
        default=None,
        metavar="RESULTS_JSON",
        help="list every row worse than in this earlier results.json by more than 5 %%",
    )
    add("--server-env", action="append", default=[], metavar="KEY=VALUE", help="extra service env")
    add(
        "--storm-clients",
        type=int,
        default=None,
        help="reconnect storm: clients of a killed instance that resume on another "
        "(default 1000, 200 with --quick; needs Redis at --redis-url)",
    )
    add("--storm-room-size", type=int, default=10, help="reconnect storm: members per room")
    add("--no-storm", action="store_true", help="skip the reconnect storm")
    return parser.parse_args(argv)


def make_plan(args: argparse.Namespace) -> Plan:
    """Defaults that depend on ``--quick``."""
    quick = args.quick

    def pick(value: float | None, full: float, short: float) -> float:
        return value if value is not None else (short if quick else full)

    return Plan(
        quick=quick,
        hz=args.hz,
        tick_ms=args.tick_ms,
        p99_ms=args.p99_ms if args.p99_ms is not None else args.tick_ms + 10,
        sat_p99_ms=args.sat_p99_ms,
        warmup=pick(args.warmup, 1.0, 0.1),
        duration=pick(args.duration, 3.0, 0.5),
        drain=pick(args.drain, 0.5, 0.2),
        members=sorted({int(m) for m in args.members.split(",") if m.strip()}),
        rooms10_start=max(1, args.rooms10_start),
        rooms30_start=max(1, args.rooms30_start),
        refine=max(0, args.refine),
        max_clients=max(2, args.max_clients),
        idle=int(pick(args.idle, 1000, 50)),
        connects=int(pick(args.connects, 500, 50)),
        connect_concurrency=max(1, args.connect_concurrency),
        batch=not args.no_batch,
        budget_s=args.budget,
        sizes=sorted({int(m) for m in args.sizes.split(",") if m.strip()}),
        size_clients=max(2, args.size_clients),
        only=_workloads(args.only),
        profile=args.profile is not None,
        # --quick shows that everything works, its numbers say little: no long
        # waits for a busy host to calm down (the test suite runs it).
        quiet_wait_s=QUICK_QUIET_WAIT_SECONDS if quick else QUIET_WAIT_SECONDS,
    )


def _load_reference(path: str | None) -> dict[str, Any] | None:
    if path is None:
        return None
    try:
        reference = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise SystemExit(f"--compare: cannot read {path}: {exc}") from None
    if not isinstance(reference, dict) or "targets" not in reference:
        raise SystemExit(f"--compare: {path} is not a results.json of python -m bench")
    return reference


def _workloads(raw: str) -> frozenset[str]:
    chosen = frozenset(w.strip() for w in raw.split(",") if w.strip())
    unknown = chosen - set(WORKLOADS)
    if unknown:
        raise SystemExit(f"--only: choose from {', '.join(WORKLOADS)} (got {sorted(unknown)})")
    return chosen


def _baseline_list(args: argparse.Namespace) -> list[str]:
    if args.no_baseline:
        return []
    chosen = [b.strip() for b in args.baselines.split(",") if b.strip()]
    unknown = [b for b in chosen if b not in report.BASELINES]
    if unknown:
        raise SystemExit(f"--baselines: choose from {', '.join(report.BASELINES)} (got {unknown})")
    return [b for b in report.BASELINES if b in chosen]


def _server_list(raw: str) -> list[str]:
    servers = [s.strip() for s in raw.split(",") if s.strip()]
    unknown = [s for s in servers if s not in SERVERS]
    if unknown or not servers:
        raise SystemExit(f"--server: choose from {', '.join(SERVERS)} (got {raw!r})")
    return servers


def target_name(kind: str, instances: int, layer: str) -> str:
    """The report's name of a target, e.g. ``uvicorn+redis``; N > 1 instances add TIMES N."""
    count = f"{report.TIMES}{instances}" if instances > 1 else ""
    return f"{kind}{count}{'+redis' if layer == 'redis' else ''}"


def _log_path(out: Path, name: str, instance: int | None = None) -> Path:
    slug = name.replace(report.TIMES, "-x").replace("+", "-")
    return out / "logs" / (f"{slug}.log" if instance is None else f"{slug}-{instance}.log")


def _check_instances(instances: int, layer: str) -> None:
    if not 1 <= instances <= MAX_INSTANCES:
        raise SystemExit(f"--instances: 1 to {MAX_INSTANCES} (got {instances})")
    if instances > 1 and layer != "redis":
        raise SystemExit("--instances above 1 needs --layer redis: rooms span processes via Redis")


def _extra_env(pairs: list[str]) -> dict[str, str]:
    env = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise SystemExit(f"--server-env wants KEY=VALUE, got {pair!r}")
        env[key] = value
    return env


def _check_redis(url: str) -> None:
    if urlparse(url).hostname not in REDIS_HOSTS:
        raise SystemExit(f"--redis-url must point at 127.0.0.1, got {url!r}")
    import redis

    try:
        redis.Redis.from_url(url, socket_connect_timeout=1.0).ping()
    except redis.RedisError as exc:
        raise SystemExit(f"no Redis answers at {url}: {exc}") from None


def _delete_redis_keys(url: str, prefix: str) -> None:
    """Remove what the service left under its unique prefix (bounded scan)."""
    import redis

    with contextlib.suppress(redis.RedisError):
        client = redis.Redis.from_url(url, socket_connect_timeout=1.0)
        cursor = 0
        for _ in range(10_000):
            cursor, keys = client.scan(cursor, match=f"{prefix}:*", count=1000)
            if keys:
                client.delete(*keys)
            if cursor == 0:
                break
        client.close()


def _raise_open_files_limit() -> None:
    """Idle and connect tests open thousands of sockets; children inherit the limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = hard if hard != resource.RLIM_INFINITY else 65536
    if soft != resource.RLIM_INFINITY and soft < wanted:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # SIGTERM cleans up like Ctrl-C


def _git(*args: str) -> str:
    try:
        done = subprocess.run(
            ["git", *args], cwd=PROJECT, capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return done.stdout.strip()


def _node_version() -> str | None:
    try:
        done = subprocess.run(
            ["node", "--version"], capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() or None


def _meta(args: argparse.Namespace, plan: Plan) -> dict[str, Any]:
    versions: dict[str, str | None] = {}
    for name in (*VERSIONED, "matplotlib"):
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    versions["node"] = _node_version()
    with contextlib.suppress(OSError, ValueError, KeyError):
        lock = json.loads((NODE_DIR / "package-lock.json").read_text())
        versions["ws (node)"] = lock["packages"]["node_modules/ws"]["version"]
    commit = _git("rev-parse", "--short", "HEAD")
    dirty = bool(_git("status", "--porcelain", "--untracked-files=no"))
    plan_fields = {k: v for k, v in vars(plan).items() if k != "tags"}
    return {
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": "python -m bench " + " ".join(sys.argv[1:]),
        "python": platform.python_version(),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, Linux {platform.release()}",
        "git_commit": commit or None,
        "git_dirty": dirty,  # the service measured may include uncommitted changes
        "versions": versions,
        "plan": plan_fields,
        "server": args.server,
        "layer": args.layer,
        "instances": args.instances,
        "workers": args.workers,
    }


def bench_target(
    result: dict[str, Any],
    name: str,
    server_kind: str,
    pool: GeneratorPool,
    plan: Plan,
    args: argparse.Namespace,
    out: Path,
    tmp: Path,
    begin: float,
    profiler: Profiler | None = None,
) -> None:
    """Start one target, measure it into ``result`` (filled as it goes), stop it.

    ``server_kind``: ``a`` or ``n`` (the baselines) or a service server (``uvicorn``).
    """
    redis_prefix = ""
    if server_kind in report.BASELINES:
        port = free_port()
        if server_kind == report.NODE_BASELINE:
            log_line(begin, f"{name:<16} checking Node.js and `ws` (npm ci when missing)")
            ensure_node_relay()
            command = node_relay_command(port)
        else:
            command = relay_command(port)
        relay = ServerProcess(name, port, command, dict(os.environ), _log_path(out, name), False)
        server = ServerGroup(name, [relay])
    else:
        (tmp / name).mkdir(parents=True, exist_ok=True)
        redis_url = args.redis_url if args.layer == "redis" else ""
        redis_prefix = f"bench-{uuid.uuid4().hex[:12]}" if redis_url else ""
        env = service_env(
            tmp / name,
            redis_url=redis_url,
            redis_prefix=redis_prefix,
            extra=_extra_env(args.server_env),
        )
        log_line(begin, f"{name:<16} migrating a fresh SQLite database")
        migrate(env)  # once: every instance shares the file and the Redis prefix
        command_for: Callable[[str, int], list[str]] = service_command
        if profiler is not None and profiler.mode == "memory":
            if server_kind != "uvicorn":
                raise SystemExit("--profile memory runs the service under uvicorn only")
            env["BENCH_TRACEMALLOC_DIR"] = str(profiler.snapshots)

            def command_for(kind: str, port: int) -> list[str]:
                return traced_command(service_command(kind, port))

        n = args.instances
        server = ServerGroup(
            name,
            [
                ServerProcess(
                    name if n == 1 else f"{name}#{i}",
                    port,
                    command_for(server_kind, port),
                    env,
                    _log_path(out, name, None if n == 1 else i),
                    True,
                )
                for i, port in enumerate(free_ports(n), 1)
            ],
        )
    command = server.servers[0].command
    result["command"] = " ".join(
        Path(command[0]).name if i == 0 else a for i, a in enumerate(command)
    )
    result["instances"] = len(server.servers)
    result["ports"] = server.ports
    count = f"{len(server.servers)} x " if len(server.servers) > 1 else ""
    log_line(begin, f"{name:<16} starting: {count}{result['command']}")
    run = TargetRun(name, server, pool, plan, begin)
    run.profiler = profiler
    result["scenarios"] = run.scenarios  # filled in place: partial results survive an error
    try:
        server.start()
        if not plan.quick:  # --quick's idle number is indicative only; it keeps the suite fast
            run.warm()
        if plan.wants("idle"):
            result["idle"] = run.idle()
        if plan.wants("connects"):
            result["connects"] = run.connects()
        # The reconnect storm (issue 11) needs two instances on Redis: it runs
        # once after the targets (run_storm), against fresh connects to the
        # instance the clients resume on.
        if plan.quick:
            if plan.wants("quick"):
                run.scenario("quick", 2, 5)
            # The legacy wire (one frame per pose, JSON payloads); in --quick not
            # against n, to keep the suite's smoke run short (the full run has it).
            if plan.wants("legacy10") and server_kind != report.NODE_BASELINE:
                run.scenario("legacy10", 2, 10)
        else:
            if plan.wants("sizes"):
                run.sweep_sizes()
            if plan.wants("rooms10"):
                run.sweep_rooms("rooms10", 10, plan.rooms10_start)
            if plan.wants("legacy10"):
                run.sweep_rooms("legacy10", 10, plan.rooms10_start)
            if plan.wants("rooms30"):
                run.sweep_rooms("rooms30", 30, plan.rooms30_start)
            if plan.wants("room"):
                run.sweep_members()
    finally:
        server.stop()
        if redis_prefix:
            _delete_redis_keys(args.redis_url, redis_prefix)


def run_storm(args: argparse.Namespace, out: Path, tmp: Path, begin: float) -> dict[str, Any]:
    """The reconnect-storm row (issue 11); skipped without Redis, errors recorded."""
    clients = args.storm_clients or (200 if args.quick else 1000)
    try:
        _check_redis(args.redis_url)
    except SystemExit as no_redis:
        return {"error": f"skipped: {no_redis}"}
    prefix = f"bench-storm-{uuid.uuid4().hex[:12]}"
    log_line(begin, f"{'storm':<16} {clients} clients resume on another instance after SIGKILL")
    (tmp / "storm").mkdir(parents=True, exist_ok=True)
    try:
        return storm_target(
            tmp / "storm",
            out,
            redis_url=args.redis_url,
            redis_prefix=prefix,
            clients=clients,
            room_size=max(1, args.storm_room_size),
        )
    except (ServerError, OSError, AssertionError, TimeoutError) as exc:
        return {"error": f"{type(exc).__name__}: {exc}"}
    finally:
        _delete_redis_keys(args.redis_url, prefix)


def finish(
    results: dict[str, Any], plan: Plan, begin: float, reference: dict[str, Any] | None = None
) -> None:
    """Summaries, ratios to a and n, goals (and rows worse than ``reference``), in place."""
    targets = results["targets"]
    for target in targets.values():
        if "scenarios" in target:
            target["summary"] = report.summarize(target)
    report.add_ratios(targets)
    attach_storm(results)
    results["goals"] = goals.evaluate(targets)
    if reference is not None:
        results["worse_than_reference"] = goals.compare(targets, reference)
    results["meta"]["duration_s"] = round(time.monotonic() - begin, 1)


def attach_storm(results: dict[str, Any]) -> None:
    """Judge the reconnect storm against a's fresh connects of as many clients, in place.

    The storm runs on uvicorn (two instances on Redis): its time to have every
    client resumed, over the time a needs for as many fresh connects at the
    connects/s a measured in this run, goes to the uvicorn target as
    ``storm = {"seconds", "ratio_to_a"}`` for :func:`bench.goals.evaluate`.
    """
    storm = results.get("storm") or {}
    targets = results["targets"]
    a_rate = ((targets.get("a") or {}).get("connects") or {}).get("per_s") or 0
    if "error" in storm or "storm_resume_s" not in storm or a_rate <= 0 or "uvicorn" not in targets:
        return
    a_seconds = storm["clients"] / a_rate
    targets["uvicorn"]["storm"] = {
        "seconds": storm["storm_resume_s"],
        "ratio_to_a": round(storm["storm_resume_s"] / a_seconds, 3),
    }


def write_json(results: dict[str, Any], path: Path) -> None:
    """Write ``results`` atomically (a reader never sees half a file)."""
    partial = path.with_suffix(".json.tmp")
    partial.write_text(json.dumps(results, indent=2, default=str) + "\n")
    partial.replace(path)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; 0 when every target was measured, 1 on errors, 130 on Ctrl-C."""
    args = parse_args(argv)
    plan = make_plan(args)
    servers = _server_list(args.server)
    reference = _load_reference(args.compare)
    _check_instances(args.instances, args.layer)
    if args.layer == "redis":
        _check_redis(args.redis_url)
    # The baselines stay one process each: the references the ratios are taken to.
    targets: list[tuple[str, str]] = [(b, b) for b in _baseline_list(args)]
    targets += [(target_name(kind, args.instances, args.layer), kind) for kind in servers]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    _raise_open_files_limit()
    signal.signal(signal.SIGTERM, _interrupt)
    begin = time.monotonic()
    results: dict[str, Any] = {"meta": _meta(args, plan), "targets": {}, "goals": []}
    tmp = Path(tempfile.mkdtemp(prefix="graphwiz-bench-"))
    profiler = (
        Profiler(args.profile, out / "profiles", out / "profiles" / "snapshots")
        if args.profile
        else None
    )
    pool: GeneratorPool | None = None
    status = 0
    try:
        busy = host_busy_pct(0.25 if plan.quick else 1.0)
        results["meta"]["host_busy_before_pct"] = round(busy, 1)
        if busy > BUSY_HOST_PCT:
            log_line(begin, f"warning: the host is already {busy:.0f}% busy: numbers will be noisy")
        log_line(begin, f"starting {args.workers} load generator workers")
        pool = GeneratorPool(args.workers, time.monotonic_ns())
        for name, kind in targets:
            result: dict[str, Any] = {}
            results["targets"][name] = result
            try:
                bench_target(result, name, kind, pool, plan, args, out, tmp, begin, profiler)
            except (ServerError, GeneratorError, ProfileError, OSError) as exc:
                status = 1
                result["error"] = f"{type(exc).__name__}: {exc}"
                log_line(begin, f"{name:<16} ERROR {result['error']}")
                # The workers may be mid-command or hold connections to a dead server.
                pool.shutdown()
                pool = GeneratorPool(args.workers, time.monotonic_ns())
            write_json(results, out / "results.json")
        if not args.no_storm:
            results["storm"] = run_storm(args, out, tmp, begin)
            write_json(results, out / "results.json")
        results["meta"]["reference"] = args.compare
        finish(results, plan, begin, reference)
        write_json(results, out / "results.json")
        chart = write_chart(results, out / "sweep.png")
        sizes_chart = write_size_chart(results, out / "sizes.png")
        print(flush=True)
        for line in report.render(results):
            print(line)
        if "storm" in results:
            print()
            for line in storm_lines(results["storm"]):
                print(line)
        charts = ", ".join(str(c) for c in (chart, sizes_chart) if c)
        print(
            f"\nresults: {out / 'results.json'}"
            + (f", charts: {charts}" if charts else " (no chart: matplotlib missing or no rows)")
        )
        if profiler is not None:
            print(f"profiles: {profiler.out}")
        print(f"took {results['meta']['duration_s']:.0f} s", flush=True)
    except KeyboardInterrupt:
        print("\ninterrupted: stopping the servers and the load generator", flush=True)
        results["meta"]["interrupted"] = True
        write_json(results, out / "results.json")  # what was measured so far
        status = 130
    finally:
        if pool is not None:
            pool.shutdown()
        shutil.rmtree(tmp, ignore_errors=True)
    return status
