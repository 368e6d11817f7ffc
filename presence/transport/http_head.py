"""The request head deadline both servers' HTTP guards share, and their 408 answer.

uvicorn (``presence/transport/uvicorn_http.py``) and daphne
(``presence/transport/daphne_http.py``) each held a socket that sent nothing,
or half a request head, for ever. Both give a head
``PRESENCE["HTTP_HEAD_TIMEOUT_SECONDS"]`` seconds (default
:data:`HEAD_TIMEOUT_SECONDS`) to arrive whole, counted from the connection or
from the previous response on a kept-alive connection, and answer
:data:`REQUEST_TIMEOUT` and close when it does not. No Django or server
imports here: ``graphwiz/settings.py`` and ``presence/conf.py`` read the default.
"""

from __future__ import annotations

# Seconds. Browsers and WebSocket clients send the whole head in one write the
# moment they connect; 10 s leaves a slow mobile link many round trips, while
# a descriptor held by a client that never finishes is freed within 10 s.
HEAD_TIMEOUT_SECONDS = 10.0

_TIMEOUT_TEXT = b"request head not complete in time: send the whole request head at once\n"
# The whole answer to a late head: status, headers and a body that says what to do.
REQUEST_TIMEOUT = (
    b"HTTP/1.1 408 Request Timeout\r\ncontent-type: text/plain; charset=utf-8\r\n"
    b"connection: close\r\ncontent-length: %d\r\n\r\n%s" % (len(_TIMEOUT_TEXT), _TIMEOUT_TEXT)
)
