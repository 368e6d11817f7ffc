"""Start-up with a bad configuration: one clear line and a non-zero exit, no traceback.

``manage.py``, ``graphwiz.asgi`` (uvicorn, daphne) and ``graphwiz.wsgi`` set
Django up inside :func:`exit_on_bad_configuration`. A bad environment value
(:class:`graphwiz.envparse.EnvError`) or any other ``ImproperlyConfigured``
becomes ``configuration error: <what and the rule>`` on standard error and
exit status 1, which is what an operator reading a container log needs; a
traceback through Django's settings loader says nothing more.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from django.core.exceptions import ImproperlyConfigured


@contextlib.contextmanager
def exit_on_bad_configuration() -> Iterator[None]:
    """Turn ``ImproperlyConfigured`` raised inside into ``SystemExit`` with its one-line text."""
    try:
        yield
    except ImproperlyConfigured as exc:
        text = " ".join(str(exc).split())  # one line, whatever the message
        raise SystemExit(f"configuration error: {text}") from None
