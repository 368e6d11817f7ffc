"""``manage.py presence_client ROOM``: join a room from a terminal.

Prints the room's events readably and sends each line typed on stdin as
chat; ``/quit`` or end of input leaves. Uses presence.client (resumes after
a cut, re-sends unanswered lines).
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from django.core.management.base import BaseCommand

from presence.client import PresenceClient
from presence.client.cli import run_terminal
from presence.management.commands._client_options import add_connection_options, credentials


class Command(BaseCommand):
    help = "Join a room from the terminal: print events, send stdin lines as chat."

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        add_connection_options(parser)
        parser.add_argument("--name", default="", help="display name")

    def handle(self, *args: Any, **options: Any) -> None:
        client = PresenceClient(
            options["url"],
            options["room"],
            display_name=options["name"],
            format=options["format"],
            **credentials(options),
        )
        out = self.stdout

        def write(line: str) -> None:
            out.write(line)
            out.flush()

        asyncio.run(run_terminal(client, out=write))
