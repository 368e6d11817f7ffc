"""WebSocket URL patterns. Every ``/ws/...`` path reaches the consumer, which
answers a bad room id with close 4400 rather than a failed upgrade."""

from django.urls import re_path

from presence.transport.consumer import PresenceConsumer

websocket_urlpatterns = [
    re_path(r"^ws/(?P<room_id>.*)$", PresenceConsumer.as_asgi()),
]
