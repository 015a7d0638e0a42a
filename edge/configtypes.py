"""Typed building of config dataclasses, validated by pydantic, with errors that name the field path.

Pure: no file or network access. ``build(Cls, mapping, "sources[2]")`` turns a
mapping into ``Cls`` (a plain dataclass): pydantic checks every key against the
fields (unknown keys are errors, so a typo never silently falls back to a
default) and converts every value by the field's declared type; then each
dataclass's ``validate(path)`` runs, innermost first, after the checks every
config class gets for free:

- every ``Duration`` / ``ByteSize`` field must be positive, unless the class
  lists it in ``ZERO_OK`` (zero means something there, e.g. "off");
- ``reconnect_initial <= reconnect_max`` wherever a class has both;
- old key names listed in a class's ``RENAMED`` (old -> new) are accepted with
  one warning naming the new key.

``validate`` only checks: it never changes the object (normalising belongs in
``NORMALISE``, applied to the input before pydantic sees it).

Errors never echo a ``Secret``'s value, nor any value that came from a
``${VAR}`` (``build``'s ``origins``), and URLs in messages lose their
credentials and query values.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import types
from typing import Any, Callable, Literal, Union, get_args, get_origin, get_type_hints

from pydantic import ConfigDict, TypeAdapter, ValidationError

from edge.configvalues import (  # noqa: F401  (re-exported: the config layer's public names)
    ByteSize, ConfigError, Duration, Secret, Withheld, check_listen, check_url, parse_duration, parse_size,
)

log = logging.getLogger("edge.config")


def join(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key



# YAML's own types are trusted; numbers may fill a string field (``table: 2024``), as before.
_PYDANTIC = ConfigDict(extra="forbid", coerce_numbers_to_str=True)


def unwrap(tp: Any) -> Any:
    """``X | None`` -> ``X``; anything else unchanged."""
    if get_origin(tp) in (Union, types.UnionType):
        args = [a for a in get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return tp


@functools.cache
def fields_of(cls: type) -> dict[str, Any]:
    """Init field name -> type annotation of a config dataclass."""
    hints = get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls) if f.init}


def _configure(tp: Any, seen: set) -> None:
    """Give every dataclass in the tree the strict pydantic config (unknown keys are errors)."""
    tp = unwrap(tp)
    if tp in seen or tp is Any:
        return
    if dataclasses.is_dataclass(tp):
        seen.add(tp)
        if "__pydantic_config__" not in vars(tp):
            tp.__pydantic_config__ = _PYDANTIC
        for sub in fields_of(tp).values():
            _configure(sub, seen)
    for arg in get_args(tp):
        _configure(arg, seen)


_ADAPTERS: dict[type, TypeAdapter] = {}


def adapter(cls: type) -> TypeAdapter:
    if cls not in _ADAPTERS:
        _configure(cls, set())
        _ADAPTERS[cls] = TypeAdapter(cls)
    return _ADAPTERS[cls]


def prepare(tp: Any, data: Any, path: str) -> Any:
    """A copy of ``data`` with renamed keys moved to their new names and ``NORMALISE`` applied."""
    tp = unwrap(tp)
    if dataclasses.is_dataclass(tp) and isinstance(data, dict):
        data = dict(data)
        for old, new in getattr(tp, "RENAMED", {}).items():
            if old in data:
                if new in data:
                    raise ConfigError(join(path, old), f"give {new} only ({old} is its old name)")
                log.warning("%s: %s is deprecated, use %s", path or "<root>", old, new)
                data[new] = data.pop(old)
        for key, fn in getattr(tp, "NORMALISE", {}).items():
            if isinstance(data.get(key), str):
                data[key] = fn(data[key])
        hints = fields_of(tp)
        return {k: prepare(hints.get(k, Any), v, join(path, str(k))) for k, v in data.items()}
    if get_origin(tp) is list and isinstance(data, list):
        (item,) = get_args(tp)
        return [prepare(item, v, join(path, i)) for i, v in enumerate(data)]
    return data


_UNKNOWN = ("extra_forbidden", "unexpected_keyword_argument")
_MESSAGES = {
    "missing": "is required",
    "int_parsing": "expected an integer", "int_type": "expected an integer", "int_from_float": "expected an integer",
    "float_parsing": "expected a number", "float_type": "expected a number",
    "bool_parsing": "expected true or false", "bool_type": "expected true or false",
    "string_type": "expected a string", "list_type": "expected a list",
    "dataclass_type": "expected a mapping", "dict_type": "expected a mapping", "model_type": "expected a mapping",
}


def _locate(tp: Any, loc: tuple, path: str) -> tuple[str, Any, Any]:
    """(dotted path, leaf type, the dataclass holding the leaf) for a pydantic error location."""
    parent = None
    for part in loc:
        tp = unwrap(tp)
        if dataclasses.is_dataclass(tp) and isinstance(part, str):
            parent, path, tp = tp, join(path, part), fields_of(tp).get(part, Any)
        elif get_origin(tp) is list and isinstance(part, int):
            path, tp = join(path, part), get_args(tp)[0]
        elif get_origin(tp) is dict:
            if part != "[key]":
                path, tp = join(path, str(part)), get_args(tp)[1]
        elif get_origin(tp) in (Union, types.UnionType):
            tp = Any  # a union member's tag, not a key
        else:
            path, tp = join(path, part), Any
    return path, unwrap(tp), parent


def _message(err: dict, tp: Any, parent: Any) -> tuple[str, bool]:
    """(what is wrong, whether to add the value given)."""
    kind = err["type"]
    if kind in _UNKNOWN:
        return (f"unknown key (allowed: {', '.join(sorted(fields_of(parent)))})" if parent else "unknown key"), False
    if kind == "literal_error" and get_origin(tp) is Literal:
        return f"must be one of {', '.join(map(repr, get_args(tp)))}", True
    if kind in ("config", "secret", "missing"):
        return _MESSAGES.get(kind) or err["msg"], False
    return _MESSAGES.get(kind) or err["msg"][0].lower() + err["msg"][1:], True


def _translate(cls: type, exc: ValidationError, path: str, origins: dict[str, list[str]]) -> ConfigError:
    """The first failing field as a ConfigError; a union's alternatives are joined with 'or'.

    The value given is added only when it was written in the file and is not a secret.
    """
    first: str | None = None
    messages: list[str] = []
    given = ""
    # An unknown key first: a misspelt key also makes its right spelling "missing".
    for err in sorted(exc.errors(include_url=False), key=lambda e: e["type"] not in _UNKNOWN):
        where, tp, parent = _locate(cls, err["loc"], path)
        first = first or where
        if where != first:
            continue
        msg, show = _message(err, tp, parent)
        if msg not in messages:
            messages.append(msg)
        if show and where in origins:
            given = f" (value of ${{{origins[where][0]}}} not shown)"
        elif show and tp is not Secret and not isinstance(err["input"], Secret):
            given = f", got {err['input']!r}"
    if len(messages) > 1 and all(m.startswith("expected ") for m in messages):
        messages = ["expected " + " or ".join(m[len("expected "):] for m in messages)]
    return ConfigError(first or path, " or ".join(messages) + given)


def _check_common(obj: Any, path: str) -> None:
    zero_ok = getattr(obj, "ZERO_OK", ())
    for name, tp in fields_of(type(obj)).items():
        if unwrap(tp) in (Duration, ByteSize) and name not in zero_ok:
            value = getattr(obj, name)
            if value is not None and value <= 0:
                raise ConfigError(join(path, name), "must be greater than 0")
    initial, cap = getattr(obj, "reconnect_initial", None), getattr(obj, "reconnect_max", None)
    if initial is not None and cap is not None and initial > cap:
        raise ConfigError(join(path, "reconnect_initial"), "must not be greater than reconnect_max")


def check(obj: Any, path: str) -> None:
    """Run the common checks and ``validate(path)`` of every dataclass in the tree, innermost first."""
    if isinstance(obj, list):
        for i, item in enumerate(obj):
            check(item, join(path, i))
        return
    if isinstance(obj, dict):
        for k, v in obj.items():
            check(v, join(path, str(k)))
        return
    if not dataclasses.is_dataclass(obj) or isinstance(obj, type):
        return
    for name in fields_of(type(obj)):
        check(getattr(obj, name), join(path, name))
    _check_common(obj, path)
    validate = getattr(obj, "validate", None)
    if validate is not None:
        validate(path)


def build(cls: type, data: Any, path: str = "", *, origins: dict[str, list[str]] | None = None) -> Any:
    """Build dataclass ``cls`` from ``data`` (a mapping), or raise ConfigError naming the field.

    ``origins``: path -> names of the variables its value was interpolated from (never echoed).
    """
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(path, f"expected a mapping, got {type(data).__name__}")
    data = prepare(cls, data, path)
    try:
        obj = adapter(cls).validate_python(data)
    except ValidationError as exc:
        raise _translate(cls, exc, path, origins or {}) from None
    check(obj, path)
    return obj


# A ${VAR} / ${VAR:-default} reference anywhere in a string (edge/configinterp.py reads it).
REFERENCE_PATTERN = r"\$\{[A-Za-z_][A-Za-z0-9_]*(:-[^}]*)?\}"
_REFERENCE = {"type": "string", "pattern": REFERENCE_PATTERN, "description": "${VAR} or ${VAR:-default}"}
_KEPT = ("title", "default", "description", "writeOnly")


def _takes_any_string(prop: dict) -> bool:
    return prop.get("type") == "string" and not {"enum", "const", "pattern"} & set(prop)


def _allow_references(obj: dict) -> None:
    """Every scalar property of an object schema also accepts a ${VAR} reference (a string), as the
    loader does: without this an editor flags ``rate: ${RATE:-50}`` in a number field as an error."""
    for name, prop in obj.get("properties", {}).items():
        if _takes_any_string(prop) or "$ref" in prop or prop.get("type") in ("array", "object"):
            continue  # a reference is already a string there, or cannot give a list or a mapping
        kept = {k: prop.pop(k) for k in _KEPT if k in prop}
        obj["properties"][name] = {**kept, "anyOf": [prop, _REFERENCE]}


def json_schema(cls: type) -> dict:
    """JSON Schema of a config dataclass (for editors); every scalar field also takes a ${VAR}."""
    out = adapter(cls).json_schema()
    for obj in [out, *out.get("$defs", {}).values()]:
        _allow_references(obj)
    return out


def field_names(cls: type, prefix: str = "") -> list[str]:
    """Every dotted field path of a config dataclass tree (for docs-vs-code tests)."""
    out = []
    for name, tp in fields_of(cls).items():
        full = join(prefix, name)
        out.append(full)
        if dataclasses.is_dataclass(unwrap(tp)):
            out.extend(field_names(unwrap(tp), full))
    return out


__all__ = [
    "ByteSize", "ConfigError", "Duration", "Secret", "Withheld", "build", "check", "field_names", "json_schema",
    "check_listen", "check_url", "parse_duration", "parse_size",
]
