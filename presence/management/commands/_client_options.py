"""Options shared by ``presence_client`` and ``presence_bots``."""

from __future__ import annotations

import argparse
import os
from typing import Any

from django.core.management.base import CommandError

from presence.client.cli import fetch_token, http_of


def add_connection_options(parser: argparse.ArgumentParser) -> None:
    """``ROOM``, ``--url``, ``--user``/``--token``/``--username``, ``--format``."""
    parser.add_argument("room", help="room id: 1-64 chars of [A-Za-z0-9._-]")
    parser.add_argument(
        "--url",
        default=os.environ.get("PRESENCE_URL", "ws://127.0.0.1:8083"),
        help="the service, ws(s)://host:port (default: $PRESENCE_URL or ws://127.0.0.1:8083)",
    )
    parser.add_argument("--user", default="", help="development mode: a bare user id")
    parser.add_argument("--token", default="", help="an access token (default: $PRESENCE_TOKEN)")
    parser.add_argument(
        "--username", default="", help="get tokens from /api/token/ (password: $PRESENCE_PASSWORD)"
    )
    parser.add_argument("--format", choices=("proto", "json"), default="proto")


def credentials(options: dict[str, Any]) -> dict[str, Any]:
    """The client's ``user_id``/``token`` keyword arguments from the options."""
    token = options["token"] or os.environ.get("PRESENCE_TOKEN", "")
    if options["username"]:
        password = os.environ.get("PRESENCE_PASSWORD")
        if password is None:
            raise CommandError("--username needs the password in $PRESENCE_PASSWORD")
        http_url, username = http_of(options["url"]), options["username"]
        return {"token": lambda: fetch_token(http_url, username, password)}
    if token:
        return {"token": token}
    if options["user"]:
        return {"user_id": options["user"]}
    raise CommandError("say who joins: --user ID (development mode), --token or --username")
