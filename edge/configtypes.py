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
import re
import types
from typing import Any, Callable, Literal, Union, get_args, get_origin, get_type_hints

from pydantic import ConfigDict, TypeAdapter, ValidationError
from pydantic_core import PydanticCustomError, core_schema

from edge.redact import redact_url, redact_urls

log = logging.getLogger("edge.config")

class ConfigError(ValueError):
    """A config value is wrong; ``path`` names the field, e.g. ``sources[1].port``."""

    def __init__(self, path: str, message: str):
        self.path = path or "<root>"
        self.message = redact_urls(message)
        super().__init__(f"{self.path}: {self.message}")


class ByteSize(int):
    """Bytes; accepts ints or strings like ``512MiB``, ``10 GB``, ``4k``."""

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: Any) -> Any:
        return core_schema.no_info_plain_validator_function(_pydantic(parse_size))

    @classmethod
    def __get_pydantic_json_schema__(cls, schema: Any, handler: Any) -> dict:
        return {"anyOf": [{"type": "integer", "minimum": 0},
                          {"type": "string", "pattern": r"^\s*[0-9]+(\.[0-9]+)?\s*([kKmMgGtT]i?[bB]?|[bB])?\s*$"}],
                "description": "bytes, or a size like 512MiB, 10GB, 4k"}


class Duration(float):
    """Seconds; accepts numbers or strings like ``250ms``, ``30s``, ``5m``, ``2h``, ``7d``."""

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: Any) -> Any:
        return core_schema.no_info_plain_validator_function(_pydantic(parse_duration))

    @classmethod
    def __get_pydantic_json_schema__(cls, schema: Any, handler: Any) -> dict:
        return {"anyOf": [{"type": "number", "minimum": 0},
                          {"type": "string", "pattern": r"^\s*[0-9]+(\.[0-9]+)?\s*(ms|s|m|min|h|d)?\s*$"}],
                "description": "seconds, or a duration like 250ms, 30s, 5m, 2h, 7d"}


class Secret(str):
    """A string that never shows itself in a repr, a log line or an error message."""

    withheld = False

    def __repr__(self) -> str:
        return "Secret('***')" if self else "Secret('')"

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: Any) -> Any:
        return core_schema.no_info_plain_validator_function(_secret)

    @classmethod
    def __get_pydantic_json_schema__(cls, schema: Any, handler: Any) -> dict:
        return {"type": "string", "writeOnly": True,
                "description": "a secret: best given as ${VAR} (or VAR_FILE, e.g. a Docker secret)"}


class Withheld(Secret):
    """A secret of another service's section, deliberately not read (see ``edge.config.load``'s ``section``)."""

    withheld = True

    def __new__(cls) -> "Withheld":
        return super().__new__(cls, "")

    def __repr__(self) -> str:
        return "Secret(<not loaded>)"


def _secret(value: Any) -> Secret:
    if isinstance(value, Secret):
        return value
    if isinstance(value, str):
        return Secret(value)
    raise PydanticCustomError("secret", "expected a string (value not shown: it is a secret; quote an all-digit one)")


def _pydantic(parse: Callable[[Any, str], Any]) -> Callable[[Any], Any]:
    def validate(value: Any) -> Any:
        try:
            return parse(value, "")
        except ConfigError as exc:
            raise PydanticCustomError("config", exc.message) from None
    return validate


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


def join(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


_join = join

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


def _message(err: dict, tp: Any, parent: Any, shown: Callable[[Any], str]) -> str:
    kind = err["type"]
    if kind in _UNKNOWN:
        return f"unknown key (allowed: {', '.join(sorted(fields_of(parent)))})" if parent else "unknown key"
    if kind == "literal_error" and get_origin(tp) is Literal:
        return f"must be one of {', '.join(map(repr, get_args(tp)))}{shown(err['input'])}"
    if kind in ("config", "secret"):
        return err["msg"]
    if kind == "missing":
        return _MESSAGES[kind]
    text = _MESSAGES.get(kind) or err["msg"][0].lower() + err["msg"][1:]
    return text + shown(err["input"])


def _translate(cls: type, exc: ValidationError, path: str, origins: dict[str, list[str]]) -> ConfigError:
    """The first failing field as a ConfigError; a union's alternatives are joined with 'or'."""
    first: str | None = None
    messages: list[str] = []
    # An unknown key first: a misspelt key also makes its right spelling "missing".
    for err in sorted(exc.errors(include_url=False), key=lambda e: e["type"] not in _UNKNOWN):
        where, tp, parent = _locate(cls, err["loc"], path)
        if first is None:
            first = where
        if where != first:
            continue

        def shown(value: Any, where: str = where, tp: Any = tp) -> str:
            if where in origins:
                return f" (value of ${{{origins[where][0]}}} not shown)"
            if tp is Secret or isinstance(value, Secret):
                return ""
            return f", got {value!r}"
        msg = _message(err, tp, parent, shown)
        if msg not in messages:
            messages.append(msg)
    return ConfigError(first or path, " or ".join(messages))


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


def json_schema(cls: type) -> dict:
    """JSON Schema of a config dataclass (for editors)."""
    return adapter(cls).json_schema()


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
    "check_listen", "check_url", "parse_duration", "parse_size", "redact_url", "redact_urls",
]


def check_url(url: str, path: str, schemes: tuple[str, ...], *, path_ok: bool = False) -> tuple[str, str, int | None]:
    """(scheme, host, port or None) of an endpoint URL; refuses credentials, bad ports, a query,
    and (unless ``path_ok``) a path."""
    from urllib.parse import urlsplit

    u = urlsplit(url.strip())
    if u.scheme.lower() not in schemes:
        raise ConfigError(path, f"must start with {' or '.join(s + '://' for s in schemes)}, got {url!r}")
    if "@" in u.netloc:
        raise ConfigError(path, "put credentials in their own keys, not in the URL")
    if not u.hostname:
        raise ConfigError(path, f"no host in {url!r}")
    try:
        port = u.port
    except ValueError:
        port = -1
    if port is not None and not 1 <= port <= 65535:
        raise ConfigError(path, f"port must be 1..65535, in {url!r}")
    if u.query or u.fragment or (u.path not in ("", "/") and not path_ok):
        raise ConfigError(path, f"unexpected {'path' if u.path not in ('', '/') else 'query'} in {url!r}")
    return u.scheme.lower(), u.hostname, port


def check_listen(value: str, path: str) -> tuple[str, int]:
    """(host, port) of a ``host:port`` to listen on; an empty host or ``0.0.0.0`` means every address."""
    host, sep, port = value.rpartition(":")
    host = host.strip("[]")
    if not sep or not port.isdigit() or not 1 <= int(port) <= 65535 or any(c.isspace() for c in host):
        raise ConfigError(path, f"expected host:port with a port 1..65535, got {value!r}")
    return host, int(port)
