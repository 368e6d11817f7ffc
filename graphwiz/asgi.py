"""ASGI entry point: HTTP goes to Django, WebSockets to the presence consumer."""

import gc
import os

from django.core.asgi import get_asgi_application

from graphwiz.startup import exit_on_bad_configuration

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "graphwiz.settings")
with exit_on_bad_configuration():
    django_http = get_asgi_application()  # must load before anything imports models

# Only now: these import models.
from channels.routing import ProtocolTypeRouter, URLRouter
from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler

from presence.transport import daphne_http, daphne_ws
from presence.transport.lifespan import lifespan_app
from presence.transport.routing import websocket_urlpatterns

# daphne (and runserver, daphne's) has no option for a WebSocket protocol class:
# its factory builds ours, which bounds the frames the application never sees.
# uvicorn is told on its command line (--ws presence.transport.uvicorn_ws:...).
daphne_ws.install()
# Nor for an HTTP channel class: its factory builds ours, which gives a request
# head a deadline (uvicorn: --http presence.transport.uvicorn_http:...).
daphne_http.install()

# Everything loaded so far lives as long as the process: keep it out of the
# cyclic collector's full passes, which otherwise stall every connection.
gc.collect()
gc.freeze()

application = ProtocolTypeRouter(
    {
        "http": ASGIStaticFilesHandler(django_http),
        # types-channels wants its own URLPattern subtype, which django-stubs'
        # re_path never returns (presence/transport/routing.py).
        "websocket": URLRouter(websocket_urlpatterns),  # type: ignore[arg-type]
        "lifespan": lifespan_app,
    }
)
