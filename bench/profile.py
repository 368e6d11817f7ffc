"""``--profile cpu`` and ``--profile memory``: where the service spends its time and memory.

``cpu``: while each workload runs, ``py-spy record --nonblocking`` samples the
service (the process keeps running while sampled, so the profile costs it
little) into ``<out>/profiles/<target>-<workload>.txt`` (collapsed stacks,
``py-spy``'s ``raw`` format: one ``frame;frame;... count`` line per stack),
and a summary beside it (``*-top.txt``): the functions with the most samples
on top of the stack (self) and anywhere in it (inclusive).

``memory``: the service runs under :mod:`bench.traced` (uvicorn with
``tracemalloc`` on); before and after the idle connections open the runner
asks for a snapshot (``SIGUSR1``) and writes what grew, by line and by
traceback, per connection, to ``<target>-idle-memory.txt``.

Numbers measured with a profile on are not comparable with a plain run.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
import tracemalloc
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

MODES = ("cpu", "memory")
RATE_HZ = 250  # py-spy samples per second
ATTACH_SECONDS = 0.5  # py-spy needs a moment to attach before the workload starts
STOP_SECONDS = 20.0
SNAPSHOT_SECONDS = 30.0
TOP = 40  # functions per summary list


class ProfileError(Exception):
    """py-spy is missing, or a snapshot did not appear."""


def py_spy() -> str:
    """The ``py-spy`` of this virtualenv (requirements-dev.txt) or on PATH."""
    local = Path(sys.executable).parent / "py-spy"
    found = str(local) if local.exists() else shutil.which("py-spy")
    if found is None:
        raise ProfileError("--profile cpu needs py-spy: `make install` (requirements-dev.txt)")
    return found


def traced_command(command: list[str]) -> list[str]:
    """A uvicorn command line run under :mod:`bench.traced` instead."""
    return [sys.executable, "-m", "bench.traced", *command[1:]]


class Profiler:
    """Writes profiles of one run into ``out``."""

    def __init__(self, mode: str, out: Path, snapshots: Path) -> None:
        self.mode = mode
        self.out = out
        self.snapshots = snapshots  # where bench.traced writes (BENCH_TRACEMALLOC_DIR)
        self.out.mkdir(parents=True, exist_ok=True)
        self.taken: dict[str, Path] = {}

    @contextlib.contextmanager
    def record(self, pid: int, label: str) -> Iterator[None]:
        """Sample ``pid`` with py-spy while the block runs (``cpu`` mode only)."""
        if self.mode != "cpu":
            yield
            return
        raw = self.out / f"{label}.txt"
        command = [py_spy(), "record", "--pid", str(pid), "--rate", str(RATE_HZ)]
        command += ["--nonblocking", "--format", "raw", "--output", str(raw)]
        log = (self.out / f"{label}.py-spy.log").open("wb")
        spy = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        try:
            time.sleep(ATTACH_SECONDS)
            yield
        finally:
            spy.send_signal(signal.SIGINT)  # py-spy writes its output on Ctrl-C
            try:
                spy.wait(STOP_SECONDS)
            except subprocess.TimeoutExpired:
                spy.kill()
                spy.wait()
            log.close()
        if raw.exists():
            (self.out / f"{label}-top.txt").write_text("\n".join(summarize_collapsed(raw)) + "\n")

    def snapshot(self, pid: int, label: str) -> None:
        """A tracemalloc snapshot of a ``bench.traced`` service (``memory`` mode only).

        ``*-after`` snapshots are compared with the ``*-before`` of the same
        label stem and the difference written out.
        """
        if self.mode != "memory":
            return
        before = set(self.snapshots.glob("snapshot-*.pickle"))
        os.kill(pid, signal.SIGUSR1)
        deadline = time.monotonic() + SNAPSHOT_SECONDS
        while True:
            new = set(self.snapshots.glob("snapshot-*.pickle")) - before
            if new:
                break
            if time.monotonic() > deadline:
                raise ProfileError(f"no tracemalloc snapshot from {pid} in {SNAPSHOT_SECONDS} s")
            time.sleep(0.1)
        self.taken[label] = new.pop()
        stem, _, when = label.rpartition("-")
        if when == "after" and f"{stem}-before" in self.taken:
            lines = compare_snapshots(self.taken[f"{stem}-before"], self.taken[label])
            (self.out / f"{stem}-memory.txt").write_text("\n".join(lines) + "\n")


# Where a busy sample's time goes: the innermost frame of its stack that
# matches one of these substrings names its path (hot paths of the issue).
PATHS = (
    ("receive: consumer (decode, validate, room, hub, metrics)", "websocket_receive (presence/"),
    (
        "connect: consumer websocket_connect (auth, access, join, hello)",
        "websocket_connect (presence/",
    ),
    ("disconnect: consumer websocket_disconnect", "websocket_disconnect (presence/"),
    ("send: outbound writer (one frame per recipient)", "_write_loop (presence/transport/"),
    ("tick: room tick (batch build, hand to writers)", "_tick_loop (presence/cluster/"),
    ("receive: ASGI hand-off (event dict, queue, routing, dispatch)", "run_asgi (uvicorn/"),
    ("connect: WebSocket handshake (uvicorn, websockets)", "handshake"),
    ("connect: WebSocket handshake (uvicorn, websockets)", "handle_connect ("),
    ("receive: socket read, frame parse (asyncio, websockets)", "_read_ready (asyncio/"),
    ("worker threads (database: access rules, session rows)", "_bootstrap (threading.py"),
)
# Inside the consumer's receive path: the innermost of these owns the sample.
RECEIVE_PARTS = (
    ("metrics (prometheus calls)", "(presence/metrics.py"),
    ("metrics (prometheus calls)", "(prometheus_client/"),
    ("rate limit", "(presence/protocol/ratelimit.py"),
    ("decode (protobuf parse)", "decode_frame (presence/"),
    ("validate", "(presence/protocol/validation.py"),
    ("room state (pose stored for the tick)", "(presence/protocol/room.py"),
    ("hub, publisher, local rooms", "(presence/cluster/"),
    ("session state machine", "(presence/protocol/session.py"),
    ("consumer itself", "websocket_receive (presence/"),
)


def _is_idle(leaf: str) -> bool:
    """The event loop waiting in epoll, or a thread waiting for work: not CPU."""
    name = leaf.partition(" (")[0]
    return (name.endswith("select") and "(selectors.py" in leaf) or (
        leaf.startswith(
            ("Condition.wait (threading.py", "Queue.get (queue.py", "_worker (concurrent")
        )
    )


def _classify(raw: list[str], table: tuple[tuple[str, str], ...]) -> str | None:
    for frame in reversed(raw):
        for label, key in table:
            if key in frame:
                return label
    return None


def _package(path: str) -> str:
    """A frame's file as a package: ``websockets``, ``presence/transport``, ``asyncio``."""
    parts = path.split("site-packages/")[-1].split("/")
    if parts[0] == "presence" and len(parts) > 2:
        return "presence/" + parts[1]
    return parts[0].removesuffix(".py") if len(parts) > 1 else parts[0]


