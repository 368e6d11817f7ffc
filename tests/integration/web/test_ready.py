"""GET /ready: the database answers and a message makes a round trip through the layer."""

from __future__ import annotations

import json

import pytest
from django.test import AsyncClient

from tests.conftest import closed_redis_url, layer_config

pytestmark = pytest.mark.django_db(transaction=True)


async def _ready() -> tuple[int, dict[str, object]]:
    response = await AsyncClient().get("/ready")
    return response.status_code, json.loads(response.content)


async def test_ready_answers_200_when_every_part_answers(channel_layer_kind: str) -> None:
    status, body = await _ready()
    assert (status, body["status"], body["failed"]) == (200, "ready", [])
    assert body["checks"] == {"database": "ok", "channel_layer": "ok", "registry": "ok"}


@pytest.mark.parametrize("layer", ["core", "pubsub"])
async def test_ready_answers_503_naming_redis_when_it_is_unreachable(
    layer: str, settings, redis_prefix: str
) -> None:
    url = closed_redis_url()
    settings.CHANNEL_LAYERS = layer_config(
        "redis" if layer == "pubsub" else "core", url, redis_prefix
    )
    settings.PRESENCE = {
        **settings.PRESENCE,
        "REDIS_URL": url,
        "REDIS_CHANNEL_PREFIX": redis_prefix,
    }

    status, body = await _ready()

    assert (status, body["status"]) == (503, "unavailable")
    assert body["failed"] == ["channel_layer", "registry"]
    assert body["checks"]["database"] == "ok"  # type: ignore[index]
