"""WebSocket URL patterns. Every ``/ws/...`` path reaches the consumer, which
answers a bad room id with close 4400 rather than a failed upgrade; every other
path gets an ``Error`` naming ``/ws/{room_id}`` and 4400, never an HTTP 500."""

from django.urls import re_path

from presence.transport.consumer import PresenceConsumer
from presence.transport.unrouted import UnroutedConsumer

# django-stubs types re_path's view as an HTTP view only; Channels' URLRouter
# routes ASGI applications through the same patterns, which the stubs cannot say.
websocket_urlpatterns = [
    re_path(r"^ws/(?P<room_id>.*)$", PresenceConsumer.as_asgi()),  # type: ignore[arg-type]
    # last: whatever the patterns above miss
    re_path(r"", UnroutedConsumer.as_asgi()),  # type: ignore[arg-type]
]