def _frame_name(frame: str) -> str:
    """``func (path/to/file.py:123)`` -> ``func (to/file.py)``: one name per function."""
    name, _, where = frame.partition(" (")
    path = where.rstrip(")").rpartition(":")[0]
    parts = Path(path).parts
    short = "/".join(parts[-2:]) if parts else path
    return f"{name} ({short})"


def _frame_path(frame: str) -> str:
    return frame.partition(" (")[2].rstrip(")").rpartition(":")[0]


def summarize_collapsed(path: Path, top: int = TOP) -> list[str]:
    """Shares of the busy samples in a py-spy ``raw`` file: by path, package, function.

    Samples whose innermost frame is the event loop's ``select`` or an idle
    executor thread are waiting, not working: counted apart.
    """
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    packages: Counter[str] = Counter()
    paths: Counter[str] = Counter()
    receive: Counter[str] = Counter()
    total = idle = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        raw = [f for f in stack.split(";") if " (" in f and not f.startswith("process ")]
        if not raw:
            continue
        if _is_idle(raw[-1]):
            idle += count
            continue
        total += count
        frames = [_frame_name(f) for f in raw]
        own[frames[-1]] += count
        packages[_package(_frame_path(raw[-1]))] += count
        for name in set(frames):
            inclusive[name] += count
        where = _classify(raw, PATHS) or "event loop, timers, other callbacks"
        paths[where] += count
        if where.startswith("receive: consumer"):
            receive[_classify(raw, RECEIVE_PARTS) or "consumer itself"] += count
    lines = [
        f"{path.name}: {total} busy samples at {RATE_HZ} Hz (~{total / RATE_HZ:.2f} CPU s), "
        f"{idle} idle samples (epoll wait, idle threads) left out"
    ]
    sections = (
        ("by path (innermost matching frame)", paths, len(PATHS) + 1),
        ("the consumer's receive path, by part (share of all busy samples)", receive, 12),
        ("self time by package", packages, 20),
        ("self (top of stack)", own, top),
        ("inclusive (anywhere in stack)", inclusive, top),
    )
    for title, counter, limit in sections:
        lines += ["", title]
        for name, count in counter.most_common(limit):
            lines.append(f"  {count / max(1, total) * 100:5.1f}%  {count:7d}  {name}")
    return lines


