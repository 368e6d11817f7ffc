"""WSGI entry point (HTTP only; WebSockets need graphwiz.asgi)."""

import os

from django.core.wsgi import get_wsgi_application

from graphwiz.startup import exit_on_bad_configuration

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "graphwiz.settings")
with exit_on_bad_configuration():
    application = get_wsgi_application()
