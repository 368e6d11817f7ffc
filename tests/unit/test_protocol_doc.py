"""docs/PROTOCOL.md, the wire contract, kept in step with the code.

Read as text: the close codes of section 7, the ``ErrorCode`` list, every field
number and enum value section 3 states, the order of the moderation messages'
fields, the environment names of section 8 and the endpoints of section 1.
Whatever the page promises that is not built yet is listed in ``NOT_BUILT``
below with the reason; that list should only shrink.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from django.urls import Resolver404, resolve
from google.protobuf.descriptor import Descriptor, EnumDescriptor

from presence.protocol import core_pb2 as pb
from presence.protocol.codes import CloseCode, ErrorCode
from tests.unit.test_compose import settings_env_names

ROOT = Path(__file__).resolve().parents[2]
PROTOCOL = ROOT / "docs" / "PROTOCOL.md"
README = ROOT / "README.md"
FILE = pb.DESCRIPTOR

# What PROTOCOL.md describes ahead of the code, each left out of one check.
NOT_BUILT_CLOSE_CODES: set[int] = set()
NOT_BUILT_SETTINGS: set[str] = set()
NOT_CHECKED_MESSAGES: set[str] = set()
NOT_BUILT_FIELDS: set[tuple[str, str]] = set()
# Codes the server sends that section 7 does not list yet: each is proposed in
# docs/PROTOCOL-proposals.md (1009 comes from the WebSocket layer, below the app).
PROPOSED_CLOSE_CODES = {1009}
ENUM_ALIASES: dict[str, str] = {}


# --- reading the page --------------------------------------------------------------


def protocol_text() -> str:
    return PROTOCOL.read_text(encoding="utf-8")


def section(number: int) -> str:
    """The text of ``## {number}. ...`` up to the next section."""
    match = re.search(rf"(?ms)^## {number}\. .*?(?=^## |\Z)", protocol_text())
    assert match, f"PROTOCOL.md has no section {number}"
    return match.group(0)


def table_rows(text: str) -> list[list[str]]:
    """The cells of every Markdown table row in ``text`` (header and rule excluded)."""
    rows = []
    for line in text.splitlines():
        if not line.startswith("|") or re.fullmatch(r"\|[-| ]+\|", line):
            continue
        rows.append([cell.strip() for cell in line.strip().strip("|").split("|")])
    return rows[1:] if rows else rows


def braced_messages(text: str) -> dict[str, str]:
    """``Name{...}`` definitions in ``text``: name -> what is between the braces."""
    found: dict[str, str] = {}
    for name, body in re.findall(r"`?\b([A-Z]\w+)\{([^{}]*)\}", text):
        found.setdefault(name, body)
    return found


def numbered(body: str) -> list[tuple[str, int, bool]]:
    """``field=N`` entries of a definition as (field, number, marked [ext])."""
    entries = []
    ext = False
    for marker, name, number in re.findall(r"(\[ext\]\s*)?\b(\w+)=(\d+)", body):
        ext = ext or bool(marker)  # "[ext] a=5, b=6": everything after the mark
        entries.append((name, int(number), ext))
    return entries


def message(name: str) -> Descriptor:
    assert name in FILE.message_types_by_name, f"core.proto has no message {name}"
    return FILE.message_types_by_name[name]


def enum(name: str) -> EnumDescriptor:
    name = ENUM_ALIASES.get(name, name)
    assert name in FILE.enum_types_by_name, f"core.proto has no enum {name}"
    return FILE.enum_types_by_name[name]


# --- the page lives in the repository ------------------------------------------------


def test_the_readme_links_the_protocol_in_the_repository() -> None:
    readme = README.read_text(encoding="utf-8")
    links = re.findall(r"\]\(([^)#\s]*PROTOCOL\.md)[^)]*\)", readme)
    assert links, "README.md does not link PROTOCOL.md"
    assert set(links) == {"docs/PROTOCOL.md"}, links
    assert PROTOCOL.is_file()


# --- section 7: close codes ------------------------------------------------------------


def test_every_close_code_of_section_7_is_a_close_code_the_server_has() -> None:
    documented = {int(row[0]) for row in table_rows(section(7)) if row[0].isdigit()}
    assert {1000, 4000, 4429} <= documented  # the table was read
    built = {int(code) for code in CloseCode}
    assert documented - NOT_BUILT_CLOSE_CODES == built - PROPOSED_CLOSE_CODES
    proposals = (ROOT / "docs" / "PROTOCOL-proposals.md").read_text(encoding="utf-8")
    for code in PROPOSED_CLOSE_CODES:
        assert re.search(rf"(?m)^\| {code} \|", proposals), f"{code} is not proposed"


# --- section 3: the schema -------------------------------------------------------------


def test_the_error_codes_listed_are_the_error_code_enum() -> None:
    match = re.search(r"(?s)`ErrorCode`:(.*?)\.\n", section(3))
    assert match, "section 3 lists no ErrorCode values"
    documented = {name: int(n) for name, n in re.findall(r"\b([A-Z_]+)=(\d+)", match.group(1))}
    assert documented == dict(ErrorCode.items())


