"""A JSON Schema check for the keywords ``edge config schema`` emits, enough to test the schema against real
config files (no validator library is a dependency). ``KEYWORDS`` is what it understands; a test fails when the
schema uses another, so nothing is silently passed over."""

from __future__ import annotations

import re

KEYWORDS = {"$defs", "$ref", "additionalProperties", "anyOf", "const", "default", "description", "enum", "items",
            "minimum", "oneOf", "pattern", "properties", "required", "title", "type", "writeOnly"}
_TYPES = {"string": str, "integer": int, "number": (int, float), "boolean": bool, "object": dict, "array": list,
          "null": type(None)}


def keywords(schema: object) -> set[str]:
    """Every keyword used anywhere in ``schema`` (property names and $defs names excluded)."""
    out: set[str] = set()
    if isinstance(schema, dict):
        out |= set(schema)
        for key, value in schema.items():
            children = value.values() if key in ("properties", "$defs") else [value]
            for child in children:
                out |= keywords(child)
    elif isinstance(schema, list):
        for child in schema:
            out |= keywords(child)
    return out

def errors(value: object, sch: dict, root: dict, path: str = "$") -> list[str]:
    """What is wrong with ``value`` under ``sch`` (``root`` holds the ``$defs``); [] when it is valid."""
    if "$ref" in sch:
        name = sch["$ref"].rsplit("/", 1)[1]
        return errors(value, root["$defs"][name], root, path)
    out = []
    if "anyOf" in sch and all(errors(value, s, root, path) for s in sch["anyOf"]):
        out.append(f"{path}: matches none of anyOf")
    if "oneOf" in sch and sum(not errors(value, s, root, path) for s in sch["oneOf"]) != 1:
        out.append(f"{path}: does not match exactly one of oneOf")
    t = sch.get("type")
    if t is not None:
        ok = isinstance(value, _TYPES[t]) and not (t in ("integer", "number") and isinstance(value, bool))
        if not ok:
            return out + [f"{path}: expected {t}, got {value!r}"]
    if "const" in sch and value != sch["const"]:
        out.append(f"{path}: expected {sch['const']!r}")
    if "enum" in sch and value not in sch["enum"]:
        out.append(f"{path}: not one of {sch['enum']}")
    if "pattern" in sch and isinstance(value, str) and not re.search(sch["pattern"], value):
        out.append(f"{path}: does not match {sch['pattern']}")
    if "minimum" in sch and isinstance(value, (int, float)) and value < sch["minimum"]:
        out.append(f"{path}: below {sch['minimum']}")
    if isinstance(value, dict):
        for k in sch.get("required", []):
            if k not in value:
                out.append(f"{path}.{k}: required")
        props = sch.get("properties", {})
        for k, v in value.items():
            if k in props:
                out += errors(v, props[k], root, f"{path}.{k}")
            elif sch.get("additionalProperties") is False:
                out.append(f"{path}.{k}: unknown key")
            elif isinstance(sch.get("additionalProperties"), dict):
                out += errors(v, sch["additionalProperties"], root, f"{path}.{k}")
    if isinstance(value, list) and "items" in sch:
        for i, v in enumerate(value):
            out += errors(v, sch["items"], root, f"{path}[{i}]")
    return out
