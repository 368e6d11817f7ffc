"""``/metrics`` and ``/metrics/report``, and who may read them.

Only clients in ``PRESENCE_METRICS_ALLOWED_NETWORKS`` (by default loopback
and the private ranges) get an answer, anyone else 403. The client is the
peer, or behind ``TRUSTED_PROXIES`` the address in ``X-Forwarded-For``, as
for the WebSocket limits (:func:`presence.transport.ratelimits.client_ip`).

The report reads the same registry as the Prometheus export: with
``PROMETHEUS_MULTIPROC_DIR`` its counts are every process's on the host; its
latency percentiles come from this process's samples.
"""

from __future__ import annotations

import functools
import ipaddress
import time
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from prometheus_client import REGISTRY, CollectorRegistry, multiprocess
from prometheus_client.registry import Collector

from presence import metrics
from presence.conf import presence_settings
from presence.latency import LATENCY_KINDS, Summary
from presence.protocol.codes import CloseCode
from presence.transport.ratelimits import in_networks, meta_client_ip, trusted_networks

View = Callable[..., HttpResponse]
# Close codes that end a connection the ordinary way; any other is an error.
NORMAL_CLOSES = frozenset(
    str(int(code)) for code in (CloseCode.NORMAL, 1001, 1005, CloseCode.GOING_AWAY)
)


def metrics_client_allowed(request: HttpRequest) -> bool:
    """Whether the client of ``request`` may read the metrics."""
    conf = presence_settings()
    try:
        address = ipaddress.ip_address(
            meta_client_ip(request.META, frozenset(conf.TRUSTED_PROXIES))
        )
    except ValueError:  # no address, or a unix socket: not in any network
        return False
    networks = trusted_networks(frozenset(conf.METRICS_ALLOWED_NETWORKS))
    return in_networks(address, networks)


def metrics_access(view: View) -> View:
    """Answer ``view`` only to clients in ``METRICS_ALLOWED_NETWORKS``."""

    @functools.wraps(view)
    def guarded(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not metrics_client_allowed(request):
            return HttpResponse(
                "metrics are not served to this address\n",
                status=403,
                content_type="text/plain; charset=utf-8",
            )
        return view(request, *args, **kwargs)

    return guarded


def export_registry() -> Collector:
    """The registry ``/metrics`` exports: every process's with ``PROMETHEUS_MULTIPROC_DIR``."""
    if not getattr(settings, "PROMETHEUS_MULTIPROC_DIR", ""):
        return REGISTRY
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    return registry


def sample_totals(registry: Collector, prefix: str = "presence_") -> dict[str, float]:
    """Every sample of the ``prefix`` families, summed over processes, keyed by name and labels.

    Keys look like ``presence_connections_total{outcome=accepted}``; a sample
    without labels is keyed by its name alone.
    """
    totals: dict[str, float] = {}
    for family in registry.collect():
        if not family.name.startswith(prefix):
            continue
        for sample in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()) if k != "pid")
            key = f"{sample.name}{{{labels}}}" if labels else sample.name
            totals[key] = totals.get(key, 0.0) + sample.value
    return totals


def _sum(totals: dict[str, float], name: str, *, unless: frozenset[str] = frozenset()) -> int:
    """The sum of ``name``'s samples, leaving out those whose label value is in ``unless``."""
    total = 0.0
    for key, value in totals.items():
        base, _, labels = key.partition("{")
        if base == name and labels.rstrip("}").partition("=")[2] not in unless:
            total += value
    return round(total)


def _latency_line(kind: str, summary: Summary | None) -> str:
    if summary is None:
        return f"  {kind + ':':<12} no samples"
    ms = 1000.0
    return (
        f"  {kind + ':':<12} avg {summary.avg * ms:.3f}  p50 {summary.p50 * ms:.3f}"
        f"  p99 {summary.p99 * ms:.3f}  (samples: {summary.count})"
    )


_CAUSES = ("overflow", "unacked", "outbox")
_SLOW_CAUSES = [(c, frozenset(_CAUSES) - {c}) for c in _CAUSES]


def render_report(totals: dict[str, float], *, uptime_seconds: float) -> str:
    """The "Performance Report" text from the metric ``totals`` and this process's samples."""
    samples = metrics.latency_samples()
    lines = [
        "Performance Report",
        "==================",
        f"Uptime: {uptime_seconds:.0f} s",
        "",
        "Connections",
        f"  active: {_sum(totals, 'presence_connections_active')}",
        f"  total: {_sum(totals, 'presence_connections_total')}",
        # Refused handshakes and closes with an error code (they are refusals' codes too).
        f"  errors: {_sum(totals, 'presence_disconnections_total', unless=NORMAL_CLOSES)}",
        "",
        "Messages",
        f"  sent: {_sum(totals, 'presence_messages_sent_total')}",
        f"  received: {_sum(totals, 'presence_messages_received_total')}",
        f"  errors: {_sum(totals, 'presence_message_errors_total')}",
        "",
        "Bytes",
        f"  sent: {_sum(totals, 'presence_bytes_sent_total')}",
        f"  received: {_sum(totals, 'presence_bytes_received_total')}",
        "",
        "Rooms",
        f"  active: {_sum(totals, 'presence_rooms_active')}",
        "",
        "Reliable delivery",
        f"  re-sent: {_sum(totals, 'presence_reliable_resends_total')}",
        f"  replayed: {_sum(totals, 'presence_replayed_messages_total')}",
        f"  duplicates dropped: {_sum(totals, 'presence_duplicate_messages_total')}",
        f"  resumed: {_sum(totals, 'presence_resumes_total', unless=frozenset({'resync'}))}",
        f"  resync: {_sum(totals, 'presence_resumes_total', unless=frozenset({'resumed'}))}",
        "  slow consumer closes (4009): "
        + ", ".join(
            f"{cause} {_sum(totals, 'presence_slow_consumer_closes_total', unless=others)}"
            for cause, others in _SLOW_CAUSES
        ),
        "",
        f"Latency (ms; the latest {samples.processing.size} samples of each kind, this process)",
        *(_latency_line(kind, samples.of(kind).summary()) for kind in LATENCY_KINDS),
    ]
    if not presence_settings().LATENCY_TRACKING_ENABLED:
        lines.append("  (latency tracking is off: LATENCY_TRACKING_ENABLED=false)")
    return "\n".join(lines) + "\n"


@metrics_access
def performance_report(request: HttpRequest) -> HttpResponse:
    """``GET /metrics/report``: the human-readable Performance Report."""
    text = render_report(
        sample_totals(export_registry()), uptime_seconds=time.time() - metrics.STARTED
    )
    return HttpResponse(text, content_type="text/plain; charset=utf-8")