def test_the_envelope_table_numbers_match_message() -> None:
    fields = message("Message").fields_by_name
    rows = table_rows(section(3))
    simple = {row[0].split()[0].strip("`"): int(row[1]) for row in rows if row[1].strip().isdigit()}
    assert {"message_id", "seq", "sender_id"} <= set(simple)
    for name, number in simple.items():
        assert name in fields and fields[name].number == number, name
    (payload,) = (row for row in rows if row[0].startswith("payload"))
    oneof = dict((name, int(n)) for n, name in re.findall(r"(\d+) `(\w+)`", payload[1]))
    assert len(oneof) == len(message("Message").oneofs_by_name["payload"].fields)
    for name, number in oneof.items():
        assert name in fields and fields[name].number == number, name


def test_every_field_number_section_3_states_matches_core_proto() -> None:
    checked = 0
    for name, body in braced_messages(section(3)).items():
        if name in NOT_CHECKED_MESSAGES or name in ENUM_ALIASES:
            continue
        if name in FILE.enum_types_by_name:
            continue  # enum values: next test
        descriptor = message(name)
        for field, number, _ in numbered(body):
            if (name, field) in NOT_BUILT_FIELDS:
                continue
            assert field in descriptor.fields_by_name, f"{name} has no field {field}"
            assert descriptor.fields_by_name[field].number == number, f"{name}.{field}"
            checked += 1
    assert checked > 40  # the definitions were read


def test_every_ext_field_section_3_marks_is_checked() -> None:
    # The [ext] fields are ours to get right: none of them may hide in an exclusion
    # except what is listed as not built.
    ext = {
        (name, field)
        for name, body in braced_messages(section(3)).items()
        for field, _, is_ext in numbered(body)
        if is_ext
    }
    assert ("ServerHello", "session_id") in ext and ("ClientHello", "capabilities") in ext
    excluded = {(n, f) for n, f in ext if n in NOT_CHECKED_MESSAGES} - NOT_BUILT_FIELDS
    assert not excluded


def test_the_enum_values_section_3_states_match_core_proto() -> None:
    text = section(3)
    for name, body in braced_messages(text).items():
        if name in ENUM_ALIASES or name in FILE.enum_types_by_name:
            values = enum(name).values_by_name
            for value, number, _ in numbered(body):
                assert values[value].number == number, f"{name}.{value}"
    match = re.search(r"(?s)`MessageType` keeps(.*?)\.\n", text)
    assert match, "section 3 says nothing about MessageType"
    stated = re.findall(r"\b([A-Z_]+)=(\d+)", match.group(1))
    assert len(stated) >= 6
    values = enum("MessageType").values_by_name
    for value, number in stated:
        assert values[value].number == int(number), f"MessageType.{value}"


@pytest.mark.parametrize(
    "name",
    ["KickPlayer", "MutePlayer", "LockRoom", "PlayerKicked", "PlayerMuted", "RoomLocked"],
)
def test_the_moderation_messages_have_the_fields_in_the_stated_order(name: str) -> None:
    body = braced_messages(section(3))[name]
    stated = [field.strip() for field in body.split(",")]
    by_number = sorted(message(name).fields, key=lambda f: f.number)
    assert [f.name for f in by_number] == stated


# --- section 8: limits -------------------------------------------------------------------


def test_the_settings_section_8_names_are_read_by_settings() -> None:
    named = set(re.findall(r"`([A-Z][A-Z0-9_]+)`", section(8)))
    assert {"RATE_LIMIT_MAX_REQUESTS", "MESSAGE_QUEUE_SIZE", "REDIS_URL"} <= named
    unread = named - NOT_BUILT_SETTINGS - settings_env_names()
    assert not unread, (
        f"PROTOCOL.md section 8 names settings graphwiz/settings.py never reads: {unread}"
    )


def test_the_settings_named_anywhere_in_the_page_are_read_by_settings() -> None:
    named = {
        name
        for name in re.findall(r"`([A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+)`", protocol_text())
        if name.startswith(("PRESENCE_", "MESSAGE_", "RATE_", "REDIS_", "METRICS_", "LATENCY_"))
    }
    unread = named - NOT_BUILT_SETTINGS - settings_env_names()
    assert not unread, f"PROTOCOL.md names settings graphwiz/settings.py never reads: {unread}"


# --- section 1: endpoints ----------------------------------------------------------------


def test_every_http_endpoint_of_section_1_is_routed() -> None:
    paths = []
    for row in table_rows(section(1)):
        for method_path in re.findall(r"`(?:GET |POST )?(/[^`]*)`", row[0]):
            if "(WebSocket)" in row[0]:
                continue  # routed by presence/transport/routing.py, tested end to end
            paths.append(method_path.replace("{room_id}", "lobby"))
    assert "/health" in paths and "/api/token/refresh/" in paths
    for path in paths:
        try:
            resolve(path)
        except Resolver404:
            pytest.fail(
                f"PROTOCOL.md section 1 lists {path}, which graphwiz/urls.py does not route"
            )
