"""WSGI entry point (HTTP only; WebSockets need graphwiz.asgi)."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "graphwiz.settings")
application = get_wsgi_application()
