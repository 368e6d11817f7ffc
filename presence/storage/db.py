"""Surviving a dropped database connection (PostgreSQL restarted, backend killed).

Django checks a persistent connection before reusing it when
``CONN_HEALTH_CHECKS`` is on (graphwiz/settings.py); a connection that dies
between that check and a write still fails the write. :func:`retried_once`
closes the broken connection and runs the write once more on a fresh one,
so a chat line is stored rather than lost.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import ParamSpec, TypeVar

from django.db import InterfaceError, OperationalError, connection

logger = logging.getLogger(__name__)

P = ParamSpec("P")
T = TypeVar("T")


def retried_once(write: Callable[P, T]) -> Callable[P, T]:
    """Run ``write``; if the connection broke under it, reconnect and run it once more.

    Only connection failures (``OperationalError``, ``InterfaceError``) are
    retried, and only outside an enclosing transaction; anything else, or a
    second failure, propagates.
    """

    @functools.wraps(write)
    def run(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return write(*args, **kwargs)
        except (OperationalError, InterfaceError) as exc:
            if connection.in_atomic_block:
                raise  # the caller's transaction is gone: it must decide
            logger.warning(
                "database connection lost during %s (%s); retrying once",
                write.__name__,
                type(exc).__name__,
            )
            connection.close()
            return write(*args, **kwargs)

    return run
