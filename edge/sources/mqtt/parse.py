"""Pure MQTT payload mapping: topic filters, JSON field paths, timestamps, quality, types, metadata topics.

No I/O and no paho here: ``edge/sources/mqtt/convert.py`` feeds ``(topic, payload)``
pairs in and gets ``Parsed`` readings out, or a ``ParseError`` whose message is
the quarantine reason. Everything is compiled once from the config so the hot
path is a dict lookup plus ``json.loads``. Value types and the metadata store are
in ``pointmeta.py``.

Over 400 lines: the subscription's config classes, the compiled mapper that reads
them and the small parsers it calls (filters, paths, timestamps, quality, point
templates) are one table of rules; split, each part would import all the others.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable, Literal, NamedTuple

from edge.configtypes import ConfigError
from edge.encode import BAD, GOOD, UNCERTAIN
from edge.sources.mqtt.pointmeta import (  # noqa: F401  (ParseError: re-exported, its home for callers)
    MetadataMapping, MetadataStore, ParseError, PointMeta, ValueType, spelled_type, typed,
)

Format = Literal["json", "number", "text", "sparkplug", "metadata"]
TimestampFormat = Literal["auto", "epoch_s", "epoch_ms", "epoch_us", "epoch_ns", "iso8601"]

# Anything outside these years is a unit mistake (seconds read as microseconds...), not a time.
_TS_MIN_US = 631_152_000_000_000  # 1990-01-01
_TS_MAX_US = 7_258_118_400_000_000  # 2200-01-01


class Parsed(NamedTuple):
    point: str
    value: Any
    quality: str = GOOD
    status_code: int | None = None
    source_ts: int | None = None  # microseconds since the epoch
    unit: str | None = None
    data_type: str | None = None


@dataclass
class JsonMapping:
    """Where the fields of a reading live inside a JSON payload (dotted paths, list indexes as numbers)."""

    value: str = "value"  # "$" keeps the whole document as the value (value_json)
    timestamp: str | None = None
    timestamp_format: TimestampFormat = "auto"
    quality: str | None = None
    point: str | None = None  # a field naming the point; use it in the template as {field}
    unit: str | None = None
    structured: bool = False  # accept objects/arrays at `value` (stored as JSON) instead of quarantining them

    def validate(self, path: str) -> None:
        for key in ("value", "timestamp", "quality", "point", "unit"):
            p = getattr(self, key)
            if p is not None and not _valid_path(p, allow_root=(key == "value")):
                raise ConfigError(f"{path}.{key}", f"not a field path like 'a.b.0.c': {p!r}")


@dataclass
class Subscription:
    topic: str  # an MQTT topic filter, wildcards + and # allowed
    format: Format = "json"
    qos: int = 1
    point: str = "{topic}"  # template: {topic}, {0}..{n} topic levels, {field} (json.point)
    unit: str | None = None  # a fixed unit for every reading of this subscription
    json: JsonMapping = field(default_factory=JsonMapping)
    type: ValueType | None = None  # every value of this subscription; default: numbers double, the rest as sent
    types: dict[str, ValueType] = field(default_factory=dict)  # point name (or glob with *) -> type
    metadata: MetadataMapping = field(default_factory=MetadataMapping)  # for format: metadata

    def validate(self, path: str) -> None:
        for pattern in self.types:
            if not pattern:
                raise ConfigError(f"{path}.types", "a point name or pattern must not be empty")
        if self.format in ("sparkplug", "metadata") and (self.type or self.types):
            raise ConfigError(f"{path}.type", f"does not apply to format {self.format} (its types come with the payload)")
        try:
            check_filter(self.topic)
        except ValueError as exc:
            raise ConfigError(f"{path}.topic", str(exc)) from None
        if self.qos not in (0, 1):
            # QoS 2 adds a round trip and no durability beyond QoS 1 + our idempotent keys.
            raise ConfigError(f"{path}.qos", "must be 1 (at least once) or 0 (may lose messages)")
        try:
            compile_point_template(self.point, has_field=self.json.point is not None)
        except ValueError as exc:
            raise ConfigError(f"{path}.point", str(exc)) from None
        if self.format == "sparkplug" and not self.topic.startswith("spBv1.0/"):
            raise ConfigError(f"{path}.topic", "a sparkplug subscription must be under spBv1.0/ (e.g. spBv1.0/#)")


# ---------------------------------------------------------------- topic filters


def check_filter(flt: str) -> None:
    if not flt:
        raise ValueError("empty topic filter")
    if len(flt.encode("utf-8")) > 65535:
        raise ValueError("topic filter longer than 65535 bytes")
    if "\0" in flt:
        raise ValueError("topic filter contains a NUL character")
    levels = flt.split("/")
    for i, level in enumerate(levels):
        if "#" in level and (level != "#" or i != len(levels) - 1):
            raise ValueError(f"'#' must be a whole level and the last one: {flt!r}")
        if "+" in level and level != "+":
            raise ValueError(f"'+' must be a whole level: {flt!r}")


def topic_matches(flt: str, topic: str) -> bool:
    """MQTT filter matching (MQTT 3.1.1 section 4.7), incl. the rule that wildcards skip $-topics."""
    if topic.startswith("$") and flt[:1] in ("+", "#"):
        return False
    f_levels = flt.split("/")
    t_levels = topic.split("/")
    for i, f in enumerate(f_levels):
        if f == "#":
            return True
        if i >= len(t_levels):
            return False
        if f != "+" and f != t_levels[i]:
            return False
    return len(f_levels) == len(t_levels)


# ---------------------------------------------------------------- JSON paths


_PATH_PART = re.compile(r"^[^.\s][^.]*$")


def _valid_path(p: str, allow_root: bool = False) -> bool:
    if p == "$":
        return allow_root
    return bool(p) and all(_PATH_PART.match(part) for part in p.split("."))


def compile_path(p: str) -> tuple[str, ...]:
    return () if p == "$" else tuple(p.split("."))


_MISSING = object()


def lookup(doc: Any, path: tuple[str, ...]) -> Any:
    """Follow a compiled path; returns _MISSING when any step is absent."""
    for part in path:
        if isinstance(doc, dict):
            doc = doc.get(part, _MISSING)
            if doc is _MISSING:
                return _MISSING
        elif isinstance(doc, list) and part.lstrip("-").isdigit():
            i = int(part)
            if not -len(doc) <= i < len(doc):
                return _MISSING
            doc = doc[i]
        else:
            return _MISSING
    return doc


def compile_getter(path: tuple[str, ...]) -> Callable[[Any], Any]:
    """``lookup`` specialised for the common one-key path (the hot path: one call per message)."""
    if len(path) == 1:
        key = path[0]

        def get1(doc: Any) -> Any:
            if type(doc) is dict:
                return doc.get(key, _MISSING)
            return lookup(doc, path)

        return get1
    if not path:
        return lambda doc: doc
    return lambda doc: lookup(doc, path)


def _show(path: tuple[str, ...]) -> str:
    return ".".join(path) or "$"


# ---------------------------------------------------------------- timestamps


def _epoch_to_us(x: float | int, unit: str) -> int:
    scale = {"epoch_s": 1_000_000, "epoch_ms": 1_000, "epoch_us": 1, "epoch_ns": 0.001}[unit]
    if isinstance(x, int):
        return x * int(scale) if scale >= 1 else x // 1000
    return int(round(x * scale))


def _guess_unit(x: float) -> str:
    a = abs(x)
    if a < 1e11:
        return "epoch_s"  # seconds until year 5138
    if a < 1e14:
        return "epoch_ms"
    if a < 1e17:
        return "epoch_us"
    return "epoch_ns"


def parse_timestamp(raw: Any, fmt: str = "auto") -> int:
    """Microseconds since the epoch (UTC) from a JSON value; ParseError when it is not a plausible time."""
    if type(raw) is int and fmt in ("epoch_ms", "auto") and 631_152_000_000 <= raw < 7_258_118_400_000:
        return raw * 1000  # the usual case: integer epoch milliseconds
    if isinstance(raw, bool) or raw is None:
        raise ParseError(f"timestamp {raw!r} is not a time")
    if isinstance(raw, str):
        s = raw.strip()
        number: float | int | None = None
        if re.fullmatch(r"-?\d+", s):
            if len(s) > 40:  # past any time, and int() refuses strings past 4300 digits
                raise ParseError(f"timestamp {s[:64]!r}... is not a time")
            number = int(s)
        elif re.fullmatch(r"-?\d+\.\d*", s):
            number = float(s)
        if number is not None and fmt != "iso8601":
            raw = number
        elif fmt in ("auto", "iso8601"):
            us = _iso_to_us(s)
            return _check_range(us, raw)
        else:
            raise ParseError(f"timestamp {raw[:64]!r} is not a number ({fmt})")
    if isinstance(raw, (int, float)):
        if fmt == "iso8601":
            raise ParseError(f"timestamp {raw!r} is a number, expected an ISO 8601 string")
        if isinstance(raw, float) and not math.isfinite(raw):
            raise ParseError(f"timestamp {raw!r} is not a time")
        unit = _guess_unit(raw) if fmt == "auto" else fmt
        return _check_range(_epoch_to_us(raw, unit), raw)
    raise ParseError(f"timestamp has type {type(raw).__name__}, expected a number or a string")


def _iso_to_us(s: str) -> int:
    try:
        dt = datetime.fromisoformat(s)
    except ValueError:
        raise ParseError(f"timestamp {s[:64]!r} is not ISO 8601") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)  # documented: a time without offset is UTC
    delta = dt - datetime(1970, 1, 1, tzinfo=timezone.utc)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def _check_range(us: int, raw: Any) -> int:
    if not _TS_MIN_US <= us < _TS_MAX_US:
        raise ParseError(f"timestamp {str(raw)[:64]!r} is outside 1990..2200 (wrong unit?)")
    return us


# ---------------------------------------------------------------- quality

_GOOD_WORDS = {"good", "ok", "valid", "true", "192"}
_BAD_WORDS = {"bad", "invalid", "error", "fault", "false"}
_UNCERTAIN_WORDS = {"uncertain", "stale", "questionable", "suspect"}


def parse_quality(raw: Any) -> tuple[str, int | None]:
    """(quality, status_code). Integers are OPC UA StatusCodes: the top two bits give the severity."""
    if raw is None:
        return GOOD, None
    if isinstance(raw, bool):
        return (GOOD if raw else BAD), None
    if isinstance(raw, int):
        if not 0 <= raw <= 0xFFFFFFFF:
            raise ParseError(f"quality {raw} is not a 32-bit status code")
        severity = raw >> 30
        return (GOOD, UNCERTAIN, BAD, BAD)[severity], raw
    if isinstance(raw, str):
        w = raw.strip().lower()
        if w in _GOOD_WORDS or w.startswith("good"):
            return GOOD, None
        if w in _BAD_WORDS or w.startswith("bad"):
            return BAD, None
        if w in _UNCERTAIN_WORDS or w.startswith("uncertain"):
            return UNCERTAIN, None
        raise ParseError(f"quality {raw[:64]!r} is not good/bad/uncertain")
    raise ParseError(f"quality has type {type(raw).__name__}")


# ---------------------------------------------------------------- point names

_TEMPLATE_PART = re.compile(r"\{([^{}]*)\}")


def compile_point_template(tpl: str, has_field: bool = False) -> Callable[[list[str], str, str | None], str]:
    """``{topic}``, ``{N}`` (topic level N, 0-based; negative counts from the end) and ``{field}``."""
    if not tpl:
        raise ValueError("the point template is empty")
    pieces: list[Any] = []
    pos = 0
    for m in _TEMPLATE_PART.finditer(tpl):
        pieces.append(tpl[pos:m.start()])
        key = m.group(1)
        if key == "topic":
            pieces.append(("topic",))
        elif key == "field":
            if not has_field:
                raise ValueError("{field} needs json.point (the payload field naming the point)")
            pieces.append(("field",))
        elif re.fullmatch(r"-?\d+", key):
            pieces.append(("level", int(key)))
        else:
            raise ValueError(f"unknown placeholder {{{key}}}: use {{topic}}, {{0}}, {{1}}, ... or {{field}}")
        pos = m.end()
    pieces.append(tpl[pos:])
    if any(isinstance(p, str) and ("{" in p or "}" in p) for p in pieces):
        raise ValueError(f"unbalanced braces in {tpl!r}")

    def render(levels: list[str], topic: str, fld: str | None) -> str:
        out = []
        for p in pieces:
            if isinstance(p, str):
                out.append(p)
            elif p[0] == "topic":
                out.append(topic)
            elif p[0] == "field":
                out.append(fld or "")
            else:
                i = p[1]
                if not -len(levels) <= i < len(levels):
                    raise ParseError(f"topic {topic!r} has no level {i} for the point name")
                out.append(levels[i])
        return "".join(out)

    return render


# ---------------------------------------------------------------- payload parsers


def _decode_text(payload: bytes) -> str:
    try:
        return payload.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ParseError(f"payload is not valid UTF-8 (byte {exc.start})") from None


_NUMBER = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")


def parse_number(payload: bytes) -> int | float:
    s = _decode_text(payload).strip()
    if not _NUMBER.match(s):
        raise ParseError(f"payload {s[:64]!r} is not a number")
    if re.fullmatch(r"[+-]?\d+", s):
        try:
            return int(s)
        except ValueError:  # more digits than int() converts (4300)
            raise ParseError(f"payload {s[:64]!r}... is out of range") from None
    v = float(s)
    if not math.isfinite(v):
        raise ParseError(f"payload {s[:64]!r} is out of range")
    return v


class Mapper:
    """One compiled subscription: ``parse(topic, payload) -> list[Parsed]`` or ParseError.

    ``metadata``: the store that ``format: metadata`` subscriptions fill and every
    subscription reads units and types from (one per source, shared by its mappers).
    """

    def __init__(self, sub: Subscription, metadata: MetadataStore | None = None):
        self.sub = sub
        self.metadata = MetadataStore() if metadata is None else metadata
        self._exact_types = {k: v for k, v in sub.types.items() if "*" not in k}
        self._glob_types = [(re.compile(".*".join(map(re.escape, k.split("*"))) + r"\Z"), v)
                            for k, v in sub.types.items() if "*" in k]
        self._types: dict[str, str | None] = {}  # point -> type from `types` (cache)
        m = sub.metadata
        self._meta = {k: compile_getter(compile_path(getattr(m, k))) for k in ("unit", "description", "type")
                      if getattr(m, k) is not None}
        self.format = sub.format
        self._point = compile_point_template(sub.point, has_field=sub.json.point is not None)
        j = sub.json
        self._value = compile_path(j.value)
        self._get_value = compile_getter(self._value)
        self._ts = compile_path(j.timestamp) if j.timestamp else None
        self._get_ts = compile_getter(self._ts) if self._ts else None
        self._ts_fmt = j.timestamp_format
        self._quality = compile_path(j.quality) if j.quality else None
        self._get_quality = compile_getter(self._quality) if self._quality else None
        self._field = compile_path(j.point) if j.point else None
        self._get_field = compile_getter(self._field) if self._field else None
        self._unit = compile_path(j.unit) if j.unit else None
        self._get_unit = compile_getter(self._unit) if self._unit else None
        self._structured = j.structured or j.value == "$"
        self._points: dict[str, str] = {}  # topic -> point name when the template has no {field}

    def point(self, topic: str, fld: str | None = None) -> str:
        if fld is None:
            p = self._points.get(topic)
            if p is None:
                p = self._point(topic.split("/"), topic, None)
                if len(self._points) >= 100_000:
                    self._points.clear()
                self._points[topic] = p
            return p
        return self._point(topic.split("/"), topic, fld)

    def parse(self, topic: str, payload: bytes) -> list[Parsed]:
        if self.format == "json":
            return [self._parse_json(topic, payload)]
        if self.format == "number":
            return [self._reading(self.point(topic), parse_number(payload))]
        if self.format == "text":
            return [self._reading(self.point(topic), _decode_text(payload))]
        if self.format == "metadata":
            self._parse_metadata(topic, payload)
            return []
        raise ParseError(f"format {self.format} is not handled by Mapper")  # sparkplug lives in sparkplug.py

    def declared_type(self, point: str, meta: PointMeta | None) -> str | None:
        """``types`` (exact name, then patterns in order), else the metadata topic's, else ``type``."""
        t = self._types.get(point, _MISSING)
        if t is _MISSING:
            t = self._exact_types.get(point) or next((v for rx, v in self._glob_types if rx.match(point)), None)
            if len(self._types) >= 100_000:
                self._types.clear()
            self._types[point] = t
        return t or (meta.type if meta is not None else None) or self.sub.type  # type: ignore[return-value]

    def _reading(self, point: str, value: Any, quality: str = GOOD, status: int | None = None,
                 source_ts: int | None = None, unit: str | None = None) -> Parsed:
        meta = self.metadata.get(point)
        if unit is None:
            unit = (meta.unit if meta is not None else None) or self.sub.unit
        value, data_type = typed(value, self.declared_type(point, meta))
        return Parsed(point, value, quality, status, source_ts, unit, data_type)

    def _parse_metadata(self, topic: str, payload: bytes) -> None:
        point = self.point(topic)
        old = self.metadata.get(point) or PointMeta()
        text_field = self.sub.metadata.text
        if text_field is not None:  # one field per topic, plain text (Homie: .../$unit, .../$datatype)
            text = _decode_text(payload).strip() or None
            fields = {**vars(old), text_field: spelled_type(text) if text_field == "type" and text else text}
            self.metadata.put(point, PointMeta(**fields) if any(fields.values()) else None)
            return
        if not payload.strip():  # a retained topic cleared: forget the point's metadata
            self.metadata.put(point, None)
            return
        doc = _load_json(payload)
        if type(doc) is not dict:
            raise ParseError(f"metadata payload is a {type(doc).__name__}, expected a JSON object")
        fields = {}
        for key, get in self._meta.items():
            raw = get(doc)
            if raw is _MISSING or raw is None:
                continue
            if key == "type":
                fields[key] = spelled_type(raw)
            elif isinstance(raw, str):
                fields[key] = raw
            else:
                raise ParseError(f"metadata field {getattr(self.sub.metadata, key)!r} is not a string")
        self.metadata.put(point, PointMeta(**fields))

    def _parse_json(self, topic: str, payload: bytes) -> Parsed:
        doc = _load_json(payload)
        value = self._get_value(doc)
        if value is _MISSING:
            raise ParseError(f"no field {_show(self._value)!r} for the value")
        tv = type(value)
        if (tv is dict or tv is list) and not self._structured:
            raise ParseError(
                f"value at {_show(self._value)!r} is {'a list' if tv is list else 'an object'};"
                " set json.structured: true to keep structured values"
            )
        if tv is float and not math.isfinite(value):
            raise ParseError("value is not a finite number")
        source_ts = None
        if self._get_ts is not None:
            raw_ts = self._get_ts(doc)
            if raw_ts is not _MISSING and raw_ts is not None:
                source_ts = parse_timestamp(raw_ts, self._ts_fmt)
        quality, status = GOOD, None
        if self._get_quality is not None:
            raw_q = self._get_quality(doc)
            if raw_q is not _MISSING:
                quality, status = (GOOD, None) if raw_q == "GOOD" else parse_quality(raw_q)
        fld = None
        if self._get_field is not None:
            raw_f = self._get_field(doc)
            if raw_f is _MISSING or raw_f is None or isinstance(raw_f, (dict, list, bool)):
                raise ParseError(f"no usable point name at {_show(self._field)!r}")
            fld = str(raw_f)
        unit = None
        if self._get_unit is not None:
            raw_u = self._get_unit(doc)
            if type(raw_u) is str:
                unit = raw_u
        return self._reading(self.point(topic, fld), value, quality, status, source_ts, unit)


