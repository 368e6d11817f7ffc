"""The load generator: cheap WebSocket clients in worker processes.

Each worker process runs one event loop with many :class:`Client` protocols
(raw asyncio ``Protocol`` objects over :mod:`bench.wsframes`: no WebSocket
library per message) and obeys commands from the runner over a pipe:
``connect`` clients, ``run`` a measurement (send poses at a rate, count what
arrives), ``close`` them, ``exit``. Every worker reports its own CPU time, so
the runner can show what the generator took from the shared cores.

Clocks: everything uses ``CLOCK_MONOTONIC`` (``time.monotonic`` and the event
loop's ``loop.time()``), which all processes of the machine share, so a pose
sent by one worker and received by another yields a true latency.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import signal
import time
import traceback
from collections import Counter
from collections.abc import Callable, Sequence
from multiprocessing.connection import Connection
from typing import Any

from bench.client import Client, check_hello
from bench.pose import Tally, client_hello, legacy_client_hello
from bench.wsframes import CloseCode, HandshakeError, Opcode, handshake_request

CONNECT_TIMEOUT = 10.0  # one connection: TCP + handshake (+ first frame)
CLOSE_TIMEOUT = 3.0  # closing handshakes still open after this are aborted
REPLY_SLACK = 30.0  # how much longer than a command's own deadline the runner waits
START_SECONDS = 30.0  # a worker must be up (imports done) within this

ClientSpec = tuple[int, int, str, str]  # (global number, server port, path with query, user id)


class GeneratorError(Exception):
    """A worker failed or did not answer in time."""


class _Run:
    """The state of one measurement in a worker."""

    def __init__(self, cmd: dict[str, Any], epoch_ns: int) -> None:
        self.period = 1.0 / float(cmd["hz"])
        self.start = cmd["start_ns"] / 1e9
        self.window_start = cmd["window_start_ns"] / 1e9
        self.window_end = cmd["window_end_ns"] / 1e9
        self.stop_sending = self.window_end  # senders stop when the window closes
        self.until = self.window_end + float(cmd["drain"])
        self.start_us = (cmd["window_start_ns"] - epoch_ns) // 1000
        self.end_us = (cmd["window_end_ns"] - epoch_ns) // 1000
        self.total_clients = max(1, int(cmd["total_clients"]))
        self.sent_total = 0
        self.sent_window = 0
        self.skipped = 0
        self.cpu_marks: dict[str, float] = {}

    def mark_cpu(self, name: str) -> None:
        """Note this process's CPU time now (at the window's edges)."""
        self.cpu_marks[name] = time.process_time()


class Generator:
    """One worker's clients and the commands the runner sends it."""

    def __init__(self, worker_id: int, epoch_ns: int) -> None:
        self.worker_id = worker_id
        self.epoch_ns = epoch_ns
        self.clients: list[Client] = []
        self.tally: Tally | None = None
        self.run_state: _Run | None = None
        self.lost_in_run = 0
        self.close_codes: Counter[int] = Counter()
        self.legacy = False  # the clients speak the legacy wire (the last connect said so)
        self.reads = 0  # data_received calls: frames per read shows how batched reads are

    # --- callbacks from clients -------------------------------------------------

    def on_frames(self, client: Client, frames: list[tuple[int, bytes]]) -> None:
        """Frames arrived on ``client``; count poses while a measurement runs."""
        tally = self.tally
        now_us = (time.monotonic_ns() - self.epoch_ns) // 1000  # one read per chunk
        for opcode, payload in frames:
            if opcode == Opcode.BINARY or opcode == Opcode.TEXT:
                if tally is not None:
                    tally.add_frame(payload, now_us)
                elif not client.ready.done():
                    check_hello(client, payload)
            elif opcode == Opcode.PING:
                client.send_frame(Opcode.PONG, payload)
            elif opcode == Opcode.CLOSE:
                client.on_close_frame(payload)

    def on_lost(self, client: Client) -> None:
        """A connection ended; count it when it was not ours to close."""
        if not client.handshaken:
            return  # a failed connect, reported by connect()
        if not client.close_sent or client.close_code not in (None, CloseCode.NORMAL):
            self.close_codes[client.close_code or 1006] += 1
            if self.run_state is not None:
                self.lost_in_run += 1

    # --- commands ---------------------------------------------------------------

    async def connect(self, cmd: dict[str, Any]) -> dict[str, Any]:
        """Open ``cmd["clients"]`` with bounded concurrency; report timing and CPU."""
        loop = asyncio.get_running_loop()
        host = cmd["host"]
        capabilities = cmd.get("capabilities")
        wait_hello = bool(cmd["wait_hello"])
        legacy = self.legacy = bool(cmd.get("legacy"))
        limit = asyncio.Semaphore(int(cmd["concurrency"]))
        deadline = loop.time() + float(cmd["timeout"])
        errors: Counter[str] = Counter()
        done: list[float] = []

        async def open_one(number: int, port: int, path: str, user: str) -> None:
            async with limit:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    errors["deadline"] += 1
                    return
                hello = client_hello(user, capabilities) if capabilities is not None else None
                if legacy and capabilities is not None:  # the service sniffs the legacy hello
                    hello = legacy_client_hello(user)
                request = handshake_request(host, port, path, origin=f"http://{host}:{port}")
                client = Client(
                    self, number, request, hello=hello, wait_hello=wait_hello, legacy=legacy
                )
                try:
                    async with asyncio.timeout(min(CONNECT_TIMEOUT, remaining)):
                        await loop.create_connection(lambda: client, host, port)
                        await client.ready
                except (OSError, TimeoutError, HandshakeError, ConnectionError) as exc:
                    errors[type(exc).__name__ + (f" {exc}" if str(exc) else "")] += 1
                    client.abort()
                    return
                self.clients.append(client)
                done.append(time.monotonic())

        cpu0, begin = time.process_time(), time.monotonic()
        await asyncio.gather(*(open_one(*spec) for spec in cmd["clients"]))
        return {
            "connected": len(done),
            "failed": sum(errors.values()),
            "errors": dict(errors.most_common(3)),
            "begin": begin,
            "end": max(done) if done else time.monotonic(),
            "cpu_s": time.process_time() - cpu0,
        }

    async def run(self, cmd: dict[str, Any]) -> dict[str, Any]:
        """Send poses at ``hz`` from ``start_ns``; count deliveries in the window."""
        loop = asyncio.get_running_loop()
        run = _Run(cmd, self.epoch_ns)
        self.run_state, self.lost_in_run = run, 0
        self.close_codes.clear()
        reads0 = self.reads
        self.tally = Tally(run.start_us, run.end_us, legacy=self.legacy)
        cpu0 = time.process_time()
        for client in self.clients:
            # Spread the senders evenly over the tick, as independent clients would be.
            phase = (client.number % run.total_clients) / run.total_clients * run.period
            client.next_send = run.start + phase
            loop.call_at(client.next_send, self._send, client, run)
        for name, at in (("window_start", run.window_start), ("window_end", run.window_end)):
            loop.call_at(at, run.mark_cpu, name)
        await asyncio.sleep(max(0.0, run.until - loop.time()))
        tally, self.tally, self.run_state = self.tally, None, None
        marks = run.cpu_marks
        return {
            **tally.summary(),
            "sent_total": run.sent_total,
            "sent_window": run.sent_window,
            "skipped": run.skipped,
            "reads": self.reads - reads0,
            "lost_connections": self.lost_in_run,
            "close_codes": dict(self.close_codes),
            "cpu_window_s": marks.get("window_end", 0.0) - marks.get("window_start", 0.0),
            "cpu_total_s": time.process_time() - cpu0,
        }

    def _send(self, client: Client, run: _Run) -> None:
        if self.run_state is not run or client.lost or client.close_sent:
            return
        now = asyncio.get_running_loop().time()
        if now >= run.stop_sending:
            return
        sent_us = (time.monotonic_ns() - self.epoch_ns) // 1000
        client.send_frame(Opcode.BINARY, client.encoder.encode(sent_us))
        run.sent_total += 1
        if run.start_us <= sent_us < run.end_us:
            run.sent_window += 1
        upcoming = client.next_send + run.period
        if upcoming <= now:  # more than a tick late: skip the missed ticks, no burst
            missed = int((now - upcoming) / run.period) + 1
            run.skipped += missed
            upcoming += missed * run.period
        client.next_send = upcoming
        asyncio.get_running_loop().call_at(upcoming, self._send, client, run)

    async def close_all(self, cmd: dict[str, Any]) -> dict[str, Any]:
        """Close every client (closing handshake, then abort after a timeout)."""
        clients, self.clients = self.clients, []
        for client in clients:
            client.close()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + float(cmd.get("timeout", CLOSE_TIMEOUT))
        while loop.time() < deadline and not all(c.lost for c in clients):
            await asyncio.sleep(0.02)
        aborted = 0
        for client in clients:
            if not client.lost:
                aborted += 1
                client.abort()
        await asyncio.sleep(0)
        return {"closed": len(clients) - aborted, "aborted": aborted}