def compare_snapshots(before: Path, after: Path, top: int = 30) -> list[str]:
    """What grew between two tracemalloc snapshots, by line and by traceback."""
    old = tracemalloc.Snapshot.load(str(before))
    new = tracemalloc.Snapshot.load(str(after))
    lines = [f"tracemalloc: {before.name} -> {after.name}"]
    by_line = new.compare_to(old, "lineno")
    grown = sum(d.size_diff for d in by_line)
    blocks = sum(d.count_diff for d in by_line)
    lines.append(f"total Python allocations grew {grown / 1024:,.1f} KB in {blocks:,} blocks")
    lines += ["", "by line (size diff, blocks diff, line)"]
    for diff in by_line[:top]:
        frame = diff.traceback[0]
        lines.append(
            f"  {diff.size_diff / 1024:9.1f} KB  {diff.count_diff:7d}  "
            f"{frame.filename.rsplit('site-packages/', 1)[-1]}:{frame.lineno}"
        )
    owners: Counter[str] = Counter()
    owned_blocks: Counter[str] = Counter()
    for diff in new.compare_to(old, "traceback"):
        files = [frame.filename for frame in diff.traceback]  # innermost last
        ours = [f for f in files if "/presence/" in f or "/graphwiz/" in f]
        owner = _package(files[-1].rsplit("/python3.11/", 1)[-1])
        if ours:
            mine = ours[-1].split("/presence/")[-1].split("/graphwiz/")[-1]
            owner = mine if ours[-1] == files[-1] else f"{owner} (called from {mine})"
        owners[owner] += diff.size_diff
        owned_blocks[owner] += diff.count_diff
    lines += ["", "by owner: the allocating package, and our innermost caller (KB, blocks)"]
    for owner, size in owners.most_common(30):
        lines.append(f"  {size / 1024:9.1f} KB  {owned_blocks[owner]:7d}  {owner}")
    lines += ["", "by traceback (innermost last), top 12"]
    for diff in new.compare_to(old, "traceback")[:12]:
        lines.append(f"  {diff.size_diff / 1024:9.1f} KB  {diff.count_diff:7d} blocks")
        for frame in list(diff.traceback)[-8:]:
            lines.append(f"      {frame.filename.rsplit('site-packages/', 1)[-1]}:{frame.lineno}")
    return lines