def _load_json(payload: bytes) -> Any:
    try:
        return json.loads(payload.decode("utf-8"))  # not json.loads(bytes): that would accept UTF-16/32
    except UnicodeDecodeError as exc:
        raise ParseError(f"payload is not valid UTF-8 (byte {exc.start})") from None
    except (ValueError, RecursionError) as exc:  # ValueError: also an integer past int()'s 4300 digits
        raise ParseError(f"invalid JSON: {getattr(exc, 'msg', exc)} at char {getattr(exc, 'pos', '?')}") from None


class Router:
    """Picks the subscription for a topic (first match in config order), cached per topic."""

    def __init__(self, subs: list[Subscription], cache_size: int = 100_000, metadata: MetadataStore | None = None):
        self.metadata = MetadataStore() if metadata is None else metadata
        self.mappers = [Mapper(s, self.metadata) for s in subs]
        self._cache: dict[str, Mapper | None] = {}
        self._cache_size = cache_size

    def route(self, topic: str) -> Mapper | None:
        m = self._cache.get(topic, _MISSING)
        if m is _MISSING:
            m = next((mp for mp in self.mappers if topic_matches(mp.sub.topic, topic)), None)
            if len(self._cache) >= self._cache_size:
                self._cache.clear()  # many distinct topics: recompute rather than grow forever
            self._cache[topic] = m
        return m  # type: ignore[return-value]
