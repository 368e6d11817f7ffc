"""Plain HTTP views: liveness, readiness and the browser client page."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable

from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.middleware.csrf import get_token
from django.shortcuts import render

from presence import metrics
from presence.cluster.instance import get_hub
from presence.conf import presence_settings
from presence.protocol import SERVER_VERSION

READY_TIMEOUT_SECONDS = 1.0  # PROTOCOL.md section 1: a round trip within a second


def health(request: HttpRequest) -> JsonResponse:
    """Liveness: the process answers; no dependency is checked."""
    return JsonResponse(
        {
            "status": "healthy",
            "service": "graphwiz-presence",
            "version": SERVER_VERSION,
            "uptime_seconds": round(time.time() - metrics.STARTED, 3),
        }
    )


def _database_answers() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")


async def _database() -> None:
    await database_sync_to_async(_database_answers)()


async def _channel_layer() -> None:
    """A message sent to a new channel of this process comes back."""
    layer = get_channel_layer()
    if layer is None:
        raise RuntimeError("no channel layer configured")
    # BaseChannelLayer's abstract new_channel takes no prefix; the layers that
    # run (channels_redis, in-memory) do.
    channel = await layer.new_channel(prefix="presence-ready.")  # type: ignore[call-arg]
    token = uuid.uuid4().hex
    await layer.send(channel, {"type": "presence.ready", "token": token})
    message = await layer.receive(channel)
    if message.get("token") != token:
        raise RuntimeError("the channel layer returned another message")


async def _registry() -> None:
    ping = getattr(get_hub().registry, "ping", None)
    if ping is not None:  # the Redis registry; the in-process one cannot fail
        await ping()


READINESS_CHECKS: dict[str, Callable[[], Awaitable[None]]] = {
    "database": _database,
    "channel_layer": _channel_layer,
    "registry": _registry,
}


async def _check(check: Callable[[], Awaitable[None]]) -> str:
    try:
        await asyncio.wait_for(check(), READY_TIMEOUT_SECONDS)
    except TimeoutError:
        return f"no answer within {READY_TIMEOUT_SECONDS:g} s"
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"[:200]
    return "ok"


async def ready(request: HttpRequest) -> JsonResponse:
    """Readiness: the database answers and the channel layer (Redis) makes a round trip.

    200 when every check passes; 503 naming the ones that failed.
    """
    names = list(READINESS_CHECKS)
    results = await asyncio.gather(*(_check(READINESS_CHECKS[n]) for n in names))
    checks = dict(zip(names, results, strict=True))
    failed = [name for name, result in checks.items() if result != "ok"]
    body = {"status": "unavailable" if failed else "ready", "failed": failed, "checks": checks}
    return JsonResponse(body, status=503 if failed else 200)


def client_page(request: HttpRequest) -> HttpResponse:
    """The browser client (templates/index.html + presence/static/presence/page.js).

    The page learns how to sign in from ``page_config``: a bare user id in
    development mode, the session's user (a token from
    ``POST /api/token/session/``), or a login form posting to ``/api/token/``.
    """
    user = request.user
    signed_in = bool(user.is_authenticated)
    config = {
        "devAuth": presence_settings().DEV_AUTH,
        "username": user.get_username() if signed_in else "",
        "csrfToken": get_token(request),  # also sets the CSRF cookie the endpoint checks
    }
    return render(request, "index.html", {"page_config": config})
