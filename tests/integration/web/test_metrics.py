"""``/metrics`` and ``/metrics/report`` move as traffic flows (issue 6).

Real WebSocket connections through the consumer; ``/metrics`` is scraped
through Django's ``AsyncClient`` and parsed with prometheus_client's own
parser. The registry is the process's, shared by every test: each test
compares a scrape before with one after its traffic.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from typing import Any

import pytest
from channels.db import database_sync_to_async
from django.conf import settings as django_settings
from django.core.exceptions import ImproperlyConfigured
from django.test import AsyncClient, Client
from prometheus_client.parser import text_string_to_metric_families

from presence.conf import build
from presence.models import Room
from presence.protocol import pb
from presence.protocol.codes import CloseCode, ErrorCode
from presence.transport.probes import get_prober
from tests.clients.communicator import ProtocolClient, pose

pytestmark = pytest.mark.django_db(transaction=True)

POLL_SECONDS = 0.01
POLL_TIMEOUT = 5.0


class Scrape:
    """One parsed ``/metrics`` page: sample values by name and labels."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.samples: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                self.samples[sample.name, frozenset(sample.labels.items())] = sample.value

    def value(self, name: str, **labels: str) -> float:
        """The sample's value; 0 when it is not exported (yet)."""
        return self.samples.get((name, frozenset(labels.items())), 0.0)


async def scrape() -> Scrape:
    response = await AsyncClient().get("/metrics")
    assert response.status_code == 200
    return Scrape(response.content.decode())


def moved(before: Scrape, after: Scrape, name: str, **labels: str) -> float:
    """How much a sample moved between two scrapes."""
    return after.value(name, **labels) - before.value(name, **labels)


async def scrape_until(condition: Callable[[Scrape], bool]) -> Scrape:
    """Scrape until ``condition`` holds (what has no signal to wait on); fail at the deadline."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + POLL_TIMEOUT
    while True:
        current = await scrape()
        if condition(current):
            return current
        if loop.time() > deadline:
            raise AssertionError("the metrics did not reach the expected values")
        await asyncio.sleep(POLL_SECONDS)


@pytest.fixture
def presence_conf(settings: Any) -> Callable[..., None]:
    """Override PRESENCE settings for one test."""

    def override(**values: object) -> None:
        settings.PRESENCE = {**django_settings.PRESENCE, **values}

    return override


async def joined(room: str, user: str, **params: str) -> ProtocolClient:
    query = "&".join(f"{k}={v}" for k, v in {"user_id": user, **params}.items())
    client = ProtocolClient(f"/ws/{room}?{query}")
    await client.join()
    return client


async def pair(room: str) -> tuple[ProtocolClient, ProtocolClient]:
    """Alice and Bob in ``room``; Alice has seen Bob's JOIN."""
    alice = await joined(room, "alice")
    bob = await joined(room, "bob")
    await alice.recv_kind("presence_event")
    return alice, bob


def chat(text: str, message_id: str = "") -> pb.Message:
    return pb.Message(message_id=message_id, chat_message=pb.ChatMessage(message=text))


async def acked(client: ProtocolClient, message_id: str) -> None:
    """Send a chat with ``message_id`` and wait for its Ack: everything sent before is handled."""
    await client.send(chat("sync", message_id))
    await client.recv_until(lambda m: m.WhichOneof("payload") == "ack")


# --- connections ----------------------------------------------------------------


async def test_joined_connections_count_as_accepted_and_active_until_they_close() -> None:
    before = await scrape()
    alice, bob = await pair("m-active")
    during = await scrape()
    await alice.close()
    await bob.close()
    after = await scrape()

    assert moved(before, during, "presence_connections_total", outcome="accepted") == 2
    assert moved(before, during, "presence_connections_active") == 2
    assert moved(before, during, "presence_rooms_active") == 1
    assert moved(during, after, "presence_disconnections_total", code="1000") == 2
    assert moved(before, after, "presence_connections_active") == 0
    assert moved(before, after, "presence_rooms_active") == 0


async def _refuse(path: str, close_code: int, **kwargs: Any) -> None:
    client = ProtocolClient(path, **kwargs)
    accepted, _ = await client.open()
    assert accepted
    await client.recv_kind("error")
    assert await client.expect_close() == close_code
    await client.close()


