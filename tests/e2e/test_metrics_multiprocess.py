"""End to end: two daphne processes on one host export their metrics together (issue 6).

Both write to one ``PROMETHEUS_MULTIPROC_DIR`` (empty at start, as the README
asks) and share one Redis, so one room spans them. A scrape of either shows
the sum of both; a process that stops takes its live gauges out of the sum.
"""

from __future__ import annotations

import signal
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import pytest
from prometheus_client.parser import text_string_to_metric_families

from presence.protocol import pb
from tests.clients.live import ClientPool, chat, eventually, http_get, is_event
from tests.e2e.conftest import Server, daphne_command, server_env, start_server

pytestmark = pytest.mark.e2e

STOP_SECONDS = 10.0


class Scrape:
    """One parsed ``/metrics`` page of a server."""

    def __init__(self, text: str) -> None:
        self.samples: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                key = (sample.name, frozenset(sample.labels.items()))
                self.samples[key] = self.samples.get(key, 0.0) + sample.value

    def value(self, name: str, **labels: str) -> float:
        """The sample's value over every process; 0 when not exported."""
        return self.samples.get((name, frozenset(labels.items())), 0.0)


def scrape(server: Server) -> Scrape:
    status, _, body = http_get(f"{server.http_url}/metrics")
    assert status == 200
    return Scrape(body)


class SharedMetrics(NamedTuple):
    """Two daphne processes writing their metrics into ``directory``.

    A tuple, so the report hook attaches both servers' logs to a failed test.
    """

    a: Server
    b: Server
    directory: Path


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[SharedMetrics]:
    """daphne A and B on one Redis prefix, one SQLite file and one metrics directory."""
    tmp = tmp_path_factory.mktemp("metrics-pair")
    directory = tmp / "prometheus"
    directory.mkdir()
    env = server_env(tmp, redis_url=redis_url, redis_prefix=f"gwmetrics-{uuid.uuid4().hex[:8]}")
    env["PROMETHEUS_MULTIPROC_DIR"] = str(directory)
    servers: list[Server] = []
    try:
        for name in ("metrics-a", "metrics-b"):
            servers.append(start_server(name, tmp, daphne_command, env, migrate_first=not servers))
        yield SharedMetrics(servers[0], servers[1], directory)
    finally:
        for server in servers:
            server.stop()


async def test_a_scrape_of_either_process_shows_the_sum_of_both(
    shared: SharedMetrics, clients: ClientPool
) -> None:
    alice = await clients.join(shared.a.ws_url, "mp-room", "alice")
    bob = await clients.join(shared.b.ws_url, "mp-room", "bob")
    carol = await clients.join(shared.b.ws_url, "mp-room", "carol")
    await alice.recv_until(is_event(pb.PRESENCE_JOIN, carol.client_id))
    await alice.send(chat("across processes"))
    await bob.recv_kind("chat_message")
    await carol.recv_kind("chat_message")

    for server in (shared.a, shared.b):
        metrics = scrape(server)
        assert metrics.value("presence_connections_total", outcome="accepted") == 3
        assert metrics.value("presence_connections_active") == 3
        assert metrics.value("presence_rooms_active") == 2  # the room, on each process
        assert metrics.value("presence_messages_received_total", type="chat_message") == 1
        assert metrics.value("presence_messages_sent_total", type="chat_message") == 2
        assert metrics.value("presence_delivery_latency_seconds_count") >= 2
    status, content_type, report = http_get(f"{shared.b.http_url}/metrics/report")
    assert (status, content_type.split(";")[0]) == (200, "text/plain")
    assert "Connections\n  active: 3\n  total: 3\n" in report

    for client in (alice, bob, carol):
        await client.close()

    def all_gone(server: Server) -> Scrape | None:
        metrics = scrape(server)
        # The connection gauge may reach 0 a moment before the room is left.
        gone = (
            metrics.value("presence_connections_active") == 0
            and metrics.value("presence_rooms_active") == 0
        )
        return metrics if gone else None

    for server in (shared.a, shared.b):
        after = await eventually(lambda server=server: all_gone(server))
        assert after.value("presence_disconnections_total", code="1000") == 3
        assert after.value("presence_rooms_active") == 0


async def test_a_stopped_process_leaves_the_live_gauges_and_keeps_its_counts(
    shared: SharedMetrics, clients: ClientPool
) -> None:
    accepted = scrape(shared.b).value("presence_connections_total", outcome="accepted")
    await clients.join(shared.a.ws_url, "mp-stop", "dave")
    await clients.join(shared.b.ws_url, "mp-stop", "erin")
    assert scrape(shared.b).value("presence_connections_active") == 2
    pid = shared.a.process.pid
    assert list(shared.directory.glob(f"gauge_livesum_{pid}.db"))

    shared.a.stop()  # SIGTERM: dave gets 4000, the process exits

    assert shared.a.process.returncode is not None
    assert shared.a.process.returncode in (0, -signal.SIGTERM), shared.a.log_tail()
    assert not list(shared.directory.glob(f"gauge_livesum_{pid}.db"))  # mark_process_dead
    metrics = scrape(shared.b)
    assert metrics.value("presence_connections_active") == 1  # erin, on B
    assert metrics.value("presence_rooms_active") == 1
    assert metrics.value("presence_connections_total", outcome="accepted") == accepted + 2
    assert metrics.value("presence_disconnections_total", code="4000") == 1
