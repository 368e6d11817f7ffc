"""Why a text frame is not a ``graphwiz.core.Message``: a short text naming the field.

Called only after ``json_format.Parse`` refused a frame. protobuf's own
``ParseError`` texts vary by case, can quote the client's values, and do not
say what was expected; this walks the decoded JSON against the message
descriptors and names the first field that does not fit and what it must
be. Client input is never echoed beyond a field name or map key cut to
:data:`MAX_ECHO` characters.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from typing import Any

from google.protobuf.descriptor import Descriptor, FieldDescriptor

from presence.protocol import core_pb2 as pb

MAX_ECHO = 32  # characters of a client's field name or map key quoted back
MAX_DEPTH = 32  # nested messages walked (a client Batch of Batches...)
EXAMPLE = '{"chatMessage": {"message": "hi"}}'
TOO_DEEP = "JSON frame nested too deeply"
FALLBACK = "JSON frame does not match graphwiz.core.Message (PROTOCOL.md sections 2 and 3)"
NOT_UNICODE = "not valid Unicode (a lone surrogate such as \\ud800); send UTF-8 text"
# What a field means, where its type alone does not say (PROTOCOL.md section 3).
COMPONENTS_HINT = (
    "entitySpawn components are strings, entityUpdate components are bytes (base64 in JSON)"
)
HINTS = {
    ("graphwiz.core.EntitySpawn", "components"): COMPONENTS_HINT,
    ("graphwiz.core.EntityUpdate", "components"): COMPONENTS_HINT,
    ("graphwiz.core.VoiceData", "codec"): "codec is 0 (Opus), 1 (PCMU) or 2 (PCMA)",
}

_INT_RANGES = {
    FieldDescriptor.TYPE_INT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SINT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SFIXED32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_UINT32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_FIXED32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_INT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_SINT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_SFIXED64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_UINT64: (0, 2**64 - 1),
    FieldDescriptor.TYPE_FIXED64: (0, 2**64 - 1),
}
_FLOAT_WORDS = frozenset({"NaN", "Infinity", "-Infinity"})


def quoted(name: str) -> str:
    """A client-supplied name, cut and quoted (control characters escaped)."""
    cut = name[:MAX_ECHO] + ("..." if len(name) > MAX_ECHO else "")
    return json.dumps(cut)


class _Repeated(Exception):
    """A JSON object names one key twice (json_format refuses it, json.loads keeps the last)."""

    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _no_repeats(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    value: dict[str, Any] = {}
    for key, item in pairs:
        if key in value:
            raise _Repeated(key)
        value[key] = item
    return value


def explain_json_frame(text: str) -> str:
    """The first reason ``text`` is not a ``graphwiz.core.Message`` in proto3 JSON."""
    try:
        value = json.loads(text, object_pairs_hook=_no_repeats)
    except RecursionError:
        return TOO_DEEP
    except _Repeated as repeated:
        return f"field {quoted(repeated.key)} given twice; send each field once"
    except json.JSONDecodeError as bad:  # its text holds a position, never the input
        return f"text frame is not JSON: {bad.msg} at line {bad.lineno} column {bad.colno}"
    if not isinstance(value, dict):
        return f"a JSON frame is an object naming its payload, e.g. {EXAMPLE}"
    descriptor: Descriptor = pb.Message.DESCRIPTOR  # type: ignore[assignment]
    return _message(value, descriptor, "", 0) or FALLBACK


def _message(value: dict[str, Any], descriptor: Descriptor, path: str, depth: int) -> str | None:
    if depth > MAX_DEPTH:
        return TOO_DEEP
    where = f" in {path}" if path else ""
    oneofs: dict[str, str] = {}
    for key, item in value.items():
        if _has_surrogate(key):  # protobuf's name lookup fails on it (SystemError)
            return f"a field name{where} is {NOT_UNICODE}"
        field = descriptor.fields_by_camelcase_name.get(key) or descriptor.fields_by_name.get(key)
        if field is None:
            names = ", ".join(f.camelcase_name for f in descriptor.fields)
            return f"unknown field {quoted(key)}{where}; expected one of: {names}"
        name = f"{path}.{field.camelcase_name}" if path else field.camelcase_name
        if item is None:
            continue  # null is "not set" in proto3 JSON
        oneof = field.containing_oneof
        if oneof is not None:
            other = oneofs.setdefault(oneof.name, field.camelcase_name)
            if other != field.camelcase_name:
                return (
                    f"a message has one {oneof.name}, got both {other} and {field.camelcase_name}"
                )
        problem = _field(item, field, name, depth)
        if problem is not None:
            return problem
    return None


def _field(value: Any, field: FieldDescriptor, path: str, depth: int) -> str | None:
    entry = field.message_type
    if entry is not None and entry.GetOptions().map_entry:
        value_field = entry.fields_by_name["value"]
        if not isinstance(value, dict):
            return _with_hint(f"{path}: expected an object of {_what(value_field)}", field)
        for key, item in value.items():
            if _has_surrogate(key):
                return _with_hint(f"{path}: a key is {NOT_UNICODE}", field)
            problem = _single(item, value_field, f"{path}[{quoted(key)}]", depth)
            if problem is not None:
                return _with_hint(problem, field)
        return None
    if field.is_repeated:
        if not isinstance(value, list):
            return f"{path}: expected a list of {_what(field)}"
        for index, item in enumerate(value):
            problem = _single(item, field, f"{path}[{index}]", depth)
            if problem is not None:
                return problem
        return None
    problem = _single(value, field, path, depth)
    return None if problem is None else _with_hint(problem, field)


def _with_hint(problem: str, field: FieldDescriptor) -> str:
    owner = field.containing_type
    hint = HINTS.get((owner.full_name, field.name)) if owner is not None else None
    return f"{problem}; {hint}" if hint else problem  # hints name scalar fields only


def _what(field: FieldDescriptor) -> str:
    """What a JSON value of ``field`` must be, in words."""
    kind = field.type
    if field.message_type is not None:
        return f"{field.message_type.name} objects"
    if kind == FieldDescriptor.TYPE_STRING:
        return "strings"
    if kind == FieldDescriptor.TYPE_BYTES:
        return "base64 strings"
    if kind == FieldDescriptor.TYPE_BOOL:
        return "booleans"
    if kind == FieldDescriptor.TYPE_ENUM:
        return "enum names"
    return "numbers"


def _single(value: Any, field: FieldDescriptor, path: str, depth: int) -> str | None:
    kind = field.type
    if field.message_type is not None:
        if not isinstance(value, dict):
            return f"{path}: expected an object ({field.message_type.name})"
        return _message(value, field.message_type, path, depth + 1)
    if kind in (FieldDescriptor.TYPE_STRING, FieldDescriptor.TYPE_BYTES) and _has_surrogate(value):
        return f"{path}: {NOT_UNICODE}"
    if kind == FieldDescriptor.TYPE_STRING:
        return None if isinstance(value, str) else f"{path}: expected a string"
    if kind == FieldDescriptor.TYPE_BYTES:
        return None if _is_base64(value) else f"{path}: expected bytes as a base64 string"
    if kind == FieldDescriptor.TYPE_BOOL:
        return None if isinstance(value, bool) else f"{path}: expected true or false"
    if kind == FieldDescriptor.TYPE_ENUM:
        assert field.enum_type is not None
        names = [v.name for v in field.enum_type.values]
        if isinstance(value, str) and value in names:
            return None
        if isinstance(value, int) and not isinstance(value, bool):
            return None
        return f"{path}: expected one of {', '.join(names)}"
    if kind in (FieldDescriptor.TYPE_FLOAT, FieldDescriptor.TYPE_DOUBLE):
        if _overflows(value):
            return f"{path}: expected a finite number (1e999 overflows a double)"
        return None if _is_float(value) else f"{path}: expected a number"
    low, high = _INT_RANGES[kind]
    number = _as_int(value)
    if number is None:
        return f"{path}: expected an integer (a number or a decimal string)"
    if not low <= number <= high:
        return f"{path}: expected an integer from {low} to {high}"
    return None


def _as_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value) if math.isfinite(value) and value.is_integer() else None
    if isinstance(value, str):
        try:
            return int(value, 10)
        except ValueError:
            return None
    return None


def _has_surrogate(value: Any) -> bool:
    # JSON's "\\ud800" escape decodes to a lone surrogate, which is no UTF-8.
    if not isinstance(value, str):
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _overflows(value: Any) -> bool:
    # A JSON number beyond a double decodes to inf (or, as an integer, overflows float()).
    if isinstance(value, float):
        return not math.isfinite(value)
    if isinstance(value, int) and not isinstance(value, bool):
        try:
            float(value)
        except OverflowError:
            return True
    return False


def _is_float(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int | float):
        return True
    if isinstance(value, str):
        if value in _FLOAT_WORDS:
            return True
        try:
            float(value)
        except ValueError:
            return False
        return True
    return False


def _is_base64(value: Any) -> bool:
    # As lenient as json_format itself: URL-safe or standard alphabet, padding optional.
    if not isinstance(value, str):
        return False
    encoded = value.encode("utf-8")
    try:
        base64.urlsafe_b64decode(encoded + b"=" * (4 - len(encoded) % 4))
    except (binascii.Error, ValueError):
        return False
    return True


def explain_payload(value: dict[str, Any], descriptor: Descriptor, path: str) -> str | None:
    """The first field of ``value`` that does not fit ``descriptor`` (as explain_json_frame).

    ``path`` prefixes the field names (e.g. ``"type 10 payload"``); ``None``
    when every field fits.
    """
    return _message(value, descriptor, path, 0)
