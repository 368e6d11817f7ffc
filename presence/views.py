"""Plain HTTP views: liveness and the browser client page."""

from __future__ import annotations

import time

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render

from presence.protocol import SERVER_VERSION

_STARTED = time.time()


def health(request: HttpRequest) -> JsonResponse:
    """Liveness: the process answers; no dependency is checked."""
    return JsonResponse(
        {
            "status": "healthy",
            "service": "graphwiz-presence",
            "version": SERVER_VERSION,
            "uptime_seconds": round(time.time() - _STARTED, 3),
        }
    )


def client_page(request: HttpRequest) -> HttpResponse:
    """The browser client: join a room and watch presence, chat and poses."""
    return render(request, "index.html")
