"""Drops and failures of the channel layer are counted, never silent."""

from __future__ import annotations

from channels_redis.core import RedisChannelLayer
from prometheus_client import REGISTRY

from presence import metrics
from presence.cluster.hub import Hub
from presence.protocol import pb
from presence.protocol.room import Broadcast
from tests.conftest import closed_redis_url


def _sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_the_core_layers_over_capacity_drops_are_counted(
    redis_url: str, redis_prefix: str
) -> None:
    metrics.count_core_layer_drops()
    layer = RedisChannelLayer(
        hosts=[{"address": redis_url}], prefix=f"{redis_prefix}:layer:", capacity=2, expiry=10
    )
    channel = await layer.new_channel()
    await layer.group_add("room.full", channel)
    before = _sample("presence_channel_layer_drops_total", reason="over_capacity")
    try:
        for n in range(5):  # nobody reads: the third and later sends are over capacity
            await layer.group_send("room.full", {"type": "presence.fanout", "n": n})
    finally:
        await layer.flush()
        await layer.close_pools()
    dropped = _sample("presence_channel_layer_drops_total", reason="over_capacity") - before
    assert dropped == 3


async def test_a_failed_group_send_is_counted(redis_prefix: str) -> None:
    layer = RedisChannelLayer(hosts=[{"address": closed_redis_url()}], prefix="x")
    hub = Hub(layer, instance_id="lonely")
    before = _sample("presence_channel_layer_failures_total", operation="group_send")
    chat = Broadcast(pb.Message(chat_message=pb.ChatMessage(message="hi")), True)
    try:
        await hub.publish("room", [chat])  # queued: the caller never waits for the layer
        await hub.publisher.drained()
        assert hub.degraded  # the failure closed every local member with 4012
    finally:
        await layer.close_pools()
    # Each failed attempt counts: the send and its one quick retry.
    assert _sample("presence_channel_layer_failures_total", operation="group_send") - before == 2
