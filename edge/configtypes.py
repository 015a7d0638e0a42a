"""Typed building of dataclasses from parsed YAML, with errors that name the field path.

Pure: no file or network access. ``build(Cls, mapping, "sources[2]")`` turns a
mapping into ``Cls``, checking every key against the dataclass fields (unknown
keys are errors, so a typo never silently falls back to a default) and every
value against the field's type annotation.

Supported annotations: str, int, float, bool, Optional[X], list[X],
dict[str, X], Literal[...], nested dataclasses, and the two unit types below.
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints


class ConfigError(ValueError):
    """A config value is wrong; ``path`` names the field, e.g. ``sources[1].port``."""

    def __init__(self, path: str, message: str):
        self.path = path or "<root>"
        self.message = message
        super().__init__(f"{self.path}: {message}")


class ByteSize(int):
    """Bytes; accepts ints or strings like ``512MiB``, ``10 GB``, ``4k``."""


class Duration(float):
    """Seconds; accepts numbers or strings like ``250ms``, ``30s``, ``5m``, ``2h``, ``7d``."""


class Secret(str):
    """A string that never shows itself in a repr, a log line or an error message."""

    def __repr__(self) -> str:
        return "Secret('***')" if self else "Secret('')"


_SIZE_UNITS = {
    "": 1, "b": 1,
    "k": 1000, "kb": 1000, "kib": 1024,
    "m": 1000**2, "mb": 1000**2, "mib": 1024**2,
    "g": 1000**3, "gb": 1000**3, "gib": 1024**3,
    "t": 1000**4, "tb": 1000**4, "tib": 1024**4,
}
_DURATION_UNITS = {"ms": 0.001, "s": 1, "": 1, "m": 60, "min": 60, "h": 3600, "d": 86400}
_QUANTITY = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*([a-zA-Z]*)\s*$")


def parse_size(value: Any, path: str = "") -> ByteSize:
    if isinstance(value, bool):
        raise ConfigError(path, f"expected a size like 512MiB, got {value!r}")
    if isinstance(value, int):
        n = value
    elif isinstance(value, str) and (m := _QUANTITY.match(value)) and m.group(2).lower() in _SIZE_UNITS:
        n = int(float(m.group(1)) * _SIZE_UNITS[m.group(2).lower()])
    else:
        raise ConfigError(path, f"expected a size like 512MiB or 10GB, got {value!r}")
    if n < 0:
        raise ConfigError(path, "must not be negative")
    return ByteSize(n)


def parse_duration(value: Any, path: str = "") -> Duration:
    if isinstance(value, bool):
        raise ConfigError(path, f"expected a duration like 30s, got {value!r}")
    if isinstance(value, (int, float)):
        s = float(value)
    elif isinstance(value, str) and (m := _QUANTITY.match(value)) and m.group(2).lower() in _DURATION_UNITS:
        s = float(m.group(1)) * _DURATION_UNITS[m.group(2).lower()]
    else:
        raise ConfigError(path, f"expected a duration like 250ms, 30s, 5m or 2h, got {value!r}")
    if s < 0:
        raise ConfigError(path, "must not be negative")
    return Duration(s)


def _join(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


def _type_name(tp: Any) -> str:
    if tp is ByteSize:
        return "a size"
    if tp is Duration:
        return "a duration"
    return {str: "a string", int: "an integer", float: "a number", bool: "true or false"}.get(
        tp, getattr(tp, "__name__", str(tp))
    )


def convert(tp: Any, value: Any, path: str) -> Any:
    origin = get_origin(tp)
    if origin in (Union, types.UnionType):
        args = [a for a in get_args(tp) if a is not type(None)]
        if value is None:
            if len(args) < len(get_args(tp)):
                return None
            raise ConfigError(path, "must not be empty")
        if len(args) == 1:
            return convert(args[0], value, path)
        errors = []
        for arg in args:
            try:
                return convert(arg, value, path)
            except ConfigError as exc:
                errors.append(exc.message)
        raise ConfigError(path, " / ".join(errors))
    if origin is Literal:
        allowed = get_args(tp)
        if value not in allowed:
            raise ConfigError(path, f"must be one of {', '.join(map(repr, allowed))}, got {value!r}")
        return value
    if origin is list:
        (item_tp,) = get_args(tp)
        if not isinstance(value, list):
            raise ConfigError(path, f"expected a list, got {type(value).__name__}")
        return [convert(item_tp, v, _join(path, i)) for i, v in enumerate(value)]
    if origin is dict:
        key_tp, val_tp = get_args(tp)
        if not isinstance(value, dict):
            raise ConfigError(path, f"expected a mapping, got {type(value).__name__}")
        return {convert(key_tp, k, path): convert(val_tp, v, _join(path, str(k))) for k, v in value.items()}
    if dataclasses.is_dataclass(tp):
        return build(tp, value, path)
    if tp is ByteSize:
        return parse_size(value, path)
    if tp is Duration:
        return parse_duration(value, path)
    if tp is Secret:
        if isinstance(value, str):
            return Secret(value)
        raise ConfigError(path, "expected a string (value not shown: it is a secret)")
    if tp is Any:
        return value
    if value is None:
        raise ConfigError(path, f"expected {_type_name(tp)}, got nothing")
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif tp is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
    else:  # pragma: no cover - a programming error in a config dataclass
        raise TypeError(f"{path}: unsupported annotation {tp!r}")
    raise ConfigError(path, f"expected {_type_name(tp)}, got {value!r}")


def build(cls: type, data: Any, path: str = "") -> Any:
    """Build dataclass ``cls`` from ``data`` (a mapping), or raise ConfigError naming the field."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(path, f"expected a mapping, got {type(data).__name__}")
    hints = get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(map(str, data)) - set(fields))
    if unknown:
        raise ConfigError(_join(path, unknown[0]), f"unknown key (allowed: {', '.join(sorted(fields))})")
    kwargs = {}
    for name, f in fields.items():
        if name in data:
            kwargs[name] = convert(hints[name], data[name], _join(path, name))
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(_join(path, name), "is required")
    obj = cls(**kwargs)
    check = getattr(obj, "validate", None)
    if check is not None:
        check(path)
    return obj


def field_names(cls: type, prefix: str = "") -> list[str]:
    """Every dotted field path of a config dataclass tree (for docs-vs-code tests)."""
    out = []
    hints = get_type_hints(cls)
    for f in dataclasses.fields(cls):
        name = _join(prefix, f.name)
        out.append(name)
        tp = hints[f.name]
        inner = [a for a in get_args(tp) if a is not type(None)] if get_origin(tp) in (Union, types.UnionType) else [tp]
        if len(inner) == 1 and dataclasses.is_dataclass(inner[0]):
            out.extend(field_names(inner[0], name))
    return out


__all__ = [
    "ByteSize", "ConfigError", "Duration", "Secret", "build", "convert", "field_names", "parse_duration", "parse_size",
]
_ = typing  # keep the import for forward-referenced annotations in config dataclasses
