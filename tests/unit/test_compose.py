"""docker-compose.yml, deploy/nginx.conf and the Dockerfile, checked as text (no Docker engine)."""

from __future__ import annotations

import ipaddress
import json
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
INSTANCES = ("presence-a", "presence-b")
NGINX_CONFIG_IN_CONTAINER = "/etc/nginx/conf.d/default.conf"

# settings.py reads the environment only as ENV.get("NAME", ...) or
# env_<type>(ENV, "NAME", ...); see graphwiz/envparse.py.
_ENV_READS = (
    re.compile(r"""\bENV\.get\(\s*["']([A-Za-z_][A-Za-z0-9_]*)["']"""),
    re.compile(r"""\benv_\w+\(\s*ENV\s*,\s*["']([A-Za-z_][A-Za-z0-9_]*)["']"""),
)
WEBSOCKET_LIMIT = 64 * 1024
ONE_HOUR = 3600
_DURATION_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}


# --- fixtures ------------------------------------------------------------------


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    with COMPOSE_FILE.open(encoding="utf-8") as fh:
        return yaml.safe_load(fh)


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, Any]:
    return compose["services"]


@pytest.fixture(scope="module")
def instances(services: dict[str, Any]) -> list[dict[str, Any]]:
    missing = [name for name in INSTANCES if name not in services]
    assert not missing, f"docker-compose.yml lacks the instances {missing}"
    return [services[name] for name in INSTANCES]


