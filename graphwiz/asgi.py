"""ASGI entry point: HTTP goes to Django, WebSockets to the presence consumer."""

import gc
import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "graphwiz.settings")
django_http = get_asgi_application()  # must load before anything imports models

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler  # noqa: E402

from presence.transport.lifespan import lifespan_app  # noqa: E402
from presence.transport.routing import websocket_urlpatterns  # noqa: E402

# Everything loaded so far lives as long as the process: keep it out of the
# cyclic collector's full passes, which otherwise stall every connection.
gc.collect()
gc.freeze()

application = ProtocolTypeRouter(
    {
        "http": ASGIStaticFilesHandler(django_http),
        "websocket": URLRouter(websocket_urlpatterns),
        "lifespan": lifespan_app,
    }
)
