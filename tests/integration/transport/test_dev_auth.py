"""Development mode at the door: every bare-user_id connection counted, one warning per process."""

from __future__ import annotations

import logging

import pytest
from django.test import AsyncClient
from prometheus_client.parser import text_string_to_metric_families

from presence import auth
from tests.clients.communicator import ProtocolClient

pytestmark = pytest.mark.django_db(transaction=True)

COUNTER = "presence_dev_auth_connections_total"


async def dev_auth_count() -> float:
    response = await AsyncClient().get("/metrics")
    assert response.status_code == 200
    for family in text_string_to_metric_families(response.content.decode()):
        for sample in family.samples:
            if sample.name == COUNTER:
                return float(sample.value)
    return 0.0


async def test_development_mode_connections_are_counted_and_logged_once(
    auth_log: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(auth, "_dev_mode_warned", False)  # as in a fresh process
    before = await dev_auth_count()

    clients = [ProtocolClient(f"/ws/dev-auth?user_id={name}") for name in ("ann", "bo", "cy")]
    for client in clients:
        await client.join()
    after = await dev_auth_count()
    for client in clients:
        await client.close()

    assert after - before == 3
    warnings = [r.getMessage() for r in auth_log.records if r.levelno == logging.WARNING]
    assert warnings.count(auth.DEV_MODE_WARNING) == 1
