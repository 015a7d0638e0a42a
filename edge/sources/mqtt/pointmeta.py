"""What an MQTT point is, beyond its value: its type (one column, always) and its unit/description.

Pure; ``parse.Mapper`` uses it per message.

- ``typed(value, declared)``: a JSON or plain-text value as the declared type, so one
  point never lands in two value columns. Undeclared numbers are ``double`` (40 and
  40.5 of the same point both go to ``value_double``); declare ``int64`` for
  counters and ids (exact beyond 2^53).
- ``MetadataStore``: the units, descriptions and types that devices publish on
  retained per-sensor metadata topics (``format: metadata`` subscriptions), by point.
  The collector keeps it across restarts (``snapshot`` / ``MetadataStore(state)``),
  because a persistent session does not get retained messages again.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any, Literal

from edge.configtypes import ConfigError

ValueType = Literal["double", "int64", "bool", "string"]
VALUE_TYPES: tuple[str, ...] = ("double", "int64", "bool", "string")
# Type names devices put in their metadata (Homie $datatype, JSON Schema, OPC UA, Sparkplug, PLC names).
TYPE_SPELLINGS = {
    "double": ("double", "float", "float32", "float64", "number", "real", "lreal", "decimal"),
    "int64": ("int64", "integer", "int", "int8", "int16", "int32", "uint8", "uint16", "uint32", "long", "dint", "counter"),
    "bool": ("bool", "boolean"),
    "string": ("string", "text", "enum", "str"),
}
_SPELLED = {s: t for t, spellings in TYPE_SPELLINGS.items() for s in spellings}
_INT64 = (-(1 << 63), (1 << 63) - 1)
_NUMBER = re.compile(r"^\s*[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?\s*$")
_TRUE = {"true", "on", "1", "yes"}
_FALSE = {"false", "off", "0", "no"}


class ParseError(ValueError):
    """The payload cannot become a reading; the message is the quarantine reason (re-exported by parse.py)."""


def _show(value: Any) -> str:
    return json.dumps(value)[:64] if not isinstance(value, str) else repr(value[:64])


def typed(value: Any, declared: str | None) -> tuple[Any, str | None]:
    """(value, data_type). ``declared`` None: numbers are double, the rest keeps its JSON type."""
    t = type(value)
    if value is None:
        return None, declared
    if declared is None:
        if t is bool:
            return value, "bool"
        if t is str:
            return value, "string"
        if t is dict or t is list:
            return value, "json"
        declared = "double"
    if declared == "double":
        if t is float:
            return value, "double"
        if t is int or (t is str and _NUMBER.match(value)):
            try:
                number = float(value)
            except OverflowError:
                raise ParseError(f"value {_show(value)} is out of range for double") from None
            if math.isfinite(number):
                return number, "double"
        raise ParseError(f"value {_show(value)} is not a number (declared double)")
    if declared == "int64":
        number = value
        if t is str and _NUMBER.match(value) and len(value) <= 40:
            number = float(value) if re.search(r"[.eE]", value) else int(value)
        if type(number) is float and math.isfinite(number) and number == int(number):
            number = int(number)
        if type(number) is int and _INT64[0] <= number <= _INT64[1]:
            return number, "int64"
        raise ParseError(f"value {_show(value)} is not a 64-bit integer (declared int64)")
    if declared == "bool":
        if t is bool:
            return value, "bool"
        if (t is int and value in (0, 1)) or (t is str and value.strip().lower() in _TRUE | _FALSE):
            return (value == 1 if t is int else value.strip().lower() in _TRUE), "bool"
        raise ParseError(f"value {_show(value)} is not a boolean (declared bool)")
    if declared == "string":
        if t is str:
            return value, "string"
        if t in (int, float, bool):
            return json.dumps(value), "string"
        raise ParseError(f"value {_show(value)} is not a scalar (declared string)")
    raise ParseError(f"unknown type {declared!r}")


def spelled_type(raw: Any) -> str:
    """A device's type name (``integer``, ``float``, ``boolean``, ...) -> one of VALUE_TYPES."""
    t = _SPELLED.get(raw.strip().lower()) if isinstance(raw, str) else None
    if t is None:
        raise ParseError(f"type {_show(raw)} is not one of {', '.join(sorted(_SPELLED))}")
    return t


@dataclass
class MetadataMapping:
    """Where the fields of a metadata payload live (dotted paths, like ``json:``); a field may be absent."""

    unit: str | None = "unit"
    description: str | None = "description"
    type: str | None = None  # a field declaring the point's type (``integer``, ``float``, ...); off by default
    text: Literal["unit", "description", "type"] | None = None  # the payload is plain text: this one field (Homie $unit)

    def validate(self, path: str) -> None:
        for key in ("unit", "description", "type"):
            p = getattr(self, key)
            if p is not None and not re.fullmatch(r"[^.\s][^.]*(\.[^.\s][^.]*)*", p):
                raise ConfigError(f"{path}.{key}", f"not a field path like 'a.b.0.c': {p!r}")


@dataclass(frozen=True)
class PointMeta:
    unit: str | None = None
    description: str | None = None
    type: str | None = None


class MetadataStore:
    """point -> PointMeta, as published on metadata topics; ``changed`` says a save is due."""

    MAX_POINTS = 1_000_000

    def __init__(self, state: dict | None = None):
        self.points: dict[str, PointMeta] = {}
        self.changed = False
        for point, meta in (state or {}).items() if isinstance(state, dict) else ():
            if isinstance(point, str) and isinstance(meta, dict):
                self.points[point] = PointMeta(*(meta.get(k) if isinstance(meta.get(k), str) else None
                                                for k in ("unit", "description", "type")))

    def get(self, point: str) -> PointMeta | None:
        return self.points.get(point)

    def put(self, point: str, meta: PointMeta | None) -> None:
        """Record (or, for None: an emptied retained topic, forget) a point's metadata."""
        if meta is None:
            self.changed |= self.points.pop(point, None) is not None
            return
        if self.points.get(point) == meta:
            return
        if point not in self.points and len(self.points) >= self.MAX_POINTS:
            raise ParseError(f"more than {self.MAX_POINTS} points with metadata")
        self.points[point] = meta
        self.changed = True

    def snapshot(self) -> dict:
        self.changed = False
        return {p: {k: v for k, v in vars(m).items() if v is not None} for p, m in self.points.items()}


__all__ = ["MetadataMapping", "MetadataStore", "PointMeta", "TYPE_SPELLINGS", "ParseError", "VALUE_TYPES",
           "ValueType", "spelled_type", "typed"]