@pytest.mark.parametrize(
    ("path", "headers", "outcome", "close_code"),
    [
        (
            "/ws/m-refused?user_id=eve",
            [(b"origin", b"https://evil.test")],
            "refused_origin",
            CloseCode.FORBIDDEN,
        ),
        ("/ws/m-refused?auth_token=not-a-token", None, "refused_auth", CloseCode.UNAUTHORIZED),
        ("/ws/m-refused", None, "refused_auth", CloseCode.AUTH_TIMEOUT),
        ("/ws/m-locked?user_id=late", None, "refused_room", CloseCode.ROOM_UNAVAILABLE),
        ("/ws/bad!room?user_id=x", None, "refused_other", CloseCode.BAD_REQUEST),
        (f"/ws/m-refused?user_id=x&display_name={'n' * 65}", None, "refused_other", 4400),
    ],
    ids=["origin", "bad-token", "no-credentials-in-time", "locked-room", "bad-room-id", "name"],
)
async def test_refused_handshakes_count_by_reason_and_close_code(
    presence_conf: Callable[..., None],
    path: str,
    headers: list[tuple[bytes, bytes]] | None,
    outcome: str,
    close_code: int,
) -> None:
    presence_conf(AUTH_TIMEOUT_SECONDS=0.05)
    await database_sync_to_async(Room.objects.update_or_create)(
        pk="m-locked", defaults={"locked": True}
    )
    before = await scrape()
    await _refuse(path, close_code, headers=headers)
    after = await scrape()

    assert moved(before, after, "presence_connections_total", outcome=outcome) == 1
    assert moved(before, after, "presence_connections_total", outcome="accepted") == 0
    assert moved(before, after, "presence_disconnections_total", code=str(close_code)) == 1
    assert moved(before, after, "presence_connections_active") == 0


async def test_connection_attempts_over_the_limit_count_as_refused_rate(
    presence_conf: Callable[..., None],
) -> None:
    presence_conf(RATE_LIMIT_MAX_REQUESTS=1, RATE_LIMIT_WINDOW_SECONDS=60.0, REDIS_URL="")
    before = await scrape()
    first = await joined("m-rate", "first")
    await _refuse("/ws/m-rate?user_id=second", CloseCode.TOO_MANY_CONNECTIONS)
    await first.close()
    after = await scrape()

    assert moved(before, after, "presence_connections_total", outcome="accepted") == 1
    assert moved(before, after, "presence_connections_total", outcome="refused_rate") == 1
    assert moved(before, after, "presence_disconnections_total", code="4429") == 1
    decisions = "presence_rate_limit_decisions_total"
    assert moved(before, after, decisions, limiter="connection", outcome="blocked") == 1


async def test_disconnections_count_by_close_code_with_other_for_unknown_codes(
    presence_conf: Callable[..., None],
) -> None:
    presence_conf(BAD_FRAME_LIMIT=2)
    before = await scrape()
    sloppy = await joined("m-codes", "sloppy")
    for _ in range(2):
        await sloppy.send_raw(data=b"\xff")
    assert await sloppy.expect_close() == CloseCode.INVALID_MESSAGES
    await sloppy.close()
    odd = await joined("m-codes", "odd")
    await odd.communicator.disconnect(code=3001)
    after = await scrape()

    assert moved(before, after, "presence_disconnections_total", code="4007") == 1
    assert moved(before, after, "presence_disconnections_total", code="other") == 1
    assert moved(before, after, "presence_connections_active") == 0


# --- messages and bytes -------------------------------------------------------


async def test_messages_and_bytes_count_by_type_in_and_out() -> None:
    alice, bob = await pair("m-bytes")
    message = chat("hello")
    before = await scrape()
    await alice.send(message)
    delivered = await bob.recv_frame()
    after = await scrape()

    assert moved(before, after, "presence_messages_received_total", type="chat_message") == 1
    assert moved(before, after, "presence_bytes_received_total", type="chat_message") == len(
        message.SerializeToString()
    )
    assert moved(before, after, "presence_messages_sent_total", type="chat_message") == 1
    assert moved(before, after, "presence_bytes_sent_total", type="chat_message") == len(
        delivered["bytes"]
    )
    await alice.close()
    await bob.close()


