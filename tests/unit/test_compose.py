"""docker-compose.yml and the Dockerfile, checked as text: no Docker engine needed."""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
SETTINGS_FILE = ROOT / "graphwiz" / "settings.py"

# settings.py reads the environment only as ENV.get("NAME", ...) or
# env_<type>(ENV, "NAME", ...); see graphwiz/envparse.py.
_ENV_READS = (
    re.compile(r"""\bENV\.get\(\s*["']([A-Za-z_][A-Za-z0-9_]*)["']"""),
    re.compile(r"""\benv_\w+\(\s*ENV\s*,\s*["']([A-Za-z_][A-Za-z0-9_]*)["']"""),
)
WEBSOCKET_LIMIT = 64 * 1024


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    with COMPOSE_FILE.open(encoding="utf-8") as fh:
        return yaml.safe_load(fh)


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, Any]:
    return compose["services"]


@pytest.fixture(scope="module")
def presence(services: dict[str, Any]) -> dict[str, Any]:
    return services["presence"]


@pytest.fixture(scope="module")
def environment(presence: dict[str, Any]) -> dict[str, str]:
    env = presence["environment"]
    assert isinstance(env, dict), "presence.environment must use the mapping form"
    return env


@pytest.fixture(scope="module")
def dockerfile(presence: dict[str, Any]) -> Path:
    build = presence["build"]
    return ROOT / build.get("context", ".") / build.get("dockerfile", "Dockerfile")


@pytest.fixture(scope="module")
def server_argv(dockerfile: Path) -> list[str]:
    """The words of the uvicorn command the image runs."""
    text = dockerfile.read_text(encoding="utf-8")
    match = re.search(r"exec uvicorn [^\"\n]*", text)
    assert match, f"no 'exec uvicorn ...' command in {dockerfile.name}"
    return shlex.split(match.group(0))[2:]  # after "exec uvicorn"


def settings_env_names() -> set[str]:
    """Every environment variable name graphwiz/settings.py reads."""
    source = SETTINGS_FILE.read_text(encoding="utf-8")
    return {name for pattern in _ENV_READS for name in pattern.findall(source)}


def option(argv: list[str], *names: str) -> str:
    """The value following the first of ``names`` in ``argv``."""
    for i, word in enumerate(argv[:-1]):
        if word in names:
            return argv[i + 1]
    raise AssertionError(f"server command has none of {names}: {argv}")


def test_compose_file_parses_as_yaml(compose: dict[str, Any]) -> None:
    assert isinstance(compose, dict)
    assert isinstance(compose.get("services"), dict)


def test_redis_service_runs_redis_7_with_a_healthcheck(services: dict[str, Any]) -> None:
    redis = services["redis"]
    assert redis["image"].startswith("redis:7")
    assert "redis-cli" in " ".join(redis["healthcheck"]["test"])


def test_postgres_service_runs_postgres_16_with_a_volume_and_healthcheck(
    compose: dict[str, Any], services: dict[str, Any]
) -> None:
    postgres = services["postgres"]
    assert postgres["image"].startswith("postgres:16")
    assert "pg_isready" in " ".join(postgres["healthcheck"]["test"])
    volume = postgres["volumes"][0].split(":")[0]
    assert volume in compose["volumes"]


def test_presence_service_is_built_from_an_existing_dockerfile(dockerfile: Path) -> None:
    assert dockerfile.is_file(), f"{dockerfile} does not exist"


def test_presence_waits_for_healthy_redis_and_postgres(presence: dict[str, Any]) -> None:
    depends_on = presence["depends_on"]
    for name in ("redis", "postgres"):
        assert depends_on[name]["condition"] == "service_healthy"


def test_presence_healthcheck_probes_the_health_endpoint(presence: dict[str, Any]) -> None:
    probe = " ".join(presence["healthcheck"]["test"])
    assert "urllib" in probe
    assert "http://localhost:8083/health" in probe


def test_settings_scan_finds_the_names_settings_reads() -> None:
    # Guards the regexes: an empty scan would make the next test vacuous.
    assert {"DEBUG", "SECRET_KEY", "DATABASE_URL", "RATE_LIMIT_MAX_REQUESTS"} <= (
        settings_env_names()
    )


def test_every_environment_name_is_read_by_settings(environment: dict[str, str]) -> None:
    unread = sorted(set(environment) - settings_env_names())
    assert not unread, f"compose sets variables graphwiz/settings.py never reads: {unread}"


def test_environment_values_are_strings(environment: dict[str, str]) -> None:
    # YAML would turn an unquoted true or 60 into a bool or int.
    not_strings = sorted(name for name, value in environment.items() if not isinstance(value, str))
    assert not not_strings, f"quote these values: {not_strings}"


def test_debug_is_off(environment: dict[str, str]) -> None:
    assert environment["DEBUG"] == "false"


def test_database_url_points_at_the_postgres_service(
    services: dict[str, Any], environment: dict[str, str]
) -> None:
    url = urlsplit(environment["DATABASE_URL"])
    assert url.scheme in {"postgres", "postgresql"}
    assert url.hostname == "postgres"
    assert url.hostname in services


def test_database_url_uses_the_postgres_service_credentials(
    services: dict[str, Any], environment: dict[str, str]
) -> None:
    postgres_env = services["postgres"]["environment"]
    url = urlsplit(environment["DATABASE_URL"])
    assert url.username == postgres_env["POSTGRES_USER"]
    assert url.password == postgres_env["POSTGRES_PASSWORD"]
    assert url.path.lstrip("/") == postgres_env["POSTGRES_DB"]


def test_redis_url_points_at_the_redis_service(
    services: dict[str, Any], environment: dict[str, str]
) -> None:
    url = urlsplit(environment["REDIS_URL"])
    assert url.scheme == "redis"
    assert url.hostname == "redis"
    assert url.hostname in services


def test_server_limits_websocket_messages_to_64_kib(server_argv: list[str]) -> None:
    assert int(option(server_argv, "--ws-max-size")) == WEBSOCKET_LIMIT


def test_server_does_not_compress_frames(server_argv: list[str]) -> None:
    assert option(server_argv, "--ws-per-message-deflate") == "false"


def test_server_serves_the_project_asgi_application(server_argv: list[str]) -> None:
    assert server_argv[0] == "graphwiz.asgi:application"


def test_published_port_is_8083(presence: dict[str, Any]) -> None:
    assert [str(port) for port in presence["ports"]] == ["8083:8083"]


def test_server_listens_on_the_published_port(
    presence: dict[str, Any], server_argv: list[str]
) -> None:
    container_port = str(presence["ports"][0]).rsplit(":", 1)[-1]
    assert option(server_argv, "--port") == container_port
    assert option(server_argv, "--host") == "0.0.0.0"
