# GraphWiz presence: one uvicorn process serving HTTP and WebSockets on 8083.
# Migrations are a separate step, run once per deploy (never by each instance):
#   docker run --rm -e DATABASE_URL=... IMAGE python manage.py migrate --noinput
# (docker-compose.yml's one-shot "migrate" service does it).
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DJANGO_SETTINGS_MODULE=graphwiz.settings

WORKDIR /app

# The runtime requirements only (tests, bench and lint tools are in
# requirements-dev.txt), first, so a code change does not reinstall every wheel.
COPY requirements.txt ./
RUN pip install -r requirements.txt

RUN useradd --create-home --uid 10001 graphwiz
COPY --chown=graphwiz:graphwiz . .
USER graphwiz

EXPOSE 8083

# 64 KiB WebSocket limits: the same numbers as DAPHNE_WEBSOCKET_MAX_* in
# graphwiz/settings.py and the Makefile (PROTOCOL.md section 8); the --ws class
# is uvicorn's websockets-sansio protocol with the frame guard
# (presence/transport/uvicorn_ws.py), the --http class gives a request head
# 10 s (presence/transport/uvicorn_http.py), as `make run` serves. Exec form:
# uvicorn is PID 1 and gets SIGTERM itself; it stops waiting for connections
# after 10 s, inside compose's stop_grace_period, so the shutdown still runs.
# --no-proxy-headers: X-Forwarded-For counts only from TRUSTED_PROXIES (the
# service decides), never from the addresses uvicorn trusts by default.
CMD ["uvicorn", "graphwiz.asgi:application", "--host", "0.0.0.0", "--port", "8083", \
     "--http", "presence.transport.uvicorn_http:GuardedH11Protocol", \
     "--ws", "presence.transport.uvicorn_ws:GuardedWebSocketProtocol", "--ws-max-size", "65536", "--ws-per-message-deflate", "false", \
     "--no-proxy-headers", "--loop", "uvloop", "--timeout-graceful-shutdown", "10"]
