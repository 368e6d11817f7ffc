"""Credentials never reach a log line: query parameters are redacted on the way in.

Servers log request lines with their query string: uvicorn's access log and
its WebSocket lines, daphne's access log, Django's ``runserver``. A token in
``?auth_token=`` would be written out in full. Two hooks cover every server
the project ships, whatever its logging configuration:

* :func:`install_log_redaction` replaces the process's ``LogRecord`` factory
  (the standard library's documented hook), so every record of every logger —
  uvicorn's, daphne's ``runserver``, Django's, ours — has its sensitive
  values replaced before any handler or formatter sees it. It runs from the
  app's ``ready()``, before a server serves its first request.
* :func:`redacting_action_logger` wraps daphne's access log, which writes to a
  stream rather than through :mod:`logging` (see ``graphwiz/daphne_cli.py``).

Only values are replaced (``auth_token=[REDACTED]``): the path and the other
parameters stay, so a line still says what was asked for.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import unquote_plus

REDACTED = "[REDACTED]"
# Query parameters whose values are credentials (lower case, after percent-decoding).
SENSITIVE_PARAMETERS = frozenset(
    {"auth_token", "token", "access", "refresh", "session_id", "sessionid", "password"}
)
# A parameter name followed by ``=``, not preceded by another name character
# (so ``?``, ``&``, ``;``, ``,``, ``|``, white space, the start, or another
# value's ``=``). The name may be percent-encoded (``auth%5Ftoken`` is what a
# query parser reads as ``auth_token``) or start with ``+`` (a space).
_NAME = re.compile(r"(?<![\w.%+~-])(?P<name>[\w.%+~-]{1,64})=")
# A sensitive value runs to the next ``&`` as a query parser reads it (quotes,
# ``#``, ``?`` and ``;`` included), or to white space or ``"`` (the end of a
# request line as servers log it).
_VALUE_END = re.compile(r'[&\s"]')
# A JSON Web Token (simplejwt's access and refresh tokens) wherever it stands: in
# a path, a bare query, after an odd separator. Its header is base64url JSON,
# so it starts with ``eyJ``; header and claims at least (dots maybe encoded).
_JWT = re.compile(r"eyJ[\w-]{4,}(?:\.|%2[Ee])[\w-]{4,}(?:(?:\.|%2[Ee])[\w-]*)?")


def _sensitive(name: str) -> bool:
    return unquote_plus(name).strip().lower() in SENSITIVE_PARAMETERS


def redact(text: str) -> str:
    """``text`` with every sensitive ``name=value`` value and every JWT replaced."""
    if "=" not in text and "eyJ" not in text:  # the common case: nothing to look at
        return text
    parts: list[str] = []
    done = 0  # text[:done] is in parts
    for match in _NAME.finditer(text):
        if match.start() < done or not _sensitive(match.group("name")):
            continue
        end = _VALUE_END.search(text, match.end())
        parts += [text[done : match.end()], REDACTED]
        done = end.start() if end else len(text)
    if parts:
        text = "".join(parts) + text[done:]
    return _JWT.sub(REDACTED, text) if "eyJ" in text else text


def _redact_value(value: Any) -> Any:
    return redact(value) if isinstance(value, str) else value


def redact_args(args: Any) -> Any:
    """A log record's ``args`` (a tuple or a mapping) with their strings redacted."""
    if isinstance(args, tuple):
        return tuple(_redact_value(arg) for arg in args)
    if isinstance(args, Mapping):
        return {key: _redact_value(value) for key, value in args.items()}
    return args


def redact_record(record: logging.LogRecord) -> None:
    """Redact ``record`` in place: its arguments, and its message once formatted.

    Arguments are redacted one by one and keep their places, because some
    formatters read them directly (uvicorn's access formatter unpacks them).
    When a secret shows only in the formatted message (``"token=%s" % value``),
    the record carries that redacted message instead.
    """
    if record.args:
        record.args = redact_args(record.args)
    try:
        message = record.getMessage()
    except Exception:  # a broken format string: logging reports it itself later
        return
    clean = redact(message)
    if clean != message:
        record.msg, record.args = clean, ()


_installed = False


def install_log_redaction() -> None:
    """Make every log record of this process pass through :func:`redact_record` (once)."""
    global _installed
    if _installed:
        return
    make_record = logging.getLogRecordFactory()

    def redacting_factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = make_record(*args, **kwargs)
        redact_record(record)
        return record

    logging.setLogRecordFactory(redacting_factory)
    _installed = True


ActionLogger = Callable[[str, str, dict[str, Any]], None]


def redacting_action_logger(inner: ActionLogger) -> ActionLogger:
    """Daphne's ``action_logger`` ``inner``, given redacted details (its access log)."""

    def log_action(protocol: str, action: str, details: dict[str, Any]) -> None:
        inner(protocol, action, redact_args(details))

    return log_action