def worker_main(conn: Connection, worker_id: int, epoch_ns: int) -> None:
    """Entry point of a worker process: obey commands until ``exit``."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the runner handles Ctrl-C and stops us
    with contextlib.suppress(BrokenPipeError, EOFError):
        asyncio.run(_serve(conn, Generator(worker_id, epoch_ns)))


async def _serve(conn: Connection, gen: Generator) -> None:
    loop = asyncio.get_running_loop()
    inbox: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()

    def readable() -> None:
        try:
            inbox.put_nowait(conn.recv())
        except (EOFError, OSError):  # the runner is gone
            loop.remove_reader(conn.fileno())
            inbox.put_nowait(None)

    loop.add_reader(conn.fileno(), readable)
    handlers: dict[str, Callable[[dict[str, Any]], Any]] = {
        "connect": gen.connect,
        "run": gen.run,
        "close": gen.close_all,
    }
    conn.send({"ready": True, "id": 0})
    try:
        while True:
            cmd = await inbox.get()
            if cmd is None or cmd["op"] == "exit":
                break
            try:
                result = await handlers[cmd["op"]](cmd)
            except Exception:
                result = {"error": traceback.format_exc()}
            conn.send({**result, "id": cmd.get("id")})
    finally:
        await gen.close_all({"timeout": 1.0})


class GeneratorPool:
    """The runner's handle on the worker processes."""

    def __init__(self, workers: int, epoch_ns: int) -> None:
        context = multiprocessing.get_context("spawn")
        self.conns: list[Connection] = []
        self.procs: list[multiprocessing.process.BaseProcess] = []
        self.last_id = 0  # replies carry their command's id; stale ones are dropped
        for worker_id in range(workers):
            parent, child = context.Pipe()
            proc = context.Process(
                target=worker_main,
                args=(child, worker_id, epoch_ns),
                name=f"bench-gen-{worker_id}",
                daemon=True,
            )
            proc.start()
            child.close()
            self.conns.append(parent)
            self.procs.append(proc)
        self.gather(START_SECONDS)

    @property
    def pids(self) -> list[int]:
        """The worker process ids."""
        return [p.pid for p in self.procs if p.pid is not None]

    def send(self, cmds: Sequence[dict[str, Any]]) -> None:
        """Send one command to each worker (no waiting)."""
        self.last_id += 1
        for conn, cmd in zip(self.conns, cmds, strict=True):
            conn.send({**cmd, "id": self.last_id})

    def gather(self, timeout: float) -> list[dict[str, Any]]:
        """Every worker's answer to the last command (answers to older ones are dropped)."""
        deadline = time.monotonic() + timeout
        results = []
        for index, conn in enumerate(self.conns):
            while True:
                if not conn.poll(max(0.0, deadline - time.monotonic())):
                    raise GeneratorError(
                        f"generator worker {index} did not answer in {timeout:.0f} s"
                    )
                try:
                    result = conn.recv()
                except (EOFError, OSError):
                    raise GeneratorError(f"generator worker {index} exited") from None
                if result.get("id") == self.last_id:
                    break
            if "error" in result:
                raise GeneratorError(f"generator worker {index} failed:\n{result['error']}")
            results.append(result)
        return results

    def split(self, clients: Sequence[ClientSpec]) -> list[list[ClientSpec]]:
        """Clients dealt round-robin to the workers."""
        n = len(self.conns)
        return [list(clients[i::n]) for i in range(n)]

    def connect(
        self,
        host: str,
        clients: Sequence[ClientSpec],
        *,
        capabilities: list[str] | None,
        wait_hello: bool,
        concurrency: int,
        timeout: float,
        legacy: bool = False,
    ) -> dict[str, Any]:
        """Open ``clients`` (each to its own port) across the workers; merged counts, time, CPU."""
        base = {
            "op": "connect",
            "host": host,
            "capabilities": capabilities,
            "wait_hello": wait_hello,
            "legacy": legacy,
            "concurrency": max(1, concurrency // len(self.conns)),
            "timeout": timeout,
        }
        self.send([{**base, "clients": part} for part in self.split(clients)])
        results = self.gather(timeout + REPLY_SLACK)
        errors: Counter[str] = Counter()
        for result in results:
            errors.update(result["errors"])
        return {
            "connected": sum(r["connected"] for r in results),
            "failed": sum(r["failed"] for r in results),
            "errors": dict(errors.most_common(3)),
            "seconds": max(r["end"] for r in results) - min(r["begin"] for r in results),
            "gen_cpu_s": sum(r["cpu_s"] for r in results),
        }

    def start_run(self, cmd: dict[str, Any]) -> None:
        """Start a measurement on every worker (same schedule for all)."""
        self.send([{**cmd, "op": "run"}] * len(self.conns))

    def close_clients(self, timeout: float = CLOSE_TIMEOUT) -> dict[str, int]:
        """Close every client of every worker."""
        self.send([{"op": "close", "timeout": timeout}] * len(self.conns))
        results = self.gather(timeout + REPLY_SLACK)
        return {k: sum(r[k] for r in results) for k in ("closed", "aborted")}

    def shutdown(self) -> None:
        """Stop the workers: ask, then terminate, then kill."""
        for conn in self.conns:
            with contextlib.suppress(OSError, ValueError):
                conn.send({"op": "exit"})
        for proc in self.procs:
            proc.join(3.0)
            if proc.is_alive():
                proc.terminate()
                proc.join(2.0)
            if proc.is_alive():
                proc.kill()
                proc.join(1.0)
        for conn in self.conns:
            conn.close()