async def test_poses_go_out_as_batch_frames_or_single_frames_by_capability() -> None:
    alice, bob = await pair("m-batch")
    carol = await joined("m-batch", "carol")
    await carol.send(pb.Message(client_hello=pb.ClientHello(capabilities=["batch"])))
    # A capabilities-only hello is not broadcast (PROTOCOL.md section 5): its
    # Pong, answered in order, says the server has applied it.
    assert (await carol.ping(1)).WhichOneof("payload") == "pong"
    before = await scrape()
    await alice.send(pose(2.0))
    assert (await carol.recv_kind("batch")).batch.messages[0].position_update.position.x == 2.0
    assert (await bob.recv_kind("position_update")).position_update.position.x == 2.0
    after = await scrape()

    assert moved(before, after, "presence_messages_received_total", type="position_update") == 1
    assert moved(before, after, "presence_messages_sent_total", type="batch") == 1
    assert moved(before, after, "presence_messages_sent_total", type="position_update") == 1
    assert moved(before, after, "presence_bytes_sent_total", type="batch") > 0
    for client in (alice, bob, carol):
        await client.close()


async def test_invalid_and_refused_messages_count_as_errors_by_reason() -> None:
    alice = await joined("m-errors", "alice")
    too_long = chat("x" * 2001)
    before = await scrape()
    await alice.send_raw(data=b"\xff")
    assert (await alice.recv_kind("error")).error.code == ErrorCode.BAD_MESSAGE
    await alice.send(too_long)
    assert (await alice.recv_kind("error")).error.code == ErrorCode.TOO_LARGE
    await alice.send(pose(1.0, entity_id="not-mine"))
    assert (await alice.recv_kind("error")).error.code == ErrorCode.NOT_OWNER
    after = await scrape()

    assert moved(before, after, "presence_messages_received_total", type="invalid") == 2
    assert moved(before, after, "presence_bytes_received_total", type="invalid") == 1 + len(
        too_long.SerializeToString()
    )
    assert moved(before, after, "presence_messages_received_total", type="position_update") == 1
    assert moved(before, after, "presence_message_errors_total", reason="BAD_MESSAGE") == 1
    assert moved(before, after, "presence_message_errors_total", reason="TOO_LARGE") == 1
    assert moved(before, after, "presence_message_errors_total", reason="NOT_OWNER") == 1
    assert moved(before, after, "presence_messages_sent_total", type="error") == 3
    await alice.close()


async def test_messages_over_the_rate_limit_count_as_received_and_rate_limited(
    presence_conf: Callable[..., None],
) -> None:
    presence_conf(MESSAGE_RATE_LIMIT=1, MESSAGE_RATE_WINDOW_SECONDS=60.0)
    alice = await joined("m-flood", "alice")
    before = await scrape()
    assert (await alice.ping(1)).WhichOneof("payload") == "pong"
    await alice.ping(2)  # over the limit: dropped, answered once with RATE_LIMITED
    await alice.send(pb.Message(ping=pb.Ping(client_time_ms=3)))  # dropped silently

    def both_dropped(now: Scrape) -> bool:
        return moved(before, now, "presence_messages_received_total", type="rate_limited") == 2

    after = await scrape_until(both_dropped)

    assert moved(before, after, "presence_messages_received_total", type="ping") == 1
    assert moved(before, after, "presence_bytes_received_total", type="rate_limited") > 0
    assert moved(before, after, "presence_message_errors_total", reason="RATE_LIMITED") == 2
    blocked = moved(
        before, after, "presence_rate_limit_decisions_total", limiter="message", outcome="blocked"
    )
    assert blocked == 2
    await alice.close()


# --- latency --------------------------------------------------------------------


async def test_processing_and_delivery_latency_are_observed_as_messages_flow() -> None:
    alice, bob = await pair("m-latency")
    before = await scrape()
    await alice.send(chat("timed"))
    await bob.recv_kind("chat_message")
    after = await scrape()

    assert moved(before, after, "presence_processing_latency_seconds_count") == 1
    assert moved(before, after, "presence_processing_latency_seconds_sum") > 0
    assert moved(before, after, "presence_delivery_latency_seconds_count") == 1
    # The chat was stamped at its arrival and sent within the test: well under 5 s.
    assert moved(before, after, "presence_delivery_latency_seconds_bucket", le="5.0") == 1
    await alice.close()
    await bob.close()


