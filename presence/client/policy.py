"""What a client does after a close (PROTOCOL.md section 7), and its backoff. Pure."""

from __future__ import annotations

import random as _random
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum


class Action(Enum):
    """What to do after a close."""

    STOP = "stop"
    RECONNECT = "reconnect"
    REFRESH = "refresh"  # get a new token, then reconnect
    WAIT = "wait"  # reconnect after the server's retry_after_ms


@dataclass(frozen=True, slots=True)
class CloseAction:
    """The section 7 row for one close code; ``resume``: ask for the session again."""

    action: Action
    resume: bool
    meaning: str


CLOSE_POLICY: dict[int, CloseAction] = {
    1000: CloseAction(Action.STOP, False, "normal"),
    4000: CloseAction(Action.RECONNECT, True, "server going away"),
    4003: CloseAction(Action.STOP, False, "unsupported data"),
    4007: CloseAction(Action.STOP, False, "invalid messages"),
    4008: CloseAction(Action.WAIT, True, "rate limit exceeded"),
    4009: CloseAction(Action.RECONNECT, True, "slow consumer"),
    4010: CloseAction(Action.STOP, False, "session resumed on another connection"),
    4011: CloseAction(Action.RECONNECT, True, "internal error"),
    4012: CloseAction(Action.RECONNECT, True, "backend unavailable"),
    4400: CloseAction(Action.STOP, False, "bad request"),
    4401: CloseAction(Action.REFRESH, False, "unauthorized"),
    4403: CloseAction(Action.STOP, False, "forbidden"),
    4408: CloseAction(Action.RECONNECT, False, "no credentials in time"),
    4423: CloseAction(Action.STOP, False, "room locked or full"),
    4429: CloseAction(Action.WAIT, True, "too many connection attempts"),
}


def close_action(code: int) -> CloseAction:
    """The section 7 decision; a code not in the table (1006 for a cut, 1001,
    1011, ...) means the connection was lost: reconnect with backoff, resume."""
    known = CLOSE_POLICY.get(code)
    if known is not None:
        return known
    meaning = "connection lost" if code == 1006 else f"closed {code}"
    return CloseAction(Action.RECONNECT, True, meaning)


class Backoff:
    """Exponential backoff with jitter, in seconds.

    Attempt ``n`` waits a random time between half and all of
    ``min(max_s, initial_s * factor**n)``, so clients cut by one event do not
    come back in step. ``reset()`` after a successful join.
    """

    def __init__(
        self,
        *,
        initial_s: float = 0.5,
        max_s: float = 30.0,
        factor: float = 2.0,
        random: Callable[[], float] = _random.random,
    ) -> None:
        self.initial_s = initial_s
        self.max_s = max_s
        self.factor = factor
        self.random = random
        self.attempt = 0

    def next(self) -> float:
        """The delay before the next attempt (seconds); counts the attempt."""
        ceiling = min(self.max_s, self.initial_s * self.factor**self.attempt)
        self.attempt += 1
        return ceiling / 2 + self.random() * ceiling / 2

    def reset(self) -> None:
        """A connection succeeded: the next delay is the shortest again."""
        self.attempt = 0