@pytest.fixture(scope="module")
def image_services(services: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Every service that runs the project's image (instances and the migrate job)."""
    return {name: service for name, service in services.items() if "build" in service}


@pytest.fixture(scope="module")
def environment(instances: list[dict[str, Any]]) -> dict[str, str]:
    env = instances[0]["environment"]
    assert isinstance(env, dict), "the instances' environment must use the mapping form"
    return env


@pytest.fixture(scope="module")
def nginx(services: dict[str, Any]) -> dict[str, Any]:
    return services["nginx"]


@pytest.fixture(scope="module")
def dockerfile(instances: list[dict[str, Any]]) -> Path:
    build = instances[0]["build"]
    return ROOT / build.get("context", ".") / build.get("dockerfile", "Dockerfile")


@pytest.fixture(scope="module")
def image_command(dockerfile: Path) -> list[str]:
    """The image's CMD, which must be the exec (JSON array) form."""
    text = dockerfile.read_text(encoding="utf-8").replace("\\\n", " ")
    match = re.search(r"^CMD\s+(.*)$", text, re.MULTILINE)
    assert match, f"no CMD in {dockerfile.name}"
    try:
        argv = json.loads(match.group(1))
    except json.JSONDecodeError:
        pytest.fail(f"CMD is not in exec form (a JSON array): {match.group(1)}")
    assert isinstance(argv, list)
    return argv


@pytest.fixture(scope="module")
def server_argv(image_command: list[str]) -> list[str]:
    """The words of the uvicorn command the image runs, after ``uvicorn``."""
    assert image_command[0] == "uvicorn", f"the image does not run uvicorn: {image_command}"
    return image_command[1:]


@pytest.fixture(scope="module")
def nginx_conf(nginx: dict[str, Any]) -> str:
    """deploy/nginx.conf as nginx mounts it, comments removed."""
    sources = [
        volume.split(":")[0]
        for volume in nginx["volumes"]
        if volume.split(":")[1] == NGINX_CONFIG_IN_CONTAINER
    ]
    assert sources, f"nginx mounts nothing at {NGINX_CONFIG_IN_CONTAINER}"
    path = ROOT / sources[0]
    return re.sub(r"#[^\n]*", "", path.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def upstreams(nginx_conf: str) -> dict[str, str]:
    """Each ``upstream NAME { ... }`` block's body, by name."""
    return dict(re.findall(r"\bupstream\s+(\S+)\s*\{([^}]*)\}", nginx_conf))


# --- helpers -------------------------------------------------------------------


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


def seconds(duration: str) -> float:
    """A compose (``1m30s``) or nginx (``1h``, ``3600``) duration in seconds."""
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)?", str(duration).strip())
    assert parts and "".join(n + u for n, u in parts) == str(duration).strip(), duration
    return sum(float(number) * _DURATION_UNITS[unit or "s"] for number, unit in parts)


def directives(conf: str, name: str) -> list[str]:
    """The argument strings of every ``name ...;`` directive in ``conf``."""
    return [args.strip() for args in re.findall(rf"(?m)^\s*{name}\s+([^;]*);", conf)]


def proxy_headers(conf: str) -> dict[str, str]:
    """``proxy_set_header`` names (lower case) and values."""
    pairs = (args.split(None, 1) for args in directives(conf, "proxy_set_header"))
    return {header.lower(): value for header, value in pairs}


def runs_migrations(service: dict[str, Any], image_command: list[str]) -> bool:
    """Does the service's container (its own command, else the image's) migrate?"""
    command = service.get("command", image_command)
    words = command if isinstance(command, str) else " ".join(command)
    return re.search(r"\bmanage\.py\s+migrate\b", words) is not None


# --- compose: dependencies -----------------------------------------------------


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


# --- compose: the instances ----------------------------------------------------


def test_instances_are_built_from_an_existing_dockerfile(dockerfile: Path) -> None:
    assert dockerfile.is_file(), f"{dockerfile} does not exist"


def test_two_instances_run_the_same_image_with_the_same_environment(
    instances: list[dict[str, Any]],
) -> None:
    first, second = instances
    for key in ("build", "image", "environment", "command", "healthcheck"):
        assert first.get(key) == second.get(key), f"presence-a and presence-b differ in {key}"
    assert first["image"], "the instances should name the image they share"


def test_instances_wait_for_healthy_redis_and_postgres(instances: list[dict[str, Any]]) -> None:
    for instance in instances:
        depends_on = instance["depends_on"]
        for name in ("redis", "postgres"):
            assert depends_on[name]["condition"] == "service_healthy"


def test_instance_healthcheck_probes_the_health_endpoint(
    instances: list[dict[str, Any]],
) -> None:
    for instance in instances:
        probe = " ".join(instance["healthcheck"]["test"])
        assert "urllib" in probe
        assert "http://localhost:8083/health" in probe


def test_instances_are_reached_only_through_nginx(
    services: dict[str, Any], nginx: dict[str, Any]
) -> None:
    publishing = sorted(name for name, service in services.items() if service.get("ports"))
    assert publishing == ["nginx"]


def test_instance_shutdown_fits_inside_the_stop_grace_period(
    instances: list[dict[str, Any]], server_argv: list[str]
) -> None:
    # Docker sends SIGKILL after stop_grace_period (default 10 s). Before it,
    # the instance closes its sockets with 4000 and leaves the registry (up to
    # 5 s, presence/shutdown.py), uvicorn gives up on what is still open, and
    # the lifespan shutdown writes the queued history.
    graceful = seconds(option(server_argv, "--timeout-graceful-shutdown"))
    for instance in instances:
        assert seconds(instance["stop_grace_period"]) >= graceful + 10


# --- compose: migrations -------------------------------------------------------


def test_exactly_one_service_runs_the_migrations(
    image_services: dict[str, dict[str, Any]], image_command: list[str]
) -> None:
    migrators = sorted(
        name for name, service in image_services.items() if runs_migrations(service, image_command)
    )
    assert len(migrators) == 1, f"services running manage.py migrate: {migrators}"


def test_the_image_itself_does_not_migrate(image_command: list[str]) -> None:
    assert not runs_migrations({}, image_command)


def test_instances_start_after_the_migrations_finished(
    image_services: dict[str, dict[str, Any]],
    instances: list[dict[str, Any]],
    image_command: list[str],
) -> None:
    (migrator,) = (
        name for name, service in image_services.items() if runs_migrations(service, image_command)
    )
    assert image_services[migrator].get("restart", "no") == "no", "a one-shot job"
    for instance in instances:
        assert instance["depends_on"][migrator]["condition"] == "service_completed_successfully"


# --- compose: environment ------------------------------------------------------


def test_settings_scan_finds_the_names_settings_reads() -> None:
    # Guards the regexes: an empty scan would make the next test vacuous.
    assert {"DEBUG", "SECRET_KEY", "DATABASE_URL", "RATE_LIMIT_MAX_REQUESTS"} <= (
        settings_env_names()
    )


def test_every_environment_name_is_read_by_settings(
    image_services: dict[str, dict[str, Any]],
) -> None:
    known = settings_env_names()
    for name, service in image_services.items():
        unread = sorted(set(service["environment"]) - known)
        assert not unread, f"{name} sets variables graphwiz/settings.py never reads: {unread}"


def test_environment_values_are_strings(environment: dict[str, str]) -> None:
    # YAML would turn an unquoted true or 60 into a bool or int.
    not_strings = sorted(name for name, value in environment.items() if not isinstance(value, str))
    assert not not_strings, f"quote these values: {not_strings}"


def test_debug_is_off(environment: dict[str, str]) -> None:
    assert environment["DEBUG"] == "false"


def test_secret_key_comes_from_the_host_environment_without_a_default(
    environment: dict[str, str],
) -> None:
    # ${SECRET_KEY:?message}: compose refuses to start without it. A default
    # would be public, in this file, and would sign everyone's tokens.
    assert re.fullmatch(r"\$\{SECRET_KEY:\?[^}]+\}", environment["SECRET_KEY"])


def test_no_service_has_a_secret_key_default(compose: dict[str, Any]) -> None:
    text = COMPOSE_FILE.read_text(encoding="utf-8")
    assert not re.search(r"SECRET_KEY:-", text)
    assert "change-me" not in re.sub(r"#[^\n]*", "", text)


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


def test_trusted_proxies_cover_the_containers_but_not_the_gateway(
    compose: dict[str, Any], environment: dict[str, str]
) -> None:
    # nginx's X-Forwarded-For is believed; a client on the Docker host arrives
    # from the gateway address and must not be.
    (pool,) = compose["networks"]["default"]["ipam"]["config"]
    subnet = ipaddress.ip_network(pool["subnet"])
    containers = ipaddress.ip_network(pool["ip_range"])
    gateway = ipaddress.ip_address(pool["gateway"])
    trusted = [ipaddress.ip_network(p) for p in environment["TRUSTED_PROXIES"].split(",")]
    assert containers.subnet_of(subnet)
    assert any(containers.subnet_of(net) for net in trusted)
    assert all(net.subnet_of(subnet) for net in trusted)
    assert not any(gateway in net for net in trusted)


# --- the image -----------------------------------------------------------------


def test_server_limits_websocket_messages_to_64_kib(server_argv: list[str]) -> None:
    assert int(option(server_argv, "--ws-max-size")) == WEBSOCKET_LIMIT


def test_server_does_not_compress_frames(server_argv: list[str]) -> None:
    assert option(server_argv, "--ws-per-message-deflate") == "false"


def test_server_serves_the_project_asgi_application(server_argv: list[str]) -> None:
    assert server_argv[0] == "graphwiz.asgi:application"


def test_server_listens_on_all_interfaces_on_8083(server_argv: list[str]) -> None:
    assert option(server_argv, "--host") == "0.0.0.0"
    assert option(server_argv, "--port") == "8083"


# --- nginx ---------------------------------------------------------------------


def test_nginx_runs_the_official_image(nginx: dict[str, Any]) -> None:
    name, _, tag = nginx["image"].partition(":")
    assert name == "nginx"
    # "resolve" on upstream servers needs nginx 1.27.3 or later.
    assert tuple(int(n) for n in tag.split("-")[0].split(".")) >= (1, 27, 3)


def test_nginx_mounts_deploy_nginx_conf_read_only(nginx: dict[str, Any]) -> None:
    mounts = [volume.split(":") for volume in nginx["volumes"]]
    assert ["./deploy/nginx.conf", NGINX_CONFIG_IN_CONTAINER, "ro"] in mounts
    assert (ROOT / "deploy" / "nginx.conf").is_file()


def test_published_port_is_8083(nginx: dict[str, Any]) -> None:
    assert [str(port) for port in nginx["ports"]] == ["8083:8083"]


def test_nginx_listens_on_its_published_port(nginx: dict[str, Any], nginx_conf: str) -> None:
    container_port = str(nginx["ports"][0]).rsplit(":", 1)[-1]
    assert directives(nginx_conf, "listen") == [container_port]


def test_nginx_waits_for_healthy_instances(nginx: dict[str, Any]) -> None:
    for name in INSTANCES:
        assert nginx["depends_on"][name]["condition"] == "service_healthy"


def test_upstream_lists_both_instances_on_the_server_port(
    upstreams: dict[str, str], server_argv: list[str]
) -> None:
    (body,) = upstreams.values()
    servers = sorted(args.split()[0] for args in directives(body, "server"))
    port = option(server_argv, "--port")
    assert servers == sorted(f"{name}:{port}" for name in INSTANCES)


def test_upstream_balances_by_fewest_connections(upstreams: dict[str, str]) -> None:
    (body,) = upstreams.values()
    assert re.search(r"(?m)^\s*least_conn\s*;", body)


def test_upstream_follows_instances_that_change_address(
    upstreams: dict[str, str], nginx_conf: str
) -> None:
    (body,) = upstreams.values()
    assert all("resolve" in args.split()[1:] for args in directives(body, "server"))
    assert directives(body, "zone"), "resolve needs a shared-memory zone"
    assert directives(nginx_conf, "resolver") == ["127.0.0.11 valid=10s ipv6=off"]


def test_every_request_goes_to_the_upstream(upstreams: dict[str, str], nginx_conf: str) -> None:
    (name,) = upstreams
    passes = directives(nginx_conf, "proxy_pass")
    assert passes and set(passes) == {f"http://{name}"}


def test_websocket_upgrade_is_passed_through(nginx_conf: str) -> None:
    assert directives(nginx_conf, "proxy_http_version") == ["1.1"]
    headers = proxy_headers(nginx_conf)
    assert headers["upgrade"] == "$http_upgrade"
    mapped = re.search(r"\bmap\s+\$http_upgrade\s+(\$\w+)\s*\{([^}]*)\}", nginx_conf)
    assert mapped, "no map on $http_upgrade"
    assert headers["connection"] == mapped.group(1)
    entries = dict(line.split() for line in mapped.group(2).split(";") if line.strip())
    assert entries == {"default": "upgrade", '""': "close"}


def test_client_address_scheme_and_host_are_forwarded(nginx_conf: str) -> None:
    headers = proxy_headers(nginx_conf)
    assert headers["x-forwarded-for"] == "$proxy_add_x_forwarded_for"
    assert headers["x-forwarded-proto"] == "$scheme"
    assert headers["host"] in {"$host", "$http_host"}


@pytest.mark.parametrize("directive", ["proxy_read_timeout", "proxy_send_timeout"])
def test_quiet_websockets_are_kept_for_an_hour(nginx_conf: str, directive: str) -> None:
    # nginx's default is 60 s: a socket quiet for a minute would be cut.
    (value,) = directives(nginx_conf, directive)
    assert seconds(value) >= ONE_HOUR


def test_duration_parser_reads_compose_and_nginx_units() -> None:
    assert seconds("1h") == ONE_HOUR
    assert seconds("1m30s") == 90
    assert seconds("3600") == ONE_HOUR


# --- nginx: no credential in the access log ------------------------------------

# Variables whose value can hold a query string (and so a token).
_QUERY_BEARING = ("$request ", "$request_uri", "$args", "$query_string", "$http_referer", "$arg_")


def log_formats(conf: str) -> dict[str, str]:
    """Each ``log_format NAME '...' '...';`` as its name and its joined format text."""
    formats = {}
    for name, body in re.findall(r"(?ms)^\s*log_format\s+(\S+)\s+(.*?);\s*$", conf):
        formats[name] = "".join(re.findall(r"'([^']*)'", body))
    return formats


def nginx_maps(conf: str) -> dict[str, tuple[str, list[tuple[str, str]]]]:
    """``map $src $dst { key value; ... }`` blocks: ``{"$dst": ("$src", [(key, value)])}``."""
    maps = {}
    for source, target, body in re.findall(r"\bmap\s+(\$\w+)\s+(\$\w+)\s*\{([^}]*)\}", conf):
        entries = [shlex.split(line)[:2] for line in body.split(";") if line.strip()]
        maps[target] = (source, [(key, value) for key, value in entries])
    return maps


def apply_map(entries: list[tuple[str, str]], value: str, variables: dict[str, str]) -> str:
    """What nginx sets a map's variable to for ``value`` (regex keys, named captures)."""
    default = ""
    for key, result in entries:
        if key == "default":
            default = result
            continue
        if key.startswith("~"):
            # nginx's PCRE "(?<name>" is Python's "(?P<name>"; "~*" would be case-insensitive.
            flags = re.IGNORECASE if key.startswith("~*") else 0
            pattern = re.sub(r"\(\?<(\w+)>", r"(?P<\1>", key.lstrip("~*"))
            match = re.search(pattern, value, flags)
            if match:
                captured = {f"${name}": text for name, text in match.groupdict().items()}
                return substitute(result, {**variables, **captured})
        elif key == value:
            return substitute(result, variables)
    return substitute(default, variables)


def substitute(template: str, variables: dict[str, str]) -> str:
    """``template`` with its ``$name`` variables replaced (longest names first)."""
    for name in sorted(variables, key=len, reverse=True):
        template = template.replace(name, variables[name])
    return template


def logged_line(conf: str, format_name: str, request: dict[str, str]) -> str:
    """The access-log line nginx writes for ``request`` (its variables), maps applied."""
    variables = dict(request)
    for target, (source, entries) in nginx_maps(conf).items():
        if source in variables:
            variables[target] = apply_map(entries, variables[source], variables)
    return substitute(log_formats(conf)[format_name], variables)


def test_every_access_log_uses_a_format_without_raw_query_strings(nginx_conf: str) -> None:
    logs = directives(nginx_conf, "access_log")
    assert logs, "nginx would fall back to the image's 'combined' format, which logs $request"
    formats = log_formats(nginx_conf)
    for args in logs:
        words = args.split()
        if words == ["off"]:
            continue
        assert len(words) >= 2 and words[1] in formats, f"access_log without our format: {args}"
        text = formats[words[1]] + " "
        leaking = [name for name in _QUERY_BEARING if name in text]
        assert not leaking, f"log_format {words[1]} writes {leaking}"


def test_nginx_logs_a_token_in_the_query_or_the_referer_as_a_redaction_marker(
    nginx_conf: str,
) -> None:
    token = "eyJ-secret-token"
    (args,) = directives(nginx_conf, "access_log")
    request = {
        "$remote_addr": "198.51.100.7",
        "$remote_user": "-",
        "$time_local": "01/Jan/2026:00:00:00 +0000",
        "$request_method": "GET",
        "$request_uri": f"/ws/hall?user_id=7&auth_token={token}&session_id={token}",
        "$server_protocol": "HTTP/1.1",
        "$status": "101",
        "$body_bytes_sent": "0",
        "$http_referer": f"https://app.example.com/?token={token}",
        "$http_user_agent": "quest-3",
    }

    line = logged_line(nginx_conf, args.split()[1], request)

    assert token not in line
    assert "/ws/hall?[REDACTED]" in line
    assert "https://app.example.com/?[REDACTED]" in line


def test_nginx_logs_a_path_without_a_query_as_it_is(nginx_conf: str) -> None:
    (args,) = directives(nginx_conf, "access_log")
    request = {"$request_uri": "/health", "$http_referer": "-", "$request_method": "GET"}

    assert '"GET /health ' in logged_line(nginx_conf, args.split()[1], request)


# --- /metrics: the internal network only ----------------------------------------


def metrics_location(conf: str) -> str:
    """The body of the location that matches ``/metrics`` and ``/metrics/report``."""
    for pattern, body in re.findall(r"\blocation\s+~\s+(\S+)\s*\{([^}]*)\}", conf):
        if all(re.search(pattern, path) for path in ("/metrics", "/metrics/report")):
            assert not re.search(pattern, "/metricsx") and not re.search(pattern, "/ws/metrics")
            return str(body)
    raise AssertionError("no regex location matches /metrics and /metrics/report")


def test_nginx_serves_metrics_to_private_networks_and_denies_everyone_else(
    nginx_conf: str, upstreams: dict[str, str]
) -> None:
    body = metrics_location(nginx_conf)
    rules = re.findall(r"(?m)^\s*(allow|deny)\s+([^;]+);", body)
    assert rules[-1] == ("deny", "all"), "everything not allowed must be denied"
    allowed = [ipaddress.ip_network(net) for verb, net in rules if verb == "allow"]
    assert allowed and all(net.is_private for net in allowed)
    assert [verb for verb, _ in rules].count("deny") == 1
    (name,) = upstreams
    assert directives(body, "proxy_pass") == [f"http://{name}"]


def test_instances_keep_metrics_to_the_networks_nginx_allows(
    environment: dict[str, str], nginx_conf: str
) -> None:
    # The instances judge the client behind nginx (TRUSTED_PROXIES): the same list.
    body = metrics_location(nginx_conf)
    nginx_allowed = {
        ipaddress.ip_network(net) for net in re.findall(r"(?m)^\s*allow\s+([^;]+);", body)
    }
    instance_allowed = {
        ipaddress.ip_network(net)
        for net in environment["PRESENCE_METRICS_ALLOWED_NETWORKS"].split(",")
    }
    assert instance_allowed == nginx_allowed
