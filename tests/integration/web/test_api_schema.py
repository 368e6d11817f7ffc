"""The OpenAPI schema at /api/schema/ and every /api/rooms/ endpoint checked against it.

schemathesis generates requests from the schema (bounded: a few examples per
operation, so the suite stays fast) and checks every answer: no server error,
a documented status, content type and body. The caller holds every room
permission; authentication failures are covered by test_rooms_http.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import schemathesis
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.core.management import call_command
from django.test import Client
from hypothesis import HealthCheck, given, settings
from rest_framework_simplejwt.tokens import AccessToken

from graphwiz.wsgi import application

MAX_EXAMPLES = 12  # per operation: seven operations, about ten seconds in all


# Every operation under /api/rooms/; a test below checks the schema has no other.
OPERATIONS = [
    ("GET", "/api/rooms/"),
    ("GET", "/api/rooms/{room_id}/"),
    ("GET", "/api/rooms/{room_id}/chat/"),
    ("POST", "/api/rooms/{room_id}/messages/"),
    ("POST", "/api/rooms/{room_id}/kick/"),
    ("POST", "/api/rooms/{room_id}/mute/"),
    ("POST", "/api/rooms/{room_id}/lock/"),
]


@pytest.fixture
def api_schema(settings: Any, transactional_db: None) -> Any:
    """The schema, loaded from the app (WSGI, in this thread).

    Transactional: the views' database calls close connections that sit in an
    open transaction (channels' database_sync_to_async), as a test case's would.
    """
    settings.DEBUG = False
    return schemathesis.openapi.from_wsgi("/api/schema/", application)


@pytest.fixture
def token(transactional_db: None) -> str:
    user = get_user_model().objects.create_user("operator")
    codenames = ("view_room", "announce", "moderate_room")
    user.user_permissions.add(*Permission.objects.filter(codename__in=codenames))
    return str(AccessToken.for_user(user))


# schemathesis's own pytest plugin does not run on pytest 9 (it reads a private
# attribute pytest renamed), so each operation's strategy is drawn here.
@pytest.mark.parametrize(("method", "path"), OPERATIONS, ids=[f"{m} {p}" for m, p in OPERATIONS])
def test_every_endpoint_answers_as_its_schema_says(
    method: str, path: str, api_schema: Any, token: str
) -> None:
    operation = api_schema[path][method]

    @given(case=operation.as_strategy())
    @settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        database=None,
    )
    def answers_as_documented(case: Any) -> None:
        case.call_and_validate(headers={"Authorization": f"Bearer {token}"})

    answers_as_documented()


def test_the_property_test_covers_every_room_operation(api_schema: Any) -> None:
    listed = {
        (op.method.upper(), op.path)
        for result in api_schema.get_all_operations()
        if (op := result.ok()).path.startswith("/api/rooms/")
    }
    assert listed == set(OPERATIONS)


def test_the_schema_and_its_browsable_page_are_served(transactional_db: None) -> None:
    client = Client()
    schema_response = client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert schema_response.status_code == 200
    paths = schema_response.json()["paths"]
    assert {
        "/api/rooms/",
        "/api/rooms/{room_id}/",
        "/api/rooms/{room_id}/chat/",
        "/api/rooms/{room_id}/messages/",
        "/api/rooms/{room_id}/kick/",
        "/api/rooms/{room_id}/mute/",
        "/api/rooms/{room_id}/lock/",
    } <= set(paths)
    page = client.get("/api/docs/")
    assert page.status_code == 200
    assert b"swagger-ui" in page.content


def test_the_schema_is_generated_without_a_warning(tmp_path: Path) -> None:
    """drf-spectacular guesses nothing: every view says what it takes and answers."""
    call_command("spectacular", "--fail-on-warn", "--file", str(tmp_path / "schema.yml"))
