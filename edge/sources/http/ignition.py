"""Ignition tag-change events -> reading bodies (pure).

The events are what the published Ignition-to-ZeroBus gateway scripts POST:
``{"tagPath", "tagProvider", "value", "quality", "qualityCode", "timestamp"
(epoch ms), "dataType" (a Python type name)}``. Scripts run on Jython 2.7, so a
timestamp may arrive as a float or a huge int (``long``), text as ``unicode``,
values as None, and dataset values as nested lists/objects.

``map_events`` returns the valid items and, for each invalid event, its index
and the reason, so the caller can quarantine exactly those and still accept
the rest.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from edge.encode import BAD, GOOD, UNCERTAIN, encode_reading

# Ignition quality names (QualityCode.Level and the legacy DataQuality names) -> our three levels.
_QUALITY_WORDS = {
    "good": GOOD, "good_data": GOOD, "good_unspecified": GOOD, "good_provisional": GOOD,
    "uncertain": UNCERTAIN, "uncertain_lastknownvalue": UNCERTAIN, "uncertain_initialvalue": UNCERTAIN,
    "uncertain_datasubnormal": UNCERTAIN, "uncertain_engineeringunitsexceeded": UNCERTAIN,
    "uncertain_incompleteoperation": UNCERTAIN,
}
# Ignition 8 QualityCode integers: the top two bits give the level (00 good, 01 uncertain, 10/11 bad).
_LEVEL_BY_TOP_BITS = {0: GOOD, 1: UNCERTAIN, 2: BAD, 3: BAD}

# dataType as the scripts send it (type(value).__name__ under Jython) and Ignition's own names.
_NUMERIC_FLOAT = {"float", "double", "float4", "float8"}
_NUMERIC_INT = {"int", "long", "short", "byte", "integer", "int1", "int2", "int4", "int8"}
_BOOL = {"bool", "boolean"}
_TEXT = {"unicode", "str", "string", "text"}

MAX_TAG_PATH = 1024
MAX_VALUE_DEPTH = 32  # lists/objects in a value (datasets are two levels)
# Ignition timestamps are epoch milliseconds; accept 1990..2200 to catch seconds/us mix-ups.
_MIN_MS, _MAX_MS = 631_152_000_000, 7_258_118_400_000


@dataclass(frozen=True)
class Rejected:
    index: int
    reason: str
    event: Any


def quality_of(name: Any, code: Any) -> tuple[str, int | None]:
    """(GOOD|UNCERTAIN|BAD, raw code). The numeric code wins when it is present and valid."""
    raw = None
    if isinstance(code, int) and not isinstance(code, bool):
        raw = code
        level = _LEVEL_BY_TOP_BITS[(code >> 30) & 0x3] if code >= 0 else BAD
        if code == 192:  # legacy DataQuality.GOOD_DATA
            level = GOOD
        return level, raw
    if isinstance(name, str):
        word = name.strip().lower().replace(" ", "_")
        if word in _QUALITY_WORDS:
            return _QUALITY_WORDS[word], raw
        if word.startswith("good"):
            return GOOD, raw
        if word.startswith("uncertain"):
            return UNCERTAIN, raw
    return BAD, raw


def _typed_value(value: Any, data_type: str | None) -> Any:
    """Coerce by the declared dataType where that is lossless; otherwise keep the JSON type."""
    dt = (data_type or "").strip().lower()
    if value is None:
        return None
    if dt in _BOOL and isinstance(value, (bool, int)) and not isinstance(value, float):
        return bool(value)
    if dt in _NUMERIC_FLOAT and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if dt in _NUMERIC_INT and isinstance(value, (int, float)) and not isinstance(value, bool):
        if isinstance(value, float) and not (math.isfinite(value) and value.is_integer()):
            return value  # keep a fractional value as a double rather than truncating it
        return int(value)
    if dt in _TEXT and isinstance(value, (str, int, float, bool)):
        return value if isinstance(value, str) else json.dumps(value)
    return value


def map_event(event: Any, *, source: str, collected_ts: int, max_depth: int = MAX_VALUE_DEPTH) -> bytes:
    """One event -> body bytes; raises ValueError with the reason when it cannot be used."""
    if not isinstance(event, dict):
        raise ValueError(f"event is {type(event).__name__}, not an object")
    tag = event.get("tagPath")
    if not isinstance(tag, str) or not tag.strip():
        raise ValueError("tagPath missing or not a string")
    if len(tag) > MAX_TAG_PATH:
        raise ValueError(f"tagPath longer than {MAX_TAG_PATH} characters")
    provider = event.get("tagProvider")
    if provider is not None and not isinstance(provider, str):
        raise ValueError("tagProvider is not a string")
    ts = event.get("timestamp")
    if isinstance(ts, bool) or not isinstance(ts, (int, float)) or not math.isfinite(ts):
        raise ValueError("timestamp missing or not a number (epoch milliseconds)")
    if not _MIN_MS <= ts <= _MAX_MS:
        raise ValueError(f"timestamp {ts!r} is not epoch milliseconds between 1990 and 2200")
    data_type = event.get("dataType")
    if data_type is not None and not isinstance(data_type, str):
        raise ValueError("dataType is not a string")
    value = event.get("value")
    if type(value) in (list, dict) and too_deep(value, max_depth):
        raise ValueError(f"value nested deeper than {max_depth} levels")
    level, raw_code = quality_of(event.get("quality"), event.get("qualityCode"))
    point = tag if tag.startswith("[") or not provider else f"[{provider}]{tag}"
    return encode_reading(
        source=source,
        protocol="ignition",
        point=point,
        value=_typed_value(value, data_type),
        quality=level,
        status_code=raw_code,
        source_ts=int(ts * 1000),
        collected_ts=collected_ts,
        data_type=data_type,
    )


def map_events(events: list, *, source: str, collected_ts: int,
               max_depth: int = MAX_VALUE_DEPTH) -> tuple[list[tuple[int, bytes]], list[Rejected]]:
    items: list[tuple[int, bytes]] = []
    rejected: list[Rejected] = []
    for i, event in enumerate(events):
        try:
            items.append((collected_ts, map_event(event, source=source, collected_ts=collected_ts, max_depth=max_depth)))
        except (ValueError, TypeError, OverflowError) as exc:
            rejected.append(Rejected(i, str(exc), event))
    return items, rejected


def too_deep(value: Any, limit: int) -> bool:
    """Whether lists/objects nest more than ``limit`` levels below ``value`` (iterative)."""
    stack = [(value, 0)]
    while stack:
        node, depth = stack.pop()
        if type(node) is dict:
            children = node.values()
        elif type(node) is list:
            children = node
        else:
            continue
        if depth >= limit:
            return True
        stack.extend((c, depth + 1) for c in children if type(c) in (dict, list))
    return False
