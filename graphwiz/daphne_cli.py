"""daphne's command line, with credentials redacted from its access log.

``python -m graphwiz.daphne_cli [daphne's options] graphwiz.asgi:application``
takes exactly daphne's options. Daphne writes its access log straight to a
stream, not through :mod:`logging`, so the app's log redaction cannot reach
it; this entry point wraps the server's action logger instead, through the
``server_class`` hook of daphne's ``CommandLineInterface``. Every daphne
command line the project ships (``make run-daphne``, the benchmark, the
end-to-end tests) starts daphne this way.
"""

from __future__ import annotations

from typing import Any

from daphne.cli import CommandLineInterface
from daphne.server import Server

from presence.redact import redacting_action_logger


class RedactingServer(Server):  # type: ignore[misc]  # daphne is untyped
    """daphne's server, whose access log never shows a credential."""

    def __init__(self, *args: Any, action_logger: Any = None, **kwargs: Any) -> None:
        if action_logger is not None:
            action_logger = redacting_action_logger(action_logger)
        super().__init__(*args, action_logger=action_logger, **kwargs)


class RedactingCommandLineInterface(CommandLineInterface):  # type: ignore[misc]
    """daphne's command line, serving with :class:`RedactingServer`."""

    server_class = RedactingServer


if __name__ == "__main__":
    RedactingCommandLineInterface.entrypoint()
