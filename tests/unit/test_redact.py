"""Credentials in query strings never reach a log line (presence/redact.py)."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import pytest

from presence.redact import (
    REDACTED,
    SENSITIVE_PARAMETERS,
    install_log_redaction,
    redact,
    redact_record,
    redacting_action_logger,
)

SECRET = "eyJhbGciOiJIUzI1NiJ9.c2VjcmV0LXBheWxvYWQ.S1gnAtUrE-_x"


# --- redact -------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(SENSITIVE_PARAMETERS))
def test_every_sensitive_parameter_value_is_replaced(name: str) -> None:
    assert redact(f"/ws/lobby?{name}={SECRET}") == f"/ws/lobby?{name}={REDACTED}"


def test_the_path_and_other_parameters_are_kept() -> None:
    line = f"GET /ws/hall?user_id=7&auth_token={SECRET}&format=json&session_id=abc HTTP/1.1"

    assert redact(line) == (
        f"GET /ws/hall?user_id=7&auth_token={REDACTED}&format=json&session_id={REDACTED} HTTP/1.1"
    )


def test_names_are_matched_without_regard_to_case() -> None:
    assert SECRET not in redact(f"/x?Auth_Token={SECRET}&PASSWORD={SECRET}")


def test_a_percent_encoded_name_is_still_recognised() -> None:
    # parse_qsl reads "auth%5Ftoken" as "auth_token": the server would accept it.
    assert redact(f"/ws/a?auth%5Ftoken={SECRET}") == f"/ws/a?auth%5Ftoken={REDACTED}"


def test_semicolons_and_a_bare_query_string_separate_pairs_too() -> None:
    assert SECRET not in redact(f"room=a;token={SECRET}")
    assert redact(f"token={SECRET}&room=a") == f"token={REDACTED}&room=a"


def test_a_parameter_that_only_ends_in_a_sensitive_name_is_kept() -> None:
    assert (
        redact("/x?csrf_token_hint=abc&not_password=1") == "/x?csrf_token_hint=abc&not_password=1"
    )


def test_text_without_a_pair_is_returned_unchanged() -> None:
    text = "client c0a1 joined room hall"
    assert redact(text) is text


def test_an_empty_value_stays_empty_of_secrets() -> None:
    assert redact("/x?token=&a=1") == f"/x?token={REDACTED}&a=1"


# --- log records ----------------------------------------------------------------


def record(msg: str, *args: object) -> logging.LogRecord:
    return logging.LogRecord("uvicorn.access", logging.INFO, __file__, 1, msg, args, None)


def test_record_arguments_are_redacted_in_place_and_keep_their_types() -> None:
    # uvicorn's access formatter unpacks exactly these five arguments.
    rec = record(
        '%s - "%s %s HTTP/%s" %d', "127.0.0.1:5", "GET", f"/?auth_token={SECRET}", "1.1", 200
    )

    redact_record(rec)

    assert rec.args == ("127.0.0.1:5", "GET", f"/?auth_token={REDACTED}", "1.1", 200)


def test_a_mapping_argument_is_redacted() -> None:
    # daphne's runserver logs "%(path)s" with a dict of details.
    rec = logging.LogRecord(
        "django.channels.server",
        logging.INFO,
        __file__,
        1,
        "HTTP %(method)s %(path)s",
        ({"method": "GET", "path": f"/?token={SECRET}"},),
        None,
    )

    redact_record(rec)

    assert rec.getMessage() == f"HTTP GET /?token={REDACTED}"


def test_a_secret_that_appears_only_once_formatted_is_redacted() -> None:
    rec = record("asked with password=%s", SECRET)

    redact_record(rec)

    assert rec.getMessage() == f"asked with password={REDACTED}"


def test_a_record_without_secrets_is_left_alone() -> None:
    rec = record("client %s left room %s (%d)", "c1", "hall", 1000)

    redact_record(rec)

    assert (rec.msg, rec.args) == ("client %s left room %s (%d)", ("c1", "hall", 1000))


@pytest.fixture
def captured() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    logger = logging.getLogger("tests.redact.any-logger")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    try:
        yield logger, stream
    finally:
        logger.removeHandler(handler)


def test_once_installed_every_logger_of_the_process_writes_redacted_lines(
    captured: tuple[logging.Logger, io.StringIO],
) -> None:
    install_log_redaction()  # the app's ready() has already done it; a second call is a no-op
    install_log_redaction()
    logger, stream = captured

    logger.info('%s - "WebSocket %s" [accepted]', "127.0.0.1:1", f"/ws/a?session_id={SECRET}")

    assert SECRET not in stream.getvalue()
    assert f"session_id={REDACTED}" in stream.getvalue()


# --- daphne's access log ----------------------------------------------------------


def test_daphne_action_logger_gets_redacted_details() -> None:
    seen: list[tuple[str, str, dict[str, object]]] = []

    def inner(protocol: str, action: str, details: dict[str, object]) -> None:
        seen.append((protocol, action, details))

    log_action = redacting_action_logger(inner)
    log_action("http", "complete", {"path": f"/health?auth_token={SECRET}", "status": 200})

    assert seen == [("http", "complete", {"path": f"/health?auth_token={REDACTED}", "status": 200})]


# --- what a hostile or careless request line does with a credential -------------
# Found by sending real request lines to `make run` (uvicorn logs the raw query):
# each of these printed a valid access token in full.

JWT_LOOKALIKE = "eyJhbGciOiJIUzI1NiJ9.eyJ1c2VyX2lkIjoiNyJ9.c2lnbmF0dXJlLXBhcnQ"


@pytest.mark.parametrize(
    "line",
    [
        f"/ws/lobby?auth_token='{JWT_LOOKALIKE}'",  # a quote right after '='
        f"/ws/lobby?auth_token=<{JWT_LOOKALIKE}>",
        f"/ws/lobby?auth_token=?{JWT_LOOKALIKE}",
        f"/ws/lobby?auth_token=a#{JWT_LOOKALIKE}",
        f"/ws/lobby?+auth_token={JWT_LOOKALIKE}",  # the name after a '+' (a space)
        f"/ws/lobby?a=b,auth_token={JWT_LOOKALIKE}",  # other separators
        f"/ws/lobby?a=b|auth_token={JWT_LOOKALIKE}",
        f"/ws/lobby?a=auth_token={JWT_LOOKALIKE}",  # inside another value
        f"/ws/lobby?auth_token%3D{JWT_LOOKALIKE}",  # '=' percent-encoded
        f"/ws/lobby?{JWT_LOOKALIKE}",  # a bare query
        f"/ws/{JWT_LOOKALIKE}",  # a token pasted into the path
        f"/ws/lobby/{JWT_LOOKALIKE}/x",
        f'"WebSocket /ws/lobby?x={JWT_LOOKALIKE}" [accepted]',
    ],
)
def test_a_token_anywhere_in_a_request_line_is_redacted(line: str) -> None:
    clean = redact(line)

    assert "c2lnbmF0dXJlLXBhcnQ" not in clean  # no part of the signature
    assert "eyJ1c2VyX2lkIjoiNyJ9" not in clean  # nor of the claims
    assert REDACTED in clean


def test_a_sensitive_value_runs_to_the_next_ampersand_as_the_server_reads_it() -> None:
    # parse_qsl ends a value only at '&': so does the redaction.
    assert redact("/x?session_id=ab'cd#ef?gh&room=a") == f"/x?session_id={REDACTED}&room=a"


def test_a_jwt_header_alone_or_ordinary_words_are_not_mistaken_for_tokens() -> None:
    text = "client c0a1 joined room eyJ-lobby (key eyJhbGciOiJIUzI1NiJ9)"
    assert redact(text) == text
