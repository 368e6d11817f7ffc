"""``manage.py presence_bots ROOM --count N --hz F``: bots walking and chatting.

For demos and load: each bot is a presence.client connection that walks a
circle, sending ``--hz`` poses a second, and says a line every
``--chat-every`` seconds. Runs ``--duration`` seconds, or until Ctrl-C.
With ``--user``, bot ``i`` joins as ``{user}-{i}`` (development mode).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from presence.client import Backoff, PresenceClient
from presence.client.cli import run_bots
from presence.management.commands._client_options import add_connection_options, credentials

MAX_BOTS = 1000  # one process; the server's per-IP attempt limit applies as well


class Command(BaseCommand):
    help = "Start N bots in ROOM that walk in circles and chat."

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        add_connection_options(parser)
        parser.add_argument("--count", type=int, default=5, help=f"bots, 1..{MAX_BOTS}")
        parser.add_argument("--hz", type=float, default=5.0, help="poses per second per bot")
        parser.add_argument("--chat-every", type=float, default=10.0, help="seconds; 0: never")
        parser.add_argument("--duration", type=float, default=None, help="seconds (default: ever)")

    def handle(self, *args: Any, **options: Any) -> None:
        count, hz = options["count"], options["hz"]
        if not 1 <= count <= MAX_BOTS:
            raise CommandError(f"--count must be 1..{MAX_BOTS}")
        if not 0 < hz <= 60:
            raise CommandError("--hz must be more than 0 and at most 60")
        if not options["user"] and not (options["token"] or options["username"]):
            options["user"] = "bot"
        base = credentials(options)

        def make(index: int) -> PresenceClient:
            who = dict(base)
            if "user_id" in who:
                who["user_id"] = f"{who['user_id']}-{index}"
            return PresenceClient(
                options["url"],
                options["room"],
                display_name=f"Bot {index}",
                format=options["format"],
                pose_hz=hz,
                backoff=Backoff(initial_s=0.5, max_s=10),
                **who,
            )

        def write(line: str) -> None:
            self.stdout.write(line)

        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(
                run_bots(
                    make,
                    count=count,
                    hz=hz,
                    duration=options["duration"],
                    chat_every=options["chat_every"],
                    out=write,
                )
            )