async def test_a_client_answering_the_server_ping_yields_one_rtt_sample(
    presence_conf: Callable[..., None],
) -> None:
    presence_conf(RTT_PROBE_SECONDS=0.2)
    alice, bob = await pair("m-rtt")
    before = await scrape()
    for attempt in range(3):  # a new probe may replace the one being answered
        probe = await alice.recv_kind("ping")
        assert probe.type == pb.PING and probe.seq == 0
        echoed = probe.ping.client_time_ms
        await alice.send(pb.Message(pong=pb.Pong(client_time_ms=echoed + 1)))  # not our probe
        await alice.send(pb.Message(pong=pb.Pong(client_time_ms=echoed)))
        await alice.send(pb.Message(pong=pb.Pong(client_time_ms=echoed)))  # answered already
        await acked(alice, f"sync-{attempt}")
        after = await scrape()
        if moved(before, after, "presence_client_rtt_seconds_count"):
            break

    assert moved(before, after, "presence_client_rtt_seconds_count") == 1
    assert moved(before, after, "presence_messages_received_total", type="pong") >= 3
    assert moved(before, after, "presence_messages_sent_total", type="ping") >= 2
    # Bob ignores the probes and goes on as before.
    await bob.send(chat("still here"))
    assert (await alice.recv_kind("chat_message")).chat_message.message == "still here"
    await alice.close()
    await bob.close()


async def test_rtt_probes_are_off_with_a_zero_interval(
    presence_conf: Callable[..., None],
) -> None:
    presence_conf(RTT_PROBE_SECONDS=0.0)
    alice = await joined("m-no-probes", "alice")

    assert get_prober().task is None
    await alice.close()


async def test_latency_tracking_off_keeps_the_latency_histograms_still(
    presence_conf: Callable[..., None],
) -> None:
    presence_conf(LATENCY_TRACKING_ENABLED=False, RTT_PROBE_SECONDS=0.05)
    before = await scrape()
    alice, bob = await pair("m-untracked")
    await alice.send(pose(1.0))
    await bob.recv_kind("position_update")
    await alice.send(chat("untimed"))
    await bob.recv_kind("chat_message")
    after = await scrape()

    assert get_prober().task is None  # no probes without tracking
    for histogram in ("processing_latency", "delivery_latency", "client_rtt"):
        assert moved(before, after, f"presence_{histogram}_seconds_count") == 0
    assert moved(before, after, "presence_messages_received_total", type="chat_message") == 1
    report = (await AsyncClient().get("/metrics/report")).content.decode()
    assert "latency tracking is off" in report
    assert re.search(r"^  processing: +no samples$", report, re.MULTILINE)
    await alice.close()
    await bob.close()


async def test_report_keeps_at_most_metrics_sample_size_samples(
    presence_conf: Callable[..., None],
) -> None:
    presence_conf(METRICS_SAMPLE_SIZE=2)
    alice, bob = await pair("m-samples")
    for n in range(5):
        await alice.send(chat(f"line {n}"))
        await bob.recv_kind("chat_message")
    report = (await AsyncClient().get("/metrics/report")).content.decode()

    assert "the latest 2 samples of each kind" in report
    assert re.search(r"^  processing: .*\(samples: 2\)$", report, re.MULTILINE)
    assert re.search(r"^  delivery: .*\(samples: 2\)$", report, re.MULTILINE)
    await alice.close()
    await bob.close()


# --- the report -----------------------------------------------------------------

REPORT_LINES = [
    r"Performance Report",
    r"Uptime: \d+ s",
    r"Connections\n  active: (?P<active>\d+)\n  total: (?P<total>\d+)\n  errors: \d+",
    r"Messages\n  sent: \d+\n  received: (?P<received>\d+)\n  errors: \d+",
    r"Bytes\n  sent: \d+\n  received: \d+",
    r"Rooms\n  active: (?P<rooms>\d+)",
    r"Latency \(ms; the latest \d+ samples of each kind, this process\)",
    r"  processing: +avg \d+\.\d{3}  p50 \d+\.\d{3}  p99 \d+\.\d{3}  \(samples: \d+\)",
    r"  delivery: +avg \d+\.\d{3}  p50 \d+\.\d{3}  p99 \d+\.\d{3}  \(samples: \d+\)",
    r"  rtt: +(avg \d+\.\d{3}  p50 \d+\.\d{3}  p99 \d+\.\d{3}  \(samples: \d+\)|no samples)",
]


