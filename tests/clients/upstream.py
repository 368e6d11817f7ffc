"""A client's view of the wire: PROTOCOL.md section 3's layout, not the service's schema.

``upstream_layout.proto`` (beside this file) is written from the field list of
PROTOCOL.md section 3: the upstream GraphWiz-XR numbers and the [ext]
additions. It is compiled with ``grpc_tools.protoc`` on first use, so a test
that decodes the server's frames with it checks the wire, not our own
generated code against itself.
"""

from __future__ import annotations

import importlib.util
import sys
import tempfile
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any

from google.protobuf import json_format
from google.protobuf.message import Message
from google.protobuf.unknown_fields import UnknownFieldSet
from grpc_tools import protoc

LAYOUT = Path(__file__).with_name("upstream_layout.proto")


@cache
def layout() -> ModuleType:
    """The compiled upstream layout (``upstream_layout_pb2``), compiled once per process."""
    with tempfile.TemporaryDirectory(prefix="upstream-layout-") as out:
        status = protoc.main(["protoc", f"-I{LAYOUT.parent}", f"--python_out={out}", str(LAYOUT)])
        if status != 0:
            raise RuntimeError(f"protoc failed on {LAYOUT} ({status})")
        spec = importlib.util.spec_from_file_location(
            "upstream_layout_pb2", Path(out) / "upstream_layout_pb2.py"
        )
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
    return module


def decode(frame: bytes) -> Any:
    """A binary frame decoded as an upstream client would: ``upstream_layout.Message``."""
    message = layout().Message()
    message.ParseFromString(frame)
    return message


def unknown_field_paths(message: Message, path: str = "") -> list[str]:
    """Every place in ``message`` (recursively) where the decoder met a field it does not know."""
    found = [f"{path or '<root>'}#{field.field_number}" for field in UnknownFieldSet(message)]
    for descriptor, value in message.ListFields():
        if descriptor.message_type is None:
            continue
        name = f"{path}.{descriptor.name}" if path else descriptor.name
        if descriptor.message_type.GetOptions().map_entry:
            values = [v for v in value.values() if isinstance(v, Message)]
        elif descriptor.is_repeated:
            values = list(value)
        else:
            values = [value]
        for index, item in enumerate(values):
            found += unknown_field_paths(item, f"{name}[{index}]" if len(values) > 1 else name)
    return found


def as_fields(message: Message) -> dict[str, Any]:
    """The message's set fields by name, enums as numbers: comparable across the two schemas."""
    return json_format.MessageToDict(
        message, preserving_proto_field_name=True, use_integers_for_enums=True
    )
