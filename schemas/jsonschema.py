"""The JSON Schema of the stream's events, for subscribers that are not written in Python.

``python -m schemas.jsonschema`` rewrites ``schemas/event.schema.json``; a test fails when the file is stale.
"""

from __future__ import annotations

import inspect
import sys
from pathlib import Path
from typing import Any

import msgspec

from schemas.events import SCHEMA_VERSION, Event

SCHEMA_PATH = Path(__file__).with_name("event.schema.json")


def build_schema() -> dict[str, Any]:
    """The schema of the event union, annotated with the contract's version and the entry layout."""
    schema: dict[str, Any] = normalise_descriptions(msgspec.json.schema(Event))
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "Hyperliquid liquidation stream event"
    schema["description"] = (
        f"The JSON in the 'data' field of each stream entry, schema version {SCHEMA_VERSION}. The entry's other "
        "fields: 'type' (same as data.type), 'v' (schema version), 'key' (deduplication key). Amounts are decimal "
        "strings; times are milliseconds since the epoch. Ignore unknown fields and unknown types."
    )
    schema["x-schema-version"] = SCHEMA_VERSION
    return schema


def normalise_descriptions(node: Any) -> Any:
    """Clean every description as ``inspect.cleandoc`` does.

    msgspec copies class docstrings into descriptions, and its releases disagree on dedenting them (0.23 dedents,
    0.19-0.22 do not): the committed contract must be the same bytes whichever allowed version renders it.
    """
    if isinstance(node, dict):
        return {
            key: inspect.cleandoc(value)
            if key == "description" and isinstance(value, str)
            else normalise_descriptions(value)
            for key, value in node.items()
        }
    if isinstance(node, list):
        return [normalise_descriptions(item) for item in node]
    return node


def render() -> bytes:
    """Stable, reviewable bytes: sorted keys, two-space indent, trailing newline."""
    return msgspec.json.format(msgspec.json.encode(build_schema(), order="sorted"), indent=2) + b"\n"


def main() -> int:
    SCHEMA_PATH.write_bytes(render())
    sys.stdout.write(f"wrote {SCHEMA_PATH}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