async def test_report_has_every_section_with_numbers_that_match_the_metrics() -> None:
    alice, bob = await pair("m-report")
    await alice.send(chat("for the report"))
    await bob.recv_kind("chat_message")
    response = await AsyncClient().get("/metrics/report")
    metrics = await scrape()

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain")
    text = response.content.decode()
    found: dict[str, str] = {}
    for pattern in REPORT_LINES:
        match = re.search(f"^{pattern}$", text, re.MULTILINE)
        assert match, f"no {pattern!r} in:\n{text}"
        found.update({k: v for k, v in match.groupdict().items() if v is not None})
    assert int(found["active"]) == metrics.value("presence_connections_active")
    assert int(found["rooms"]) == metrics.value("presence_rooms_active")
    assert int(found["total"]) >= 2 and int(found["received"]) >= 1
    await alice.close()
    await bob.close()


# --- who may read the metrics ----------------------------------------------------


@pytest.mark.parametrize("address", ["127.0.0.1", "10.4.5.6", "172.30.83.1", "192.168.1.9"])
def test_metrics_are_served_to_the_internal_network_by_default(address: str) -> None:
    for path in ("/metrics", "/metrics/report"):
        assert Client(REMOTE_ADDR=address).get(path).status_code == 200


@pytest.mark.parametrize("address", ["203.0.113.5", "8.8.8.8", "2001:db8::1"])
def test_metrics_are_forbidden_to_public_addresses_by_default(address: str) -> None:
    for path in ("/metrics", "/metrics/report"):
        response = Client(REMOTE_ADDR=address).get(path)
        assert response.status_code == 403
        assert b"presence_" not in response.content


async def test_an_empty_network_list_serves_the_metrics_to_no_one(
    presence_conf: Callable[..., None],
) -> None:
    presence_conf(METRICS_ALLOWED_NETWORKS=())
    assert (await AsyncClient().get("/metrics")).status_code == 403


async def test_metrics_are_forbidden_outside_the_allowed_networks(
    presence_conf: Callable[..., None],
) -> None:
    presence_conf(METRICS_ALLOWED_NETWORKS=("10.0.0.0/8", "2001:db8::/32"))
    for path in ("/metrics", "/metrics/report"):
        response = await AsyncClient().get(path)
        assert response.status_code == 403
        assert b"presence_" not in response.content


async def test_metrics_are_served_inside_the_allowed_networks(
    presence_conf: Callable[..., None],
) -> None:
    presence_conf(METRICS_ALLOWED_NETWORKS=("10.0.0.0/8", "127.0.0.0/8"))
    for path in ("/metrics", "/metrics/report"):
        assert (await AsyncClient().get(path)).status_code == 200


async def test_a_client_behind_a_trusted_proxy_is_judged_by_x_forwarded_for(
    presence_conf: Callable[..., None],
) -> None:
    presence_conf(METRICS_ALLOWED_NETWORKS=("10.0.0.0/8",), TRUSTED_PROXIES=("127.0.0.1",))
    inside = await AsyncClient().get("/metrics", headers={"X-Forwarded-For": "10.1.2.3"})
    outside = await AsyncClient().get("/metrics", headers={"X-Forwarded-For": "192.0.2.7"})

    assert (inside.status_code, outside.status_code) == (200, 403)


async def test_x_forwarded_for_from_an_untrusted_peer_is_ignored(
    presence_conf: Callable[..., None],
) -> None:
    presence_conf(METRICS_ALLOWED_NETWORKS=("10.0.0.0/8",))
    response = await AsyncClient().get("/metrics", headers={"X-Forwarded-For": "10.1.2.3"})

    assert response.status_code == 403


def test_a_malformed_allowed_network_is_refused_at_start_up() -> None:
    with pytest.raises(ImproperlyConfigured, match="METRICS_ALLOWED_NETWORKS"):
        build({"METRICS_ALLOWED_NETWORKS": ("10.0.0.0/33",)})
